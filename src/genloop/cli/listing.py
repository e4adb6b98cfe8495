"""``genloop list``: the model families, data sources and metrics, with where each comes from."""

from __future__ import annotations

import argparse
from typing import Any

from genloop.cli._common import say


def cmd_list(args: argparse.Namespace) -> int:
    from genloop.data import DATASETS
    from genloop.metrics import METRICS
    from genloop.models import MODELS

    for title, registry in (("models", MODELS), ("data", DATASETS), ("metrics", METRICS)):
        names = registry.names()
        if not args.origin:
            say(f"{title + ':':9s}" + ", ".join(names))
            continue
        say(f"{title}:")
        width = max(map(len, names), default=0)
        for name in names:
            say(f"  {name:{width}s}  {registry.origin(name)}")
    if not args.origin:
        plugged = [f"{n} ({r.origin(n)})" for r in (MODELS, DATASETS, METRICS) for n in r.names()
                   if r.origin(n).kind != "built-in"]
        for line in plugged:
            say(f"installed: {line}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop list``."""
    p = sub.add_parser("list", help="registered models, data sets and metrics (built-in and installed)")
    p.add_argument("--origin", action="store_true", help="one name per line with where it comes from")
    p.set_defaults(func=cmd_list)
