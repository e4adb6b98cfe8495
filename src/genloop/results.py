"""Aggregated answers: one tidy table per experiment, means with confidence intervals over
seeds, and a stability verdict per λ.

>>> import pandas as pd                                    # doctest: +SKIP
>>> df = pd.read_parquet("runs/moons/results.parquet")     # or results.csv

``tidy`` has one row per (cell, swept key values, λ, seed, generation, metric) with its
``value``. ``summarize`` gives, per (cell, λ, generation, metric), the number of seeds, the
mean, its standard error s/√k and a 95 % Student-t confidence interval
mean ± t_{0.975, k−1}·s/√k (k seeds; no interval from a single seed). ``verdicts`` applies the
documented rule of :func:`verdict` to each (cell, λ).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from genloop.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

#: Metric keys for which a larger value means a worse model (distances, divergences, errors).
LOWER_IS_BETTER = ("w2", "sw2", "mmd", "fid", "fid_inf", "kid", "nll", "gaussian_w2", "gaussian_kl", "tv", "kl",
                   "test_error", "perplexity")
#: Metric keys for which a larger value means a better model.
HIGHER_IS_BETTER = ("precision", "recall", "density", "coverage", "support", "entropy")

#: The verdict rule's defaults (see :func:`verdict`).
RELATIVE_GAP = 0.10
CONFIDENCE = 0.95


def _lam_value(text: str) -> float:
    return math.inf if text == "inf" else float(text)


def tidy(folder: str | Path) -> pd.DataFrame:
    """Every metric of every completed generation of every run under ``folder`` as one table.

    Columns: ``cell`` (empty outside grids), one column per swept key, ``lam``, ``seed``,
    ``generation``, ``metric``, ``value``. Counts (``n_real``, ``n_synthetic``) are not metrics.
    """
    import pandas as pd

    from genloop.store import RunStore
    from genloop.sweep import find_runs
    from genloop.sweep.experiment import read_cells_table

    folder = Path(folder)
    runs = find_runs(folder)
    if not runs:
        raise ConfigError(f"{folder} holds no genloop run (no status.json found)")
    cells = {row["cell"]: row for row in read_cells_table(folder)}
    swept = [k for k in (next(iter(cells.values())) if cells else {}) if k not in ("cell", "label", "in_grid")]
    rows: list[dict[str, Any]] = []
    for run in runs:
        cell = run.parent.parent.name if run.parent.parent != folder and run.parent.parent.name in cells else ""
        values = {k: cells[cell].get(k, "") for k in swept} if cell else {}
        lam, seed = _lam_value(run.parent.name.split("=", 1)[1]), int(run.name.split("=", 1)[1])
        for line in RunStore(run).read_metrics():
            g = int(line["generation"])
            for key, value in line.items():
                if key in ("generation", "n_real", "n_synthetic"):
                    continue
                rows.append({"cell": cell, **values, "lam": lam, "seed": seed, "generation": g, "metric": key,
                             "value": float(value) if value is not None else math.nan})
    columns = ["cell", *swept, "lam", "seed", "generation", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, standard error, low, high) of the Student-t interval over ``values`` (NaN-free).

    With k values the interval is mean ± t_{(1+c)/2, k−1} · s/√k (s: the sample standard
    deviation); with one value the standard error and the interval are NaN.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    k = x.size
    if k == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if k == 1:
        return mean, math.nan, math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(k))
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * se
    return mean, se, mean - half, mean + half


def summarize(table: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean, standard error and t-interval over seeds per (cell, λ, generation, metric).

    ``seeds`` counts the finite values the mean is over; ``nonfinite`` the seeds whose value is
    non-finite (null: diverged), which the mean does not include and the table says so."""
    import pandas as pd

    keys = [c for c in table.columns if c not in ("seed", "value")]
    out = []
    for group, sub in table.groupby(keys, sort=True, dropna=False):
        mean, se, low, high = t_interval(sub["value"].to_numpy(), confidence)
        values = sub["value"].to_numpy(float)
        finite = int(np.isfinite(values).sum())
        out.append({**dict(zip(keys, group)), "seeds": finite, "nonfinite": int(values.size - finite), "mean": mean,
                    "se": se, "ci_low": low, "ci_high": high})
    return pd.DataFrame(out, columns=[*keys, "seeds", "nonfinite", "mean", "se", "ci_low", "ci_high"])


