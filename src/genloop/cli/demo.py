"""``genloop demo``: the built-in experiments (Gaussian collapse, two moons, discrete data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from genloop.cli._common import positive_int, say


def cmd_demo(args: argparse.Namespace) -> int:
    from genloop.report.demo import run_demo
    from genloop.sweep.progress import progress_line

    out = Path(args.out)
    # a line per step (and, when stderr is not a terminal, per finished generation or run instead of
    # a bar): CI logs and nohup files show that the demo is working and how far it is
    paths = run_demo(out, quick=args.quick, jobs=args.jobs, topic=args.topic, say=progress_line,
                     plain=not sys.stderr.isatty())
    say(f"demo results in {out}")
    for p in paths:
        say(f"  {p}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop demo``."""
    p = sub.add_parser("demo", help="a built-in experiment: Gaussian collapse and a 2-D toy with GMM and KDE")
    p.add_argument("--out", default="genloop-demo", help="output folder (default: genloop-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster version (for tests)")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel processes (default 2)")
    p.add_argument("--topic", choices=["all", "paper", "discrete"], default="all",
                   help="paper: Gaussian collapse and two moons; discrete: categorical tails and regression; all (default)")
    p.set_defaults(func=cmd_demo)
