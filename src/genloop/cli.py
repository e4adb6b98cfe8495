"""The ``genloop`` command.

Bad input (an invalid config, a missing file, non-finite data, a locked run folder) prints one
line naming the problem to stderr and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from genloop.errors import GenloopError

EXIT_BAD_INPUT = 2

#: Modules that add their own subcommands: each has ``add_parser(sub)``, which calls
#: ``sub.add_parser(...)`` and sets ``func``. They must import light (no torch at import time).
_COMMAND_MODULES: tuple[str, ...] = ()


def _progress_bar(total: int, desc: str):  # noqa: ANN202 - tqdm type
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="gen", file=sys.stderr, dynamic_ncols=True,
                disable=None, leave=True)


def cmd_run(args: argparse.Namespace) -> int:
    from genloop.config import load_config
    from genloop.sweep import run_experiment

    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / (cfg.name or Path(args.config).stem)
    total = len(cfg.loop.lambdas) * len(cfg.loop.seeds) * (cfg.loop.generations + 1)
    bar = _progress_bar(total if args.jobs <= 1 else len(cfg.loop.lambdas) * len(cfg.loop.seeds),
                        "generations" if args.jobs <= 1 else "runs")

    def progress(spec, record) -> None:  # noqa: ANN001
        bar.set_postfix_str(f"{spec.label} gen {record.generation}")
        bar.update(1)

    try:
        run_experiment(cfg, out, resume=args.resume, jobs=args.jobs,
                       progress=progress if args.jobs <= 1 else None,
                       on_run_done=(lambda spec: bar.update(1)) if args.jobs > 1 else None)
    finally:
        bar.close()
    print(f"runs written to {out}")
    print(f"show them with: genloop show {out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from genloop.report.tables import show_text

    print(show_text(args.run_dir, all_generations=args.all))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genloop.report.demo import run_demo

    out = Path(args.out)
    paths = run_demo(out, quick=args.quick, jobs=args.jobs)
    print(f"demo results in {out}")
    for p in paths:
        print(f"  {p}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from genloop.report.html import build_report

    path = build_report(args.folder, args.out, theory=not args.no_theory)
    print(f"report written to {path}")
    return 0


def cmd_theory(args: argparse.Namespace) -> int:
    from genloop.config import load_config
    from genloop.theory.cli import theory_text

    cfg = load_config(args.config, args.set)
    print(theory_text(cfg))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from genloop import available_data, available_metrics, available_models

    print("models:  " + ", ".join(available_models()))
    print("data:    " + ", ".join(available_data()))
    print("metrics: " + ", ".join(available_metrics()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genloop",
        description="Run, measure and predict iterative retraining of generative models on their own data.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run every lambda x seed of a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--out", help="experiment folder (default: runs/<config name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loop.generations=5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue each run from its last completed generation")
    p.add_argument("--jobs", type=int, default=1, help="runs executed in parallel processes")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="a built-in experiment: Gaussian collapse and a 2-D toy with GMM and KDE")
    p.add_argument("--out", default="genloop-demo", help="output folder (default: genloop-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster version (for tests)")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("show", help="print the per-generation metrics of a run or an experiment")
    p.add_argument("run_dir", help="a run folder or an experiment folder")
    p.add_argument("--all", action="store_true", help="every run's full table for an experiment folder")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="a self-contained HTML report of an experiment (tables, plots, theory)")
    p.add_argument("folder", help="an experiment folder or a run folder")
    p.add_argument("--out", help="HTML file to write (default: FOLDER/report.html)")
    p.add_argument("--no-theory", action="store_true", help="skip the theory section (faster)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("theory", help="predicted stability per lambda for a config (rates, the paper's condition)")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_theory)

    p = sub.add_parser("list", help="registered models, data sets and metrics")
    p.set_defaults(func=cmd_list)

    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genloop`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except GenloopError as exc:
        print(f"genloop: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("genloop: interrupted; finished generations are saved (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
