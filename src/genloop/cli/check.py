"""``genloop check FOLDER``: verify every run folder against its checksums, report links where
genloop writes and foreign entries, and look at the grid level (``cells.csv``, the grid's
config, missing and unlisted cell folders); changes nothing, imports nothing a config names."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from genloop.cli._common import say
from genloop.errors import ConfigError, GenloopError


def _rel(run: Path, folder: Path) -> str:
    return run.relative_to(folder).as_posix() if run != folder else "."


def cmd_check(args: argparse.Namespace) -> int:
    from genloop.report.tables import format_table
    from genloop.store import RunStore
    from genloop.sweep import find_runs
    from genloop.sweep.cells import grid_problems
    from genloop.sweep.runs import run_folder_notes, run_folder_problems

    folder = Path(args.folder)
    if not folder.exists():
        raise ConfigError(f"folder not found: {folder}")
    problems = [f"grid: {p}" for p in grid_problems(folder)]
    try:
        runs = find_runs(folder)
    except GenloopError:  # a damaged cells.csv: reported above
        if not problems:
            raise
        runs = []
    if not runs and not problems:
        raise ConfigError(f"{folder} holds no genloop run (no status.json found)")
    rows, notes = [], []
    for run in runs:
        refused = run_folder_problems(run, folder if run != folder else run.parent)
        try:
            check = RunStore(run).verify()
        except GenloopError as exc:
            rows.append({"run": _rel(run, folder), "state": "damaged", "last": "?", "intact": "?", "verdict": "damaged"})
            problems += [f"{_rel(run, folder)}: {p}" for p in [*refused, str(exc)]]
            continue
        verdict = "ok" if check.ok else f"damaged: resume rolls back to {check.intact_generation}"
        if check.ok and not check.verified:
            verdict = "ok (no checksums: written by an older genloop)"
        if refused:
            verdict = "refused: resume stops with a message"
            check.problems.extend(refused)
        rows.append({"run": _rel(run, folder), "state": check.state, "last": check.last_generation,
                     "intact": check.intact_generation, "verdict": verdict})
        problems += [f"{_rel(run, folder)}: {p}" for p in check.problems]
        notes += [f"{_rel(run, folder)}: {n}" for n in run_folder_notes(run)]
    if rows:
        say(format_table(rows, ["run", "state", "last", "intact", "verdict"]))
    for line in problems:
        say(f"  {line}")
    for line in notes:
        say(f"  note: {line}")
    say(f"{len(runs)} run(s), {sum(r['verdict'].startswith('ok') for r in rows)} intact")
    return 0 if not problems else 1


def add_parser(sub: Any) -> None:
    """Register ``genloop check``."""
    p = sub.add_parser("check", help="verify the run folders of an experiment against their checksums (changes nothing)")
    p.add_argument("folder", help="an experiment folder or a run folder")
    p.set_defaults(func=cmd_check)
