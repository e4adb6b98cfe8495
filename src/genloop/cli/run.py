"""``genloop run CONFIG``: every λ × seed of a config (or a grid's every cell), with progress."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from genloop.cli._common import positive_int, say
from genloop.errors import ConfigError


def default_out(cfg_name: str | None, config_path: str) -> Path:
    """``runs/<name>`` from the config's ``name`` or its file name."""
    name = cfg_name or Path(config_path).stem
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ConfigError(f"cannot derive an output folder from {config_path!r}; pass --out")
    return Path("runs") / name


def cmd_run(args: argparse.Namespace) -> int:
    from genloop.results import write_tables
    from genloop.sweep.distributed import start_from_env
    from genloop.sweep.experiment import load_experiment, run_grid
    from genloop.sweep.progress import SweepProgress

    group = start_from_env()  # under torchrun: one process group, rank 0 writes and reports
    overrides = list(args.set) + (["tracking.backend=mlflow"] if args.track == "mlflow" else [])
    exp = load_experiment(args.config, overrides)
    out = Path(args.out) if args.out else default_out(exp.name, args.config)
    parallel = args.executor == "ray" or args.jobs > 1
    quiet = args.quiet or (group is not None and not group.is_main)
    progress = SweepProgress.for_experiment(exp, out, resume=args.resume, parallel=parallel, quiet=quiet,
                                            plain=not args.quiet and not sys.stderr.isatty(),
                                            slots=(os.cpu_count() or 1) if args.executor == "ray" else args.jobs)
    try:
        run_grid(exp, out, resume=args.resume, jobs=args.jobs, executor=args.executor, address=args.address,
                 progress=None if parallel else progress.generation_done, on_run_done=progress.run_done,
                 check_resources=not args.skip_resource_check)
    finally:
        progress.close()
    if group is not None and not group.is_main:
        return 0
    write_tables(out)
    if progress.nothing_to_do:
        say(f"nothing to do: all {progress.runs} runs in {out} are complete")
    else:
        say(f"runs written to {out}")
    say(f"show them with: genloop show {out}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``genloop run``."""
    p = sub.add_parser("run", help="run every lambda x seed of a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--out", help="experiment folder (default: runs/<config name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loop.generations=5 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue each run from its last intact generation (loop.generations may grow, not shrink)")
    p.add_argument("--jobs", type=positive_int, default=1, help="runs executed in parallel processes (>= 1)")
    p.add_argument("--skip-resource-check", action="store_true",
                   help="start even when the memory / disk estimate exceeds what this machine has")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (--jobs N), or Ray tasks on a cluster (--address) or a local Ray instance")
    p.add_argument("--address", help="Ray cluster address (e.g. HEAD:6379 or 'auto'); default: start a local instance")
    p.add_argument("--track", choices=["none", "mlflow"], default="none",
                   help="log every run to MLflow (tracking.uri in the config; default OUT/mlruns)")
    p.set_defaults(func=cmd_run)
