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
from genloop.cli._common import EXIT_BAD_INPUT, say
from genloop.errors import GenloopError

#: One module per command, each with ``add_parser(sub)`` (which calls ``sub.add_parser(...)``
#: and sets ``func``), in the order ``genloop --help`` lists them. They import light: torch and
#: the library's heavy parts load only when the command runs. No library module imports this
#: package (tests/test_layers.py).
COMMAND_MODULES: tuple[str, ...] = tuple(
    f"genloop.cli.{name}"
    for name in ("run", "check", "check_model", "demo", "show", "report", "theory", "probe", "listing", "convert",
                 "eval", "reproduce")
)


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

    import importlib

    for module in COMMAND_MODULES:
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


__all__ = ["main", "build_parser", "say", "EXIT_BAD_INPUT", "COMMAND_MODULES"]