@dataclass(frozen=True)
class Verdict:
    """The stability verdict of one (cell, λ) on one metric, with the numbers behind it."""

    cell: str
    lam: float
    metric: str
    verdict: str
    gap: float
    gap_low: float
    gap_high: float
    slope: float
    slope_low: float
    slope_high: float
    baseline: float
    seeds: int
    window: tuple[int, int]
    #: what the gap is measured against: "λ = 0" (the cell's real-data-only run, same seed) or,
    #: when the cell has no λ = 0 run, "generation 0" (the same run's first generation)
    reference: str = "λ = 0"
    #: Seeds whose metric is non-finite at the last generation (stored as null: e.g. an
    #: infinite perplexity after a lost transition). They count in ``seeds``; ``gap`` and
    #: ``slope`` are over the finite seeds and say so through this count.
    diverged: int = 0
    #: The fraction ``diverged / seeds`` and its 95 % Clopper–Pearson interval.
    diverged_fraction: float = 0.0
    diverged_low: float = 0.0
    diverged_high: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain fields; a non-finite float (λ = ∞, an infinite gap) stays a float here — use
        :func:`json_record` for strict JSON."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` made strict JSON: every non-finite float becomes ``null`` and is named, with its
    value as text, under ``"nonfinite"`` (e.g. ``{"lam": null, ..., "nonfinite": {"lam": "inf"}}``)."""
    out: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            flags[key] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    if flags:
        out["nonfinite"] = flags
    return out


def diverged_interval(diverged: int, seeds: int, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(fraction, low, high): the fraction of seeds that diverged with its exact (Clopper–Pearson)
    interval, low = B((1−c)/2; d, k−d+1), high = B((1+c)/2; d+1, k−d) (B: the beta quantile)."""
    if seeds <= 0:
        return (math.nan,) * 3
    ci = stats.binomtest(diverged, seeds).proportion_ci(confidence_level=confidence, method="exact")
    return diverged / seeds, float(ci.low), float(ci.high)


def verdict(gap: tuple[float, float, float], slope: tuple[float, float, float], baseline: float, *,
            window: int, relative_gap: float = RELATIVE_GAP, diverged: tuple[int, int] = (0, 0)) -> str:
    """The rule: ``collapsing``, ``drifting``, ``stable`` or ``uncertain``.

    Both inputs are oriented so that positive means worse (the caller flips the sign of a
    higher-is-better metric): ``gap`` = (estimate, low, high) of the difference to the λ = 0
    baseline at the last generation (paired by seed), ``slope`` = the same for the
    least-squares slope per generation over the last ``window`` generations; ``baseline`` is
    the baseline's mean at the last generation and tol = ``relative_gap`` × |baseline|.

    * *worse*: the gap's lower bound exceeds tol (significantly and materially worse than
      with real data only); *growing*: the slope's lower bound is above 0 (still worsening);
    * ``collapsing`` = worse and growing; ``drifting`` = exactly one of the two;
    * ``stable`` = neither, and the intervals rule out a material change: the gap's upper
      bound is at most tol and the slope's upper bound times ``window`` is at most tol;
    * ``uncertain`` = neither, but the intervals are too wide to say (or there is no
      interval: a single seed).

    ``diverged`` = (seeds of this λ whose metric is non-finite at the last generation, the same
    count for the baseline). A non-finite value is a collapse signal, not a missing one: when
    more seeds diverged than in the baseline the mean over seeds is infinite (worse) and a
    divergence does not come back (growing), so the verdict is ``collapsing`` whatever the finite
    seeds say; it can never be ``stable`` while any seed diverged.
    """
    d, d_base = diverged
    if d > d_base:
        return "collapsing"
    tol = relative_gap * abs(baseline) if math.isfinite(baseline) and baseline != 0 else relative_gap
    _, g_low, g_high = gap
    _, s_low, s_high = slope
    if not (math.isfinite(g_low) and math.isfinite(s_low)):
        return "uncertain"
    worse, growing = g_low > tol, s_low > 0
    if worse and growing:
        return "collapsing"
    if worse or growing:
        return "drifting"
    if g_high <= tol and s_high * window <= tol and d == 0:
        return "stable"
    return "uncertain"


def metric_sign(metric: str) -> float:
    """+1 when a larger value of ``metric`` is worse (distances, errors), −1 when it is better."""
    return _direction(metric)


def _direction(metric: str) -> float:
    base = metric.split("_se")[0]
    if base in HIGHER_IS_BETTER or any(base.startswith(h) for h in HIGHER_IS_BETTER):
        return -1.0
    return 1.0


