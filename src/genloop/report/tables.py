"""Plain-text and Markdown tables of run metrics (``genloop show``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genloop._text import format_table
from genloop.errors import ConfigError
from genloop.store.run import RunStore


def run_state(store: RunStore) -> str:
    """The state to show: ``running`` only while a live process holds the run's lock; a run
    whose writer was killed shows as ``interrupted``."""
    status = store.status()
    state = str(status.get("state", "?"))
    if state == "running" and not store.is_being_written():
        return "interrupted"
    if state == "stopped" and status.get("reason"):
        return f"stopped ({status['reason']})"
    return state


def run_summary_rows(folder: str | Path) -> list[dict[str, Any]]:
    """One row per run of an experiment folder: λ, seed, state and the last generation's metrics."""
    from genloop.sweep import find_runs

    rows = []
    for run in find_runs(folder):
        store = RunStore(run)
        metrics = store.read_metrics()
        row: dict[str, Any] = {
            **({"cell": run.parent.parent.name} if (Path(folder) / "cells.csv").exists() else {}),
            "lam": run.parent.name.split("=", 1)[1],
            "seed": run.name.split("=", 1)[1],
            "state": run_state(store),
        }
        if metrics:
            row.update(metrics[-1])
        rows.append(row)
    return rows


def training_warnings(runs: list[Path]) -> list[str]:
    """The learning-rate warnings of the runs' configs (:func:`genloop.sweep.preflight.learning_rate_warnings`),
    each distinct line once; a config that cannot be read adds nothing (``genloop check`` reports damage)."""
    from genloop.config import parse_stored_config, read_yaml
    from genloop.errors import GenloopError
    from genloop.models import MODELS
    from genloop.sweep.preflight import learning_rate_warnings

    builtin = set(MODELS.builtin_names())
    seen: dict[str, None] = {}
    for run in runs:
        try:
            cfg = parse_stored_config(read_yaml(run / "config.yaml", what="run config"))
            # built-in families only: building a model named by import path or entry point would
            # import its code, and reading a folder never does (docs/extending.md)
            lines = learning_rate_warnings(cfg) if cfg.model.name in builtin else []
        except GenloopError:
            continue
        for line in lines:
            seen.setdefault(line)
    return list(seen)


def show_text(folder: str | Path, *, all_generations: bool = False, metric: str | None = None) -> str:
    """What ``genloop show`` prints for a run folder or an experiment folder."""
    from genloop.sweep import find_runs

    folder = Path(folder)
    if not folder.exists():
        raise ConfigError(f"run folder not found: {folder}")
    runs = find_runs(folder)
    if not runs:
        raise ConfigError(f"{folder} holds no genloop run (no status.json found)")
    if runs == [folder]:
        store = RunStore(folder)
        status = store.status()
        head = f"{folder}  state={run_state(store)}  last generation={status.get('last_generation', -1)}"
        return "\n".join([head, *training_warnings(runs), format_table(store.read_metrics())])
    from genloop.results import summary_text

    parts = [f"{folder}: {len(runs)} runs (last generation of each)", *training_warnings(runs),
             format_table(run_summary_rows(folder)), "", summary_text(folder, metric)]
    if all_generations:
        for run in runs:
            parts += ["", f"== {run.relative_to(folder)}", format_table(RunStore(run).read_metrics())]
    return "\n".join(parts)
