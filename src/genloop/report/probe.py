"""The stability probe of a run config: ``genloop probe CONFIG`` and ``genloop report --probe``.

:func:`config_probe` runs :func:`genloop.theory.probe.probe_stability` for every λ of the
config on the real training set of its first seed (drawn as ``genloop run`` draws it), once
per process and options, so the command and the report print the same numbers;
:func:`probe_section` is the report's HTML (docs/theory.md, "The stability probe").
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from genloop.errors import ConfigError

if TYPE_CHECKING:
    from genloop.theory.probe import ProbeResult

_CACHE: dict[str, list[ProbeResult]] = {}


def config_probe(cfg: Any, **options: Any) -> list[ProbeResult]:
    """The probe of every λ of run config ``cfg`` (first seed; ``options`` go to
    :func:`genloop.theory.probe.probe_stability`), computed once per process and options."""
    import torch

    from genloop.data import make_data
    from genloop.config import real_data
    from genloop.theory.probe import probe_config

    key = json.dumps([cfg.model_dump(mode="json"), options], sort_keys=True, default=repr)
    if key in _CACHE:
        return _CACHE[key]
    if getattr(cfg.loop, "train_generation_0", True) is False:
        raise ConfigError("the stability probe fits generation 0 on the real data; loop.train_generation_0: false "
                          "(a checkpoint as generation 0) is not supported")
    _, split = real_data(cfg, cfg.loop.seeds[0])
    source = make_data(cfg.data.name, **cfg.data.options) if cfg.loop.scheme == "fresh" else None
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small fits: extra threads only contend for the cores
    try:
        results = probe_config(cfg, split.train, source=source, **options)
    finally:
        torch.set_num_threads(before)
    _CACHE[key] = results
    return results


def probe_header(cfg: Any, results: list[ProbeResult]) -> str:
    """One paragraph: what was probed and how (sizes, δ, space, time)."""
    r0 = results[0]
    seconds = sum(r.seconds for r in results)
    return (f"stability probe for {cfg.name or cfg.model.name}: model {cfg.model.name}, data {cfg.data.name} "
            f"(n = {r0.n}), scheme {cfg.loop.scheme}, retrain {cfg.loop.retrain}, seed {cfg.loop.seeds[0]}; "
            f"{r0.replicates} replicates x {r0.directions} directions x {r0.generations} generations, "
            f"perturbation δ = {r0.delta:g} sd, measured in {r0.space} space, {r0.estimator} rate ({seconds:.1f} s)")


def probe_section(cfg: Any) -> str:
    """HTML: the per-λ probe table with its header and legend, for run config ``cfg``."""
    from genloop.theory.probe import PROBE_LEGEND, format_probe_table

    results = config_probe(cfg)
    return (f"<p>{html.escape(probe_header(cfg, results))}.</p>"
            f"<pre>{html.escape(format_probe_table(results))}\n\n{html.escape(PROBE_LEGEND)}</pre>")
