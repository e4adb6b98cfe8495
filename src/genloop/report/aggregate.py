"""Report sections over seeds: mean ± 95 % interval curves per λ (a panel per grid cell), the
stability verdicts, links to the tidy tables, and the training-loss curves of neural runs."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genloop.results import gap_header, summarize, tidy, verdicts

if TYPE_CHECKING:
    from genloop.report.prediction import Prediction


def _lam_label(lam: float) -> str:
    return "∞" if math.isinf(lam) else f"{lam:g}"


def plot_aggregate(summary, metric: str, path: Path) -> Path:  # noqa: ANN001 - a pandas DataFrame
    """One panel per cell: the mean over seeds of ``metric`` per generation with its 95 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = summary[summary["metric"] == metric]
    cells = list(dict.fromkeys(rows["cell"]))
    cols = min(3, len(cells))
    nrows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False, sharey=True)
    lams = sorted(set(rows["lam"]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(lams))))
    for ax, cell in zip(axes.flat, cells):
        for color, lam in zip(colors, lams):
            sub = rows[(rows["cell"] == cell) & (rows["lam"] == lam)].sort_values("generation")
            if sub.empty:
                continue
            g = sub["generation"].to_numpy()
            ax.plot(g, sub["mean"], color=color, label=f"λ={_lam_label(lam)}")
            low, high = sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float)
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                ax.fill_between(g[ok], low[ok], high[ok], color=color, alpha=0.2, linewidth=0)
        ax.set_title(cell or metric, fontsize=9)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def section_aggregate(folder: Path, png: Callable[[str], Path], figure: Callable[[Path, str], str],
                      table: Callable[[list[dict]], str], predicted: dict[float, str] | None = None,
                      predictions: Mapping[float, Prediction] | None = None) -> str:
    """HTML: a figure per metric, the verdict table (with the theory's verdict per λ where
    ``predicted`` gives one and, where ``predictions`` are given, the prediction check of
    :mod:`genloop.report.prediction` beside it) and links to the tables next to the report."""
    data = tidy(folder)
    if data.empty:
        return "<p class=\"note\">no metric values recorded (yet)</p>"
    summary = summarize(data)
    parts = []
    from genloop.report.plots import plotted_metrics

    metrics = plotted_metrics(list(dict.fromkeys(data["metric"])))
    for metric in metrics:
        parts.append(figure(plot_aggregate(summary, metric, png(f"aggregate-{metric}")),
                            f"{metric}: mean over seeds per generation, band = 95% t-interval"))
    vs = verdicts(data)
    checks = {}
    if predictions:
        from genloop.report.prediction import check_text, prediction_checks

        metric = vs[0].metric if vs else None
        checks = {(c.cell, c.lam): check_text(c) for c in prediction_checks(data, predictions, metric)}
    gap = gap_header(vs)
    mixed = len({v.reference for v in vs}) > 1
    rows = [{"cell": v.cell or "-", "λ": _lam_label(v.lam), "verdict": v.verdict,
             gap: f"{v.gap:+.3g} [{v.gap_low:+.3g}, {v.gap_high:+.3g}]",
             **({"gap against": v.reference} if mixed else {}),
             "slope per generation": f"{v.slope:+.3g} [{v.slope_low:+.3g}, {v.slope_high:+.3g}]",
             "generations": f"{v.window[0]}–{v.window[1]}", "seeds": v.seeds,
             "diverged (non-finite)": (f"{v.diverged}/{v.seeds} [{v.diverged_low:.2f}, {v.diverged_high:.2f}]"
                                       if v.diverged else "0"),
             **({"predicted (theory)": predicted.get(v.lam, "-")} if predicted else {}),
             **({"prediction check": checks.get((v.cell, v.lam), "no prediction")} if predictions else {})}
            for v in vs]
    if rows:
        parts.append("<h3>Stability verdict per λ</h3>")
        parts.append("<p class=\"note\">collapsing: significantly worse than the reference (λ = 0; generation 0 "
                     "in a cell without λ = 0) and still worsening; drifting: one of the two; stable: the 95% "
                     "intervals exclude a material change (10% of the baseline); uncertain: intervals too wide to "
                     "say. diverged: seeds whose metric is non-finite at the last generation (e.g. infinite "
                     "perplexity), with the fraction's 95% Clopper-Pearson interval; more diverged seeds than at the "
                     "reference make the verdict collapsing. The rule is in genloop's docs/experiments.md.</p>")
        if predictions:
            from genloop.report.prediction import LEGEND

            parts.append(f"<p class=\"note\">{html.escape(LEGEND)}</p>")
        parts.append(table(rows))
    links = [name for name in ("results.csv", "results.parquet", "summary.csv") if (folder / name).exists()]
    if links:
        parts.append("<p>Tables: " + ", ".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a>' for n in links)
                     + " (next to this report; <code>pandas.read_csv</code> / <code>read_parquet</code>).</p>")
    return "\n".join(parts)


def plot_losses(run: Path, path: Path) -> Path | None:
    """The training-loss curve of every generation of one run (None when it has none)."""
    from genloop.store.run import read_losses

    files = sorted((run / "losses").glob("gen_*.csv")) if (run / "losses").is_dir() else []
    if not files:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    colors = plt.cm.magma(np.linspace(0.1, 0.85, len(files)))
    for color, f in zip(colors, files):
        steps, losses = read_losses(f)
        ax.plot(steps, losses, color=color, lw=1, label=f.stem.replace("gen_", "gen "))
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_yscale("log" if np.all(np.concatenate([read_losses(f)[1] for f in files]) > 0) else "linear")
    if len(files) <= 12:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
