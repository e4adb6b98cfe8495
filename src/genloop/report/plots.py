"""PNG plots of runs: metric curves per grid cell and λ, scatter plots across generations, Gaussian collapse."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genloop.store.run import RunStore  # noqa: E402


def _lam_of(run: Path) -> str:
    return run.parent.name.split("=", 1)[1]


def _cell_of(run: Path, folder: Path) -> str:
    """The grid cell folder of ``run`` (``""`` for the plain layout ``FOLDER/lam=…/seed=…``)."""
    try:
        parts = run.relative_to(folder).parts
    except ValueError:
        return ""
    return "/".join(parts[:-2])


def _lam_key(lam: str) -> float:
    return math.inf if lam == "inf" else float(lam)


def _lam_label(lam: str) -> str:
    return "λ = ∞ (fully synthetic)" if lam == "inf" else f"λ = {lam}"


#: key suffixes of quantities recorded next to a metric that are not metrics themselves:
#: standard errors (drawn as error bars of their metric), spreads over splits or subsets,
#: kernel bandwidths, subset sizes and fitted slopes
AUXILIARY_SUFFIXES = ("_se", "_std", "_bandwidth", "_subset_size", "_slope")


def plotted_metrics(names: Sequence[str]) -> list[str]:
    """The metrics among recorded keys: everything except :data:`AUXILIARY_SUFFIXES` quantities."""
    return [n for n in names if not str(n).endswith(AUXILIARY_SUFFIXES)]


def run_groups(folder: str | Path) -> dict[tuple[str, str], list[Path]]:
    """The runs under ``folder`` grouped by (grid cell, λ), in order of cell then λ.

    Outside a grid the cell is ``""``. Runs of different cells are never in one group: they
    are different experiments (other data, model or options), not seeds of one.
    """
    from genloop.sweep import find_runs

    folder = Path(folder)
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for run in find_runs(folder):
        groups[(_cell_of(run, folder), _lam_of(run))].append(run)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], _lam_key(kv[0][1]))))


def metric_curves(folder: str | Path, metric: str) -> dict[tuple[str, str], np.ndarray]:
    """For each (grid cell, λ) of an experiment, the metric per generation, shape (seeds, generations)."""
    out = {}
    for key, runs in run_groups(folder).items():
        series = []
        for run in runs:
            rows = RunStore(run).read_metrics()
            if rows and metric in rows[0]:
                series.append([float(r.get(metric, math.nan)) for r in rows])
        if series:
            length = min(len(s) for s in series)
            out[key] = np.array([s[:length] for s in series])
    return out


def metric_error_bars(values: np.ndarray, se: np.ndarray | None) -> np.ndarray | None:
    """Half-widths of 95 % intervals of the seed mean from each value's own standard error.

    ``values`` and ``se`` have shape (seeds, generations); the standard error of a mean of S
    independent values is ``sqrt(sum se^2) / S``. None when no standard errors were recorded.
    """
    if se is None or se.shape != values.shape or not np.any(np.isfinite(se)):
        return None
    return 1.96 * np.sqrt(np.nansum(np.square(se), axis=0)) / values.shape[0]


def metric_figure(folder: str | Path, metric: str, *, title: str | None = None,
                  log_y: bool = False) -> matplotlib.figure.Figure:
    """Metric vs generation: one panel per grid cell (one panel outside grids), one line per λ
    (mean over the seeds of that cell and λ, band = ±1 std when several).

    When the metric recorded its own standard error (``<metric>_se`` in ``metrics.jsonl``),
    error bars show the 95 % interval of the plotted mean from that measurement noise, so a
    spike inside them is not drift. Cells are never averaged together.
    """
    curves = metric_curves(folder, metric)
    ses = metric_curves(folder, f"{metric}_se")
    cells = list(dict.fromkeys(cell for cell, _ in curves)) or [""]
    cols = min(3, len(cells))
    nrows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 if cols == 1 else 4.2 * cols, 4 if nrows == 1 else 3.2 * nrows),
                             dpi=120, squeeze=False, sharey=True)
    panel = dict(zip(cells, axes.flat))
    lams = sorted({lam for _, lam in curves}, key=_lam_key)  # one colour per λ in every panel
    for (cell, lam), values in curves.items():
        ax = panel[cell]
        gens = np.arange(values.shape[1])
        mean = np.nanmean(values, axis=0)
        (line,) = ax.plot(gens, mean, marker="o", ms=3, label=_lam_label(lam), color=f"C{lams.index(lam) % 10}")
        se = ses.get((cell, lam))
        bars = metric_error_bars(values, se[:, : values.shape[1]] if se is not None else None)
        if bars is not None:
            ax.errorbar(gens, mean, yerr=bars, fmt="none", ecolor=line.get_color(), elinewidth=1, capsize=2)
        if values.shape[0] > 1:
            std = np.nanstd(values, axis=0)
            ax.fill_between(gens, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    from matplotlib.ticker import MaxNLocator

    for cell, ax in panel.items():
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_y:
            ax.set_yscale("log")
        if cell:
            ax.set_title(cell, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    axes[0][0].set_ylabel(metric)
    fig.suptitle(title or f"{metric} per generation", fontsize=10)
    fig.tight_layout()
    return fig


def plot_metric_curves(folder: str | Path, metric: str, path: str | Path, *, title: str | None = None,
                       log_y: bool = False) -> Path:
    """Write :func:`metric_figure` to the PNG ``path``; return the path."""
    fig = metric_figure(folder, metric, title=title, log_y=log_y)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_scatter_generations(folder: str | Path, path: str | Path, *, generations: Sequence[int],
                             real: np.ndarray | None = None, seed: int | None = None,
                             title: str | None = None) -> Path:
    """A grid of 2-D scatter plots: rows = (grid cell,) λ, columns = generations (stored
    evaluation samples of the first run of each row, or of seed ``seed``); ``real`` (when
    given) is drawn in grey behind every panel."""
    first: dict[tuple[str, str], Path] = {}
    for key, runs in run_groups(folder).items():
        chosen = [r for r in runs if seed is None or r.name == f"seed={seed}"]
        if chosen:
            first[key] = chosen[0]
    keys = list(first)
    fig, axes = plt.subplots(len(keys), len(generations), figsize=(2.2 * len(generations), 2.2 * len(keys)),
                             dpi=110, squeeze=False, sharex=True, sharey=True)
    for i, (cell, lam) in enumerate(keys):
        store = RunStore(first[(cell, lam)])
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
                ax.set_ylabel(f"{cell}\n{_lam_label(lam)}" if cell else _lam_label(lam), fontsize=7 if cell else 8)
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
