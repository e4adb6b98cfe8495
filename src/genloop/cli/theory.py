"""``genloop theory CONFIG``: predicted stability per λ for the run a config describes."""

from __future__ import annotations

import argparse
from typing import Any

from genloop.cli._common import say


def cmd_theory(args: argparse.Namespace) -> int:
    from genloop.config import load_config
    from genloop.theory.config_theory import theory_text

    cfg = load_config(args.config, args.set)
    say(theory_text(cfg, config_path=args.config, overrides=args.set))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop theory``."""
    p = sub.add_parser("theory", help="predicted stability per lambda for a config (rates, the paper's condition)")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_theory)
