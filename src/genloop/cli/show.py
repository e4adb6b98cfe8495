"""``genloop show FOLDER``: a run's per-generation table, or an experiment's summary and verdicts."""

from __future__ import annotations

import argparse
from typing import Any

from genloop.cli._common import say


def cmd_show(args: argparse.Namespace) -> int:
    from genloop.report.tables import show_text

    say(show_text(args.run_dir, all_generations=args.all, metric=args.metric))
    if not args.no_theory:
        from genloop.report.prediction import prediction_text

        text = prediction_text(args.run_dir, args.metric)
        if text:
            say("\n" + text)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop show``."""
    p = sub.add_parser("show", help="print the per-generation metrics of a run or an experiment")
    p.add_argument("run_dir", help="a run folder or an experiment folder")
    p.add_argument("--all", action="store_true", help="every run's full table for an experiment folder")
    p.add_argument("--metric", help="metric of the stability verdict (default: the first distance recorded)")
    p.add_argument("--no-theory", action="store_true",
                   help="skip the prediction check (the theory's per-λ prediction tested with the seeds)")
    p.set_defaults(func=cmd_show)