def default_metric(table: pd.DataFrame) -> str | None:
    """The metric a verdict uses by default: the first lower-is-better metric recorded."""
    names = list(dict.fromkeys(table["metric"]))
    for name in names:
        if name in LOWER_IS_BETTER and not name.endswith("_se"):
            return name
    return next((n for n in names if not n.endswith("_se")), None)


def verdicts(table: pd.DataFrame, metric: str | None = None, *, window: int | None = None,
             confidence: float = CONFIDENCE, relative_gap: float = RELATIVE_GAP) -> list[Verdict]:
    """The verdict of every (cell, λ) on ``metric`` (default: :func:`default_metric`).

    The gap is paired by seed against λ = 0 of the same cell (same seed, same real data); the
    slope is fitted per seed over the last ``window`` generations (default ⌈G/4⌉, at least 3)
    and both are averaged over seeds with the t-interval of :func:`t_interval`. Without a
    λ = 0 run in a cell, the baseline is the same run's generation 0.

    A seed whose value at the last generation is non-finite (null in ``metrics.jsonl``) has
    *diverged*: it counts in ``seeds`` and in ``diverged`` (with its Clopper–Pearson interval),
    the gap and slope are over the finite seeds only, and :func:`verdict` calls the λ
    ``collapsing`` when more of its seeds diverged than the baseline's.
    """
    metric = metric or default_metric(table)
    if metric is None:
        return []
    sub = table[table["metric"] == metric]
    if sub.empty:
        raise ConfigError(f"no metric {metric!r} recorded; recorded: {', '.join(sorted(set(table['metric'])))}")
    sign = _direction(metric)
    out = []
    for cell, cell_rows in sub.groupby("cell", sort=True):
        last = int(cell_rows["generation"].max())
        w = window or max(3, math.ceil(last / 4))
        first = max(0, last - w + 1)
        has_baseline = (cell_rows["lam"] == 0).any()
        base_runs = {seed: run.set_index("generation")["value"]
                     for seed, run in cell_rows[cell_rows["lam"] == 0].groupby("seed")} if has_baseline else {}
        base_diverged = sum(1 for b in base_runs.values() if last in b.index and not math.isfinite(float(b[last])))
        for lam, rows in cell_rows.groupby("lam", sort=True):
            gaps, slopes, bases = [], [], []
            seeds = diverged = 0
            for seed, run in rows.groupby("seed"):
                run = run.set_index("generation")["value"]
                if last not in run.index:
                    continue
                if has_baseline:
                    base = base_runs.get(seed)
                    if base is None or last not in base.index:
                        continue
                    b = float(base[last])
                else:
                    b = float(run.get(0, math.nan))
                seeds += 1
                if not math.isfinite(float(run[last])):
                    diverged += 1
                    continue
                if math.isfinite(b):
                    bases.append(b)
                    gaps.append(sign * (float(run[last]) - b))
                tail = run[(run.index >= first) & (run.index <= last)]
                tail = tail[np.isfinite(tail.to_numpy(float))]
                if len(tail) >= 2:
                    slopes.append(sign * float(np.polyfit(tail.index.to_numpy(float), tail.to_numpy(float), 1)[0]))
            if not seeds:
                continue
            g = t_interval(np.array(gaps), confidence)
            s = t_interval(np.array(slopes), confidence) if slopes else (math.nan,) * 4
            baseline = float(np.mean(bases)) if bases else math.nan
            frac = diverged_interval(diverged, seeds, confidence)
            name = "baseline" if (has_baseline and lam == 0) else verdict(
                (g[0], g[2], g[3]), (s[0], s[2], s[3]), baseline, window=last - first + 1, relative_gap=relative_gap,
                diverged=(diverged, base_diverged if has_baseline else 0))
            out.append(Verdict(cell=str(cell), lam=float(lam), metric=metric, verdict=name, gap=g[0], gap_low=g[2],
                               gap_high=g[3], slope=s[0], slope_low=s[2], slope_high=s[3], baseline=baseline,
                               seeds=seeds, window=(first, last), diverged=diverged, diverged_fraction=frac[0],
                               diverged_low=frac[1], diverged_high=frac[2],
                               reference="λ = 0" if has_baseline else "generation 0"))
    return out


