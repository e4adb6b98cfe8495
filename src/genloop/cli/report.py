"""``genloop report FOLDER``: a self-contained HTML report (tables, plots, theory)."""

from __future__ import annotations

import argparse
from typing import Any

from genloop.cli._common import say


def cmd_report(args: argparse.Namespace) -> int:
    from genloop.report.html import build_report

    path = build_report(args.folder, args.out, theory=not args.no_theory, probe=args.probe)
    say(f"report written to {path}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop report``."""
    p = sub.add_parser("report", help="a self-contained HTML report of an experiment (tables, plots, theory)")
    p.add_argument("folder", help="an experiment folder or a run folder")
    p.add_argument("--out", help="HTML file to write (default: FOLDER/report.html)")
    p.add_argument("--no-theory", action="store_true", help="skip the theory section (faster)")
    p.add_argument("--probe", action="store_true", help="add the stability probe per lambda (runs the loop; slower)")
    p.set_defaults(func=cmd_report)
