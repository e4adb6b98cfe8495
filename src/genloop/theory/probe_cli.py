"""``genloop probe CONFIG``: the measured local contraction rate of the retraining map, per λ.

For any model (no closed form needed): paired runs of the config's loop from its fitted
generation 0, one perturbed at generation 1, under common random numbers; the rate of
:func:`genloop.theory.probe.probe_stability` with a jackknife interval and a predicted verdict
(docs/theory.md, "The stability probe"). The command is thin: the library does the work, and
:func:`config_probe` is shared with ``genloop report --probe``.

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
    from genloop.theory.probe import ProbeResult

_CACHE: dict[str, list[ProbeResult]] = {}


def config_probe(cfg: RunConfig, **options: Any) -> list[ProbeResult]:
    """The probe of every λ of ``cfg`` on the real training set of its first seed (drawn as
    ``genloop run`` draws it), computed once per process and options."""
    from genloop.data import make_data
    from genloop.sweep.local import real_data
    from genloop.theory.probe import probe_config

    key = json.dumps([cfg.model_dump(mode="json"), options], sort_keys=True, default=repr)
    if key in _CACHE:
        return _CACHE[key]
    if getattr(cfg.loop, "train_generation_0", True) is False:
        raise ConfigError("genloop probe fits generation 0 on the real data; loop.train_generation_0: false "
                          "(a checkpoint as generation 0) is not supported")
    _, split = real_data(cfg, cfg.loop.seeds[0])
    source = make_data(cfg.data.name, **cfg.data.options) if cfg.loop.scheme == "fresh" else None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = probe_config(cfg, split.train, source=source, **options)
    finally:
        torch.set_num_threads(before)
    _CACHE[key] = results
    return results


def probe_text(cfg: RunConfig, *, unicode: bool = True, **options: Any) -> str:
    """What ``genloop probe`` prints: a header, the per-λ table and its legend."""
    from genloop.theory.probe import PROBE_LEGEND, format_probe_table

    results = config_probe(cfg, **options)
    r0 = results[0]
    seconds = sum(r.seconds for r in results)
    head = (f"stability probe for {cfg.name or cfg.model.name}: model {cfg.model.name}, data {cfg.data.name} "
            f"(n = {r0.n}), scheme {cfg.loop.scheme}, retrain {cfg.loop.retrain}, seed {cfg.loop.seeds[0]}\n"
            f"{r0.replicates} replicates x {r0.directions} directions x {r0.generations} generations, "
            f"perturbation δ = {r0.delta:g} sd, measured in {r0.space} space")
    text = f"{head}\n\n{format_probe_table(results, unicode=unicode)}\n\n{PROBE_LEGEND}\n\n(computed in {seconds:.1f} s)"
    if not unicode:
        from genloop.theory.report import _ascii

        text = _ascii(text)
    return text


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"generations": args.generations, "directions": args.directions,
                            "replicates": args.replicates, "delta": args.delta, "space": args.space}
    if args.samples is not None:
        opts["n_samples"] = args.samples
    return opts


def cmd_probe(args: argparse.Namespace) -> int:
    from genloop.cli import say
    from genloop.config import load_config
    from genloop.theory.cli import terminal_unicode

    cfg = load_config(args.config, args.set)
    if not (math.isfinite(args.delta) and args.delta > 0):
        raise ConfigError(f"--delta must be a positive number, got {args.delta!r}")
    if args.json:
        say(json.dumps([r.as_row() for r in config_probe(cfg, **_options(args))], default=float))
    else:
        say(probe_text(cfg, unicode=terminal_unicode(), **_options(args)))
    return 0


def _count(low: int):  # noqa: ANN202
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
    p.add_argument("--directions", type=_count(1), default=3, help="perturbed runs per replicate (default 3)")
    p.add_argument("--replicates", type=_count(3), default=8,
                   help="independent replicates (own random streams) for the interval (default 8)")
    p.add_argument("--delta", type=float, default=0.02, help="perturbation size in data standard deviations")
    p.add_argument("--samples", type=_count(2), default=None, help="coupled samples per model (samples space)")
    p.add_argument("--space", choices=["auto", "parameters", "samples"], default="auto",
                   help="where differences are measured (auto: parameters for gaussian/gmm/student_t)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.set_defaults(func=cmd_probe)


__all__ = ["add_parser", "cmd_probe", "config_probe", "probe_text"]