def write_tables(folder: str | Path) -> dict[str, Path]:
    """Write ``results.parquet`` (when pyarrow is installed), ``results.csv``, ``summary.csv``
    and ``verdicts.json`` into ``folder``; return their paths."""
    from genloop._fs import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    table = tidy(folder)
    summary = summarize(table)
    paths = {"results.csv": folder / "results.csv", "summary.csv": folder / "summary.csv",
             "verdicts.json": folder / "verdicts.json"}
    atomic_write_text(paths["results.csv"], table.to_csv(index=False))
    atomic_write_text(paths["summary.csv"], summary.to_csv(index=False))
    atomic_write_text(paths["verdicts.json"], json.dumps([json_record(v.as_dict()) for v in verdicts(table)], indent=1,
                                                          allow_nan=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    import io

    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    atomic_write_bytes(folder / "results.parquet", buf.getvalue())
    paths["results.parquet"] = folder / "results.parquet"
    return paths


def summary_text(folder: str | Path, metric: str | None = None) -> str:
    """What ``genloop show`` prints for an experiment: the last generation's mean ± CI per
    (cell, λ, metric), then the verdict per λ."""
    from genloop._text import format_table

    table = tidy(folder)
    summary = summarize(table)
    if summary.empty:
        return "no metric values recorded (yet): the config lists no metrics, or no generation is complete"
    last = summary[summary["generation"] == summary.groupby("cell")["generation"].transform("max")]
    rows = []
    for (cell, lam), sub in last.groupby(["cell", "lam"], sort=True):
        row: dict[str, Any] = {"cell": cell or "-", "lam": "inf" if math.isinf(lam) else lam,
                               "gen": int(sub["generation"].iloc[0]),
                               "seeds": int((sub["seeds"] + sub["nonfinite"]).max())}
        for _, r in sub.iterrows():
            if str(r["metric"]).endswith("_se"):
                continue
            ci = "" if not math.isfinite(r["ci_low"]) else f" [{r['ci_low']:.4g}, {r['ci_high']:.4g}]"
            lost = f" ({int(r['nonfinite'])} of {int(r['seeds']) + int(r['nonfinite'])} seeds non-finite)" \
                if r["nonfinite"] else ""
            row[r["metric"]] = f"{r['mean']:.4g}{ci}{lost}"
        rows.append(row)
    if not any(r["cell"] != "-" for r in rows):
        for r in rows:
            del r["cell"]
    parts = ["mean over seeds at the last generation [95% t-interval]", format_table(rows)]
    vs = verdicts(table, metric)
    if vs:
        gap = gap_header(vs)
        vrows = [{"cell": v.cell or "-", "lam": "inf" if math.isinf(v.lam) else v.lam, "verdict": v.verdict,
                  gap: _interval(v.gap, v.gap_low, v.gap_high),
                  **({} if _one_reference(vs) else {"gap against": v.reference}),
                  "slope/gen (last gens)": _interval(v.slope, v.slope_low, v.slope_high), "seeds": v.seeds,
                  "diverged": _diverged(v)}
                 for v in vs]
        if not any(r["cell"] != "-" for r in vrows):
            for r in vrows:
                del r["cell"]
        parts += ["", f"stability verdict on {vs[0].metric} (rule: docs/experiments.md)", format_table(vrows),
                  "gap: last generation minus λ = 0, paired by seed [95% t-interval]; slope: per generation over the "
                  "last generations; diverged: seeds whose metric is non-finite at the last generation, d/k [95% "
                  "Clopper-Pearson] (more than at λ = 0 makes the verdict collapsing)"]
    return "\n".join(parts)


def _one_reference(vs: list[Verdict]) -> bool:
    return len({v.reference for v in vs}) == 1


def gap_header(vs: list[Verdict]) -> str:
    """The header of the gap column: "gap to λ=0" only when every cell ran λ = 0, "change since
    generation 0" when none did, plain "gap" (with a column naming the reference) when mixed."""
    metric = vs[0].metric if vs else ""
    if _one_reference(vs) and vs[0].reference == "λ = 0":
        return f"gap to λ=0 ({metric})"
    if _one_reference(vs):
        return f"change since generation 0 ({metric})"
    return f"gap ({metric})"


def _diverged(v: Verdict) -> str:
    """``d/k [low, high]``: seeds with a non-finite metric and the fraction's 95 % interval."""
    if not v.diverged:
        return "0"
    return f"{v.diverged}/{v.seeds} [{v.diverged_low:.2f}, {v.diverged_high:.2f}]"


def _interval(est: float, low: float, high: float) -> str:
    if not math.isfinite(est):
        return "-"
    return f"{est:+.3g}" + (f" [{low:+.3g}, {high:+.3g}]" if math.isfinite(low) else "")
