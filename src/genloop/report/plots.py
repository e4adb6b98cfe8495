"""PNG plots of runs: metric curves per λ, scatter plots across generations, Gaussian collapse."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genloop.store.run import RunStore  # noqa: E402


def _lam_of(run: Path) -> str:
    return run.parent.name.split("=", 1)[1]


def _lam_key(lam: str) -> float:
    return math.inf if lam == "inf" else float(lam)


def _lam_label(lam: str) -> str:
    return "λ = ∞ (fully synthetic)" if lam == "inf" else f"λ = {lam}"


def metric_curves(folder: str | Path, metric: str) -> dict[str, np.ndarray]:
    """For each λ of an experiment, the metric per generation, shape (seeds, generations)."""
    from genloop.sweep import find_runs

    by_lam: dict[str, list[list[float]]] = defaultdict(list)
    for run in find_runs(folder):
        rows = RunStore(run).read_metrics()
        if rows and metric in rows[0]:
            by_lam[_lam_of(run)].append([float(r.get(metric, math.nan)) for r in rows])
    out = {}
    for lam, series in by_lam.items():
        length = min(len(s) for s in series)
        out[lam] = np.array([s[:length] for s in series])
    return dict(sorted(out.items(), key=lambda kv: _lam_key(kv[0])))


def metric_error_bars(values: np.ndarray, se: np.ndarray | None) -> np.ndarray | None:
    """Half-widths of 95 % intervals of the seed mean from each value's own standard error.

    ``values`` and ``se`` have shape (seeds, generations); the standard error of a mean of S
    independent values is ``sqrt(sum se^2) / S``. None when no standard errors were recorded.
    """
    if se is None or se.shape != values.shape or not np.any(np.isfinite(se)):
        return None
    return 1.96 * np.sqrt(np.nansum(np.square(se), axis=0)) / values.shape[0]


def plot_metric_curves(folder: str | Path, metric: str, path: str | Path, *, title: str | None = None,
                       log_y: bool = False) -> Path:
    """Metric vs generation, one line per λ (mean over seeds, band = ±1 std when several).

    When the metric recorded its own standard error (``<metric>_se`` in ``metrics.jsonl``),
    error bars show the 95 % interval of the plotted mean from that measurement noise, so a
    spike inside them is not drift.
    """
    curves = metric_curves(folder, metric)
    ses = metric_curves(folder, f"{metric}_se")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for lam, values in curves.items():
        gens = np.arange(values.shape[1])
        mean = np.nanmean(values, axis=0)
        (line,) = ax.plot(gens, mean, marker="o", ms=3, label=_lam_label(lam))
        se = ses.get(lam)
        bars = metric_error_bars(values, se[:, : values.shape[1]] if se is not None else None)
        if bars is not None:
            ax.errorbar(gens, mean, yerr=bars, fmt="none", ecolor=line.get_color(), elinewidth=1, capsize=2)
        if values.shape[0] > 1:
            std = np.nanstd(values, axis=0)
            ax.fill_between(gens, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title or f"{metric} per generation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_scatter_generations(folder: str | Path, path: str | Path, *, generations: Sequence[int],
                             real: np.ndarray | None = None, seed: int | None = None,
                             title: str | None = None) -> Path:
    """A grid of 2-D scatter plots: rows = λ, columns = generations (stored evaluation samples)."""
    from genloop.sweep import find_runs

    runs = [r for r in find_runs(folder) if seed is None or r.name == f"seed={seed}"]
    first: dict[str, Path] = {}
    for run in runs:
        first.setdefault(_lam_of(run), run)
    lams = sorted(first, key=_lam_key)
    fig, axes = plt.subplots(len(lams), len(generations), figsize=(2.2 * len(generations), 2.2 * len(lams)),
                             dpi=110, squeeze=False, sharex=True, sharey=True)
    for i, lam in enumerate(lams):
        store = RunStore(first[lam])
        for j, gen in enumerate(generations):
            ax = axes[i, j]
            if real is not None:
                ax.scatter(real[:, 0], real[:, 1], s=1, c="0.8", rasterized=True)
            try:
                pts = store.load_samples(gen)
                ax.scatter(pts[:, 0], pts[:, 1], s=1, c="C0", rasterized=True)
            except FileNotFoundError:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            if i == 0:
                ax.set_title(f"generation {gen}", fontsize=9)
            if j == 0:
                ax.set_ylabel(_lam_label(lam), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sigma_ratio(curves: dict[str, np.ndarray], theory: dict[str, np.ndarray], path: str | Path, *,
                     title: str) -> Path:
    """Gaussian collapse: σ_t/σ_0 per λ (mean over seeds, 10–90% band) and theoretical curves
    (black, dashed then dotted)."""
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for lam, ratios in curves.items():
        gens = np.arange(ratios.shape[1])
        (line,) = ax.plot(gens, ratios.mean(axis=0), label=f"{_lam_label(lam)}: mean over {ratios.shape[0]} seeds")
        lo, hi = np.quantile(ratios, [0.1, 0.9], axis=0)
        ax.fill_between(gens, lo, hi, color=line.get_color(), alpha=0.15)
    for (label, values), style in zip(theory.items(), ("--", ":", "-.")):
        ax.plot(np.arange(values.shape[0]), values, color="k", ls=style, lw=1, label=label)
    ax.set_xlabel("generation t")
    ax.set_ylabel("σ_t / σ_0")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
