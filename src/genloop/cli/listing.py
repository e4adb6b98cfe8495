"""``genloop list``: the registered model families, data sources and metrics."""

from __future__ import annotations

import argparse
from typing import Any

from genloop.cli._common import say


def cmd_list(args: argparse.Namespace) -> int:
    from genloop import available_data, available_metrics, available_models

    say("models:  " + ", ".join(available_models()))
    say("data:    " + ", ".join(available_data()))
    say("metrics: " + ", ".join(available_metrics()))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop list``."""
    p = sub.add_parser("list", help="registered models, data sets and metrics")
    p.set_defaults(func=cmd_list)
