"""The ``genloop`` command.

Bad input (an invalid config, a missing file, non-finite data, a locked run folder) prints one
line naming the problem to stderr and exits with code 2, without a traceback, before anything
is written. Ctrl-C or SIGTERM stop a run cleanly: its status says ``stopped`` and its finished
generations are kept for ``--resume`` (exit 130 / 143). Output piped into a command that
closes early (``genloop show … | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from genloop.errors import GenloopError

EXIT_BAD_INPUT = 2

#: Modules that add their own subcommands: each has ``add_parser(sub)``, which calls
#: ``sub.add_parser(...)`` and sets ``func``. They must import light (no torch at import time).
_COMMAND_MODULES: tuple[str, ...] = ("genloop.models.convert_cli", "genloop.metrics.eval_cli", "genloop.theory.probe_cli")


def say(text: str) -> None:
    """Write a line of command output to standard output (the CLI owns the terminal; the
    subcommand modules of ``_COMMAND_MODULES`` write through this too)."""
    sys.stdout.write(f"{text}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _default_out(cfg_name: str | None, config_path: str) -> Path:
    from genloop.errors import ConfigError

    name = cfg_name or Path(config_path).stem
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ConfigError(f"cannot derive an output folder from {config_path!r}; pass --out")
    return Path("runs") / name


def cmd_run(args: argparse.Namespace) -> int:
    from genloop.sweep.experiment import load_experiment, run_grid
    from genloop.sweep.progress import SweepProgress

    overrides = list(args.set) + (["tracking.backend=mlflow"] if args.track == "mlflow" else [])
    exp = load_experiment(args.config, overrides)
    out = Path(args.out) if args.out else _default_out(exp.name, args.config)
    parallel = args.executor == "ray" or args.jobs > 1
    progress = SweepProgress.for_experiment(exp, out, resume=args.resume, parallel=parallel, quiet=args.quiet,
                                            plain=not args.quiet and not sys.stderr.isatty(),
                                            slots=(os.cpu_count() or 1) if args.executor == "ray" else args.jobs)
    try:
        run_grid(exp, out, resume=args.resume, jobs=args.jobs, executor=args.executor, address=args.address,
                 progress=None if parallel else progress.generation_done, on_run_done=progress.run_done,
                 check_resources=not args.skip_resource_check)
    finally:
        progress.close()
    from genloop.results import write_tables

    write_tables(out)
    if progress.nothing_to_do:
        print(f"nothing to do: all {progress.runs} runs in {out} are complete")
    else:
        print(f"runs written to {out}")
    print(f"show them with: genloop show {out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from genloop.errors import ConfigError
    from genloop.report.tables import format_table
    from genloop.store import RunStore
    from genloop.sweep import find_runs
    from genloop.sweep.local import run_folder_problems

    folder = Path(args.folder)
    if not folder.exists():
        raise ConfigError(f"folder not found: {folder}")
    runs = find_runs(folder)
    if not runs:
        raise ConfigError(f"{folder} holds no genloop run (no status.json found)")
    rows, problems = [], []
    for run in runs:
        try:
            check = RunStore(run).verify()
        except GenloopError as exc:
            rows.append({"run": _rel(run, folder), "state": "damaged", "last": "?", "intact": "?", "verdict": "damaged"})
            problems.append(f"{_rel(run, folder)}: {exc}")
            continue
        verdict = "ok" if check.ok else f"damaged: resume rolls back to {check.intact_generation}"
        if check.ok and not check.verified:
            verdict = "ok (no checksums: written by an older genloop)"
        refused = run_folder_problems(run)
        if refused:
            verdict = "refused: resume stops with a message"
            check.problems.extend(refused)
        rows.append({"run": _rel(run, folder), "state": check.state, "last": check.last_generation,
                     "intact": check.intact_generation, "verdict": verdict})
        problems += [f"{_rel(run, folder)}: {p}" for p in check.problems]
    print(format_table(rows, ["run", "state", "last", "intact", "verdict"]))
    for line in problems:
        print(f"  {line}")
    print(f"{len(runs)} run(s), {sum(r['verdict'].startswith('ok') for r in rows)} intact")
    return 0 if not problems else 1


def _rel(run: Path, folder: Path) -> str:
    return run.relative_to(folder).as_posix() if run != folder else "."


def cmd_show(args: argparse.Namespace) -> int:
    from genloop.report.tables import show_text

    print(show_text(args.run_dir, all_generations=args.all, metric=args.metric))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genloop.report.demo import run_demo

    out = Path(args.out)
    paths = run_demo(out, quick=args.quick, jobs=args.jobs, topic=args.topic)
    print(f"demo results in {out}")
    for p in paths:
        print(f"  {p}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from genloop.report.html import build_report

    path = build_report(args.folder, args.out, theory=not args.no_theory, probe=args.probe)
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


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """-v / -q, accepted before and after the subcommand (``genloop -v run …``, ``genloop run … -v``)."""
    common = argparse.ArgumentParser(add_help=False)
    kw = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument("-v", "--verbose", action="count", help="more log output (-vv for debug)",
                        **({"default": 0} if defaults else kw))
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars, errors only",
                        **({"default": False} if defaults else kw))
    return common


def build_parser() -> argparse.ArgumentParser:
    from genloop import __version__

    parser = argparse.ArgumentParser(
        prog="genloop",
        description="Run, measure and predict iterative retraining of generative models on their own data.",
        parents=[_common_options(True)],
    )
    parser.add_argument("--version", action="version", version=f"genloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = _common_options(False)
    _add_parser = sub.add_parser

    def add_parser(*a, **kw):  # every subcommand takes -v / -q too  # noqa: ANN002, ANN003, ANN202
        kw.setdefault("parents", []).append(common)
        return _add_parser(*a, **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("run", help="run every lambda x seed of a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--out", help="experiment folder (default: runs/<config name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loop.generations=5 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue each run from its last intact generation (loop.generations may grow, not shrink)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="runs executed in parallel processes (>= 1)")
    p.add_argument("--skip-resource-check", action="store_true",
                   help="start even when the memory / disk estimate exceeds what this machine has")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (--jobs N), or Ray tasks on a cluster (--address) or a local Ray instance")
    p.add_argument("--address", help="Ray cluster address (e.g. HEAD:6379 or 'auto'); default: start a local instance")
    p.add_argument("--track", choices=["none", "mlflow"], default="none",
                   help="log every run to MLflow (tracking.uri in the config; default OUT/mlruns)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="verify the run folders of an experiment against their checksums (changes nothing)")
    p.add_argument("folder", help="an experiment folder or a run folder")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="a built-in experiment: Gaussian collapse and a 2-D toy with GMM and KDE")
    p.add_argument("--out", default="genloop-demo", help="output folder (default: genloop-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster version (for tests)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="parallel processes (default 2)")
    p.add_argument("--topic", choices=["all", "paper", "discrete"], default="all",
                   help="paper: Gaussian collapse and two moons; discrete: categorical tails and regression; all (default)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("show", help="print the per-generation metrics of a run or an experiment")
    p.add_argument("run_dir", help="a run folder or an experiment folder")
    p.add_argument("--all", action="store_true", help="every run's full table for an experiment folder")
    p.add_argument("--metric", help="metric of the stability verdict (default: the first distance recorded)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="a self-contained HTML report of an experiment (tables, plots, theory)")
    p.add_argument("folder", help="an experiment folder or a run folder")
    p.add_argument("--out", help="HTML file to write (default: FOLDER/report.html)")
    p.add_argument("--no-theory", action="store_true", help="skip the theory section (faster)")
    p.add_argument("--probe", action="store_true", help="add the stability probe per lambda (runs the loop; slower)")
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


def _sigterm(signum: int, frame: object) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the clean-up short
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genloop`` command; returns the exit code."""
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else logging.WARNING - 10 * min(args.verbose, 2)
    # force: a fresh handler on the current stderr at every call (main() may run many times in
    # one process, e.g. from tests or notebooks, each with its own stderr)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("genloop").setLevel(level)
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)  # a kill runs the same clean-up as Ctrl-C
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        previous = None
    try:
        return int(args.func(args) or 0)
    except GenloopError as exc:
        print(f"genloop: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("genloop: interrupted; finished generations are saved (continue with --resume)", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            print("genloop: terminated; finished generations are saved (continue with --resume)", file=sys.stderr)
        raise
    except BrokenPipeError:
        # The reader went away (``genloop show … | head``): stop writing, quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
