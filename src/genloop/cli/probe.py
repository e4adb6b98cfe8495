"""``genloop probe CONFIG``: the measured local contraction rate of the retraining map, per λ.

For any model (no closed form needed): paired runs of the config's loop from its fitted
generation 0, one perturbed at generation 1, under common random numbers; the rate of
:func:`genloop.theory.probe.probe_stability` with a jackknife interval and a predicted verdict
(docs/theory.md, "The stability probe"). The command is thin: the library does the work, and
:func:`genloop.report.probe.config_probe` is shared with ``genloop report --probe``.

This module imports torch only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING, Any

from genloop.errors import ConfigError

if TYPE_CHECKING:
    from genloop.config import RunConfig


def probe_text(cfg: RunConfig, *, unicode: bool = True, **options: Any) -> str:
    """What ``genloop probe`` prints: a header, the per-λ table and its legend."""
    from genloop.report.probe import config_probe, probe_header
    from genloop.theory.probe import PROBE_LEGEND, format_probe_table

    results = config_probe(cfg, **options)
    text = f"{probe_header(cfg, results)}\n\n{format_probe_table(results, unicode=unicode)}\n\n{PROBE_LEGEND}"
    if not unicode:
        from genloop.theory.report import _ascii

        text = _ascii(text)
    return text


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"generations": args.generations, "directions": args.directions,
                            "replicates": args.replicates, "delta": args.delta, "space": args.space,
                            "estimator": args.estimator}
    opts = {k: v for k, v in opts.items() if v is not None}
    if args.samples is not None:
        opts["n_samples"] = args.samples
    return opts


def cmd_probe(args: argparse.Namespace) -> int:
    from genloop.cli._common import say
    from genloop.config import load_config
    from genloop.report.probe import config_probe
    from genloop.theory.config_theory import terminal_unicode

    cfg = load_config(args.config, args.set)
    if args.delta is not None and not (math.isfinite(args.delta) and args.delta > 0):
        raise ConfigError(f"--delta must be a positive number, got {args.delta!r}")
    if args.json:
        say(json.dumps([r.as_row() for r in config_probe(cfg, **_options(args))], default=float))
    else:
        say(probe_text(cfg, unicode=terminal_unicode(), **_options(args)))
    return 0


def _count(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
        return value

    return parse


def add_parser(sub: Any) -> None:
    """Register ``genloop probe`` on the CLI's subparsers."""
    p = sub.add_parser("probe", help="measured contraction rate per lambda for any model (paired perturbed runs)")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loop.lambdas=[0.5,inf] (repeatable)")
    p.add_argument("--generations", type=_count(2), default=3, help="generations per paired run (default 3)")
    p.add_argument("--directions", type=_count(1), default=None,
                   help="perturbed runs per replicate (default 3 in parameter space, 2 in samples)")
    p.add_argument("--replicates", type=_count(3), default=None,
                   help="independent replicates (own random streams) for the interval (default 8)")
    p.add_argument("--delta", type=float, default=None,
                   help="perturbation size in data standard deviations (default 0.02 in parameter space, 0.1 in samples)")
    p.add_argument("--samples", type=_count(2), default=None, help="coupled samples per model (samples space)")
    p.add_argument("--space", choices=["auto", "parameters", "samples"], default="auto",
                   help="where differences are measured (auto: parameters for gaussian/gmm/student_t)")
    p.add_argument("--estimator", choices=["auto", "dmd", "rms"], default="auto",
                   help="rate of the slowest mode (dmd, the default) or the RMS factor of the differences (rms)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.set_defaults(func=cmd_probe)


__all__ = ["add_parser", "cmd_probe", "probe_text"]
