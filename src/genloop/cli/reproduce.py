"""``genloop reproduce``: rerun the paper's claims (examples/reproduce/) and write their tables,
or compare a rerun's tables with the committed ones (``--compare DIR``: exit 1 on a difference)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from genloop.cli._common import positive_int, say


def cmd_reproduce(args: argparse.Namespace) -> int:
    from genloop.report.reproduce import (
        compare_results,
        load_configs,
        run_reproduction,
        write_results,
    )
    from genloop.sweep.progress import SweepProgress

    if args.compare:
        diffs, notes = compare_results(args.compare, args.results or "docs/reproduction")
        for note in notes:
            say(f"note: {note}")
        for d in diffs:
            say(d.text())
        say(f"{len(diffs)} value(s) outside the committed intervals" if diffs
            else f"every compared value of {args.compare} lies within the committed intervals")
        return 1 if diffs else 0
    out = Path(args.out)
    # the committed tables only for the full run of the committed configs; anything else beside its runs
    committed = not args.quick and Path(args.configs) == Path("examples/reproduce")
    results = Path(args.results) if args.results else (Path("docs/reproduction") if committed else out / "results")
    # bad input stops here, before a write; the configs of this call (one added while it runs waits)
    names = [c.name for c in load_configs(args.configs, only=args.only, quick=args.quick)]

    def progress(exp: Any, folder: Path) -> Any:
        return SweepProgress.for_experiment(exp, folder, resume=True, parallel=args.jobs > 1, quiet=args.quiet,
                                            plain=not args.quiet and not sys.stderr.isatty(), slots=args.jobs)

    from genloop.errors import ConfigError

    if args.tables_only:  # the runs stay as they are; the manifest keeps the times they took
        if not out.is_dir():
            raise ConfigError(f"--tables-only: no runs in {out}; run genloop reproduce first")
        seconds: dict[str, float] = {}
    else:
        seconds = run_reproduction(out, config_dir=args.configs, only=args.only, quick=args.quick, jobs=args.jobs,
                                   on_config=lambda name: say(f"reproduce: running {name}"), progress=progress)
    md = write_results(out, results, config_dir=args.configs, only=args.only, quick=args.quick, seconds=seconds,
                       names=None if args.tables_only else names)
    if args.tables_only:
        say(f"tables and figures in {md.parent} ({md.name}) rewritten from the runs in {out}")
    else:
        say(f"runs in {out}; tables and figures in {md.parent} ({md.name}); {sum(seconds.values()):.0f} s")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop reproduce``."""
    p = sub.add_parser("reproduce", help="rerun the paper's claims (examples/reproduce/) and write their tables")
    p.add_argument("--out", default="runs/reproduce", help="folder of the runs (default: runs/reproduce)")
    p.add_argument("--results", help="folder of the tables and figures (default: docs/reproduction; with --quick or "
                                      "--configs: OUT/results); with --compare: the committed tables")
    p.add_argument("--configs", default="examples/reproduce", help="folder of the configs (default: examples/reproduce)")
    p.add_argument("--only", metavar="NAME", help="one config (and the configs it starts from)")
    p.add_argument("--quick", action="store_true", help="every config at toy size, one generation (a smoke test)")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs in parallel processes (default 2)")
    p.add_argument("--tables-only", action="store_true",
                   help="rewrite the tables and figures from the runs in --out without running anything")
    p.add_argument("--compare", metavar="DIR",
                   help="compare the tables of a rerun in DIR with the committed ones; exit 1 when a value lies outside")
    p.set_defaults(func=cmd_reproduce)
