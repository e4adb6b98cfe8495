"""One self-contained HTML report of an experiment folder (or a single run folder).

``build_report(folder)`` writes ``report.html`` with, in order:

1. the resolved configuration (YAML);
2. the per-run summary table (:func:`genloop.report.tables.run_summary_rows`: λ, seed, state and
   the last generation's metrics);
3. one metric-vs-generation plot per metric present in ``metrics.jsonl``
   (:func:`genloop.report.plots.plot_metric_curves`);
4. samples: a scatter grid (rows λ, columns generations) when the stored evaluation samples
   are 2-D vectors (:func:`genloop.report.plots.plot_scatter_generations`), image grids when
   they are images ``(n, C, H, W)`` (:func:`genloop.report.grids.save_sample_grid`);
5. theory, when the model is supported: the per-λ prediction table of
   :func:`genloop.theory.report.theory_rows` (exact rate λκ/(1+λκ), the paper's Theorem 1/2
   quantities) and the overlay of predicted against observed distances of the parameters to
   θ* (:mod:`genloop.report.trajectory`; for the Gaussian one for the mean and one for the
   covariance).

Every section that does not apply, or fails on this folder, becomes a short note instead of
an error. Plots are PNGs embedded as base64 ``data:`` URIs and tables are HTML, so the file
opens anywhere without a network or JavaScript. Each number in a table cell carries its full
value in the cell's ``title`` attribute.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genloop.errors import ConfigError, DataError, GenloopError

log = logging.getLogger(__name__)

__all__ = ["build_report", "html_table", "png_data_uri"]

#: problems a section may hit on a folder it does not fit; they become notes in the report
_SECTION_ERRORS: tuple[type[BaseException], ...] = (
    GenloopError, OSError, ValueError, KeyError, IndexError, np.linalg.LinAlgError,
)

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .2em .5em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
figure { margin: 1em 0; } figcaption { font-size: .85em; color: #555; }
img { max-width: 100%; } p.note { color: #8a5a00; background: #fff8e6; padding: .4em .6em; }
"""


# ---- small HTML pieces -------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    """Short text of a table value (4 significant digits, like ``genloop show``)."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "holds" if value else "fails"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
               headers: Sequence[str] | None = None) -> str:
    """Rows of dicts as an HTML table; floats shown to 4 digits with ``repr`` in ``title``."""
    if not rows:
        return '<p class="note">(no rows)</p>'
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    headers = list(headers) if headers is not None else list(columns)
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) + "</tr>"]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            if isinstance(v, (float, np.floating)) and not isinstance(v, bool):
                cells.append(f'<td title="{float(v)!r}">{html.escape(_fmt(v))}</td>')
            elif isinstance(v, str):
                cells.append(f'<td class="text">{html.escape(v)}</td>')
            else:
                cells.append(f"<td>{html.escape(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,…`` of a PNG file (raises :class:`DataError` if it is not one)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise DataError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(path: Path, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="{png_data_uri(path)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _guard(name: str, fn: Callable[[], str]) -> str:
    """Run one section; a problem of this folder becomes a note (and a log warning)."""
    try:
        return fn()
    except _SECTION_ERRORS as exc:
        log.warning("report section %r skipped: %s", name, exc)
        return _note(f"{name}: not available ({type(exc).__name__}: {exc})")


# ---- the report ----------------------------------------------------------------------------------
class _Context:
    """What every section reads: the runs, their metrics and the parsed config."""

    def __init__(self, folder: Path, tmp: Path, *, seed: int, n_boot: int, theory: bool, probe: bool = False) -> None:
        from genloop.store.run import RunStore
        from genloop.sweep import find_runs

        self.folder = folder
        self.tmp = tmp
        self.seed = seed
        self.n_boot = n_boot
        self.theory = theory
        self.probe = probe
        self.runs = find_runs(folder)
        self.single = self.runs == [folder]
        self.stores = [RunStore(r) for r in self.runs]
        self.metrics = [s.read_metrics() for s in self.stores]
        cfg_path = folder / "config.yaml"
        self.config_text = ""
        self.cfg: Any = None
        self.cfg_error = ""
        self.grid = (folder / "cells.csv").exists()
        try:
            from genloop.config import parse_stored_config, read_yaml

            # validated without importing anything the config names (docs/variants.md)
            doc = read_yaml(cfg_path, what="config") if cfg_path.exists() else None
            self.config_text = cfg_path.read_text(encoding="utf-8") if cfg_path.exists() else ""
            if doc is not None and not isinstance(doc, dict):
                raise ConfigError(f"{cfg_path} is not a mapping")
            from genloop.sweep.grid import find_sweeps

            self.grid = self.grid or (bool(doc) and bool(find_sweeps(doc)))
            self.cfg = parse_stored_config(doc) if (doc and not self.grid) else None
            if self.grid:
                self.cfg_error = "a grid: every cell has its own config.yaml in its folder (cells.csv lists them)"
            elif self.cfg is None:
                self.cfg_error = f"{cfg_path} not found"
        except (GenloopError, ValueError) as exc:
            self.cfg_error = str(exc)
        self._counter = 0

    def png(self, stem: str) -> Path:
        self._counter += 1
        return self.tmp / f"{self._counter:03d}-{stem}.png"

    @property
    def last_generation(self) -> int:
        lengths = [len(m) for m in self.metrics if m]
        return min(lengths) - 1 if lengths else -1

    def lam_of(self, run: Path) -> str:
        name = run.parent.name
        return name.split("=", 1)[1] if name.startswith("lam=") else "?"

    def train(self) -> np.ndarray:
        """The real training set of the first run's seed."""
        from genloop.sweep import real_data

        if self.cfg is None:
            raise ConfigError(f"the config could not be read: {self.cfg_error}")
        seed = int(self.runs[0].name.split("=", 1)[1]) if self.runs[0].name.startswith("seed=") else self.cfg.loop.seeds[0]
        return real_data(self.cfg, seed)[1].train


def _section_config(ctx: _Context) -> str:
    if not ctx.config_text:
        return _note("no config.yaml in this folder")
    body = f"<pre>{html.escape(ctx.config_text)}</pre>"
    if ctx.grid:
        body += _note(ctx.cfg_error)
    elif ctx.cfg is None:
        body += _note(f"the config does not validate with this genloop version: {ctx.cfg_error}")
    return body


def _section_summary(ctx: _Context) -> str:
    from genloop.report.tables import run_summary_rows

    rows = run_summary_rows(ctx.folder)
    return html_table(rows)


def _metric_names(ctx: _Context) -> list[str]:
    """The recorded metrics; standard errors, bandwidths and other auxiliary keys are not plotted
    as metrics (a ``<metric>_se`` becomes the error bars of its metric)."""
    from genloop.report.plots import plotted_metrics

    skip = {"generation", "n_real", "n_synthetic"}
    return plotted_metrics(list(dict.fromkeys(k for rows in ctx.metrics for row in rows for k in row if k not in skip)))


def _section_metrics(ctx: _Context) -> str:
    from genloop.report.plots import plot_metric_curves

    names = _metric_names(ctx)
    if not names:
        return _note("no metrics were recorded (the config's metrics list is empty)")
    if ctx.single and ctx.lam_of(ctx.runs[0]) == "?":
        raise ConfigError(f"{ctx.folder} is not inside a 'lam=<λ>' folder")
    parts = []
    for name in names:
        parts.append(_guard(f"plot of {name}", lambda name=name: _figure(
            plot_metric_curves(ctx.folder, name, ctx.png(f"metric-{name}"), title=f"{name} per generation"),
            _metric_caption(ctx, name))))
    return "\n".join(parts)


def _metric_caption(ctx: _Context, name: str) -> str:
    """What a metric figure draws, and only that."""
    has_se = any(f"{name}_se" in row for rows in ctx.metrics for row in rows)
    several = max((len(v) for v in _seeds_per_group(ctx).values()), default=1) > 1
    return (f"{name} per generation: "
            + ("one panel per grid cell, " if ctx.grid else "")
            + "one line per λ" + (", the mean over seeds with a band of ±1 sd" if several else "")
            + (f"; error bars: 95% interval of the plotted value from {name}_se" if has_se else ""))


def _seeds_per_group(ctx: _Context) -> dict[tuple[str, str], list[Path]]:
    from genloop.report.plots import run_groups

    return run_groups(ctx.folder)


def _section_aggregate(ctx: _Context) -> str:
    from genloop.report.aggregate import section_aggregate

    if ctx.single:
        return _note("one run: nothing to aggregate over seeds (its metrics are below)")
    return section_aggregate(ctx.folder, ctx.png, _figure, html_table, predicted=_predicted_verdicts(ctx),
                             predictions=_predictions(ctx))


def _predictions(ctx: _Context) -> dict:
    """λ → :class:`genloop.report.prediction.Prediction` for the prediction check, where the theory
    covers this config (the same cached computation as :func:`_predicted_verdicts`)."""
    if not ctx.theory or ctx.cfg is None:
        return {}
    from genloop.report.prediction import config_predictions

    return config_predictions(ctx.cfg)


def _predicted_verdicts(ctx: _Context) -> dict[float, str]:
    """λ → the theory's verdict, where the theory covers this config (shared, cached computation)."""
    if not ctx.theory or ctx.cfg is None:  # a grid (no one config) or --no-theory: no torch import
        return {}
    from genloop.theory.report import THEORY_MODELS

    if ctx.cfg.model.name not in THEORY_MODELS:
        return {}
    from genloop.theory.config_theory import config_theory

    try:
        rows = config_theory(ctx.cfg).rows
    except GenloopError as exc:
        log.info("no predicted verdicts: %s", exc)
        return {}
    return {float(row["lam"]): str(row["verdict"]) for row in rows if row.get("verdict")}


def _section_losses(ctx: _Context) -> str:
    from genloop.report.aggregate import plot_losses

    path = plot_losses(ctx.runs[0], ctx.png("losses"))
    if path is None:
        return _note("no training-loss tables (classical families fit in closed form or by EM)")
    return _figure(path, f"training loss per step of every generation ({ctx.runs[0].relative_to(ctx.folder.parent)})")


def _shown_generations(last: int) -> list[int]:
    return sorted({0, last // 4, last // 2, last}) if last >= 0 else []


def _first_samples(ctx: _Context) -> np.ndarray | None:
    for store in ctx.stores:
        try:
            return store.load_samples(0)
        except FileNotFoundError:
            continue
    return None


def _section_samples(ctx: _Context) -> str:
    from genloop.report.plots import plot_scatter_generations

    samples = _first_samples(ctx)
    gens = _shown_generations(ctx.last_generation)
    if samples is None:
        if any((run / "grids").is_dir() for run in ctx.runs):
            return _image_grids(ctx, gens)
        return _note("no evaluation samples were kept (output.keep_samples: 0, or no metrics computed)")
    if samples.ndim == 2 and samples.shape[1] == 2:
        if ctx.single and ctx.lam_of(ctx.runs[0]) == "?":
            raise ConfigError(f"{ctx.folder} is not inside a 'lam=<λ>' folder")
        real = None
        if not ctx.grid:  # a grid's cells have data of their own: no one real set to draw behind them
            try:
                real = ctx.train()
            except _SECTION_ERRORS as exc:
                log.info("scatter without real data: %s", exc)
        rows = "grid cell and λ" if ctx.grid else "λ"
        path = plot_scatter_generations(ctx.folder, ctx.png("scatter"), generations=gens, real=real, seed=None,
                                        title="samples per generation" + (" (grey: real training data)" if real is not None else ""))  # fmt: skip
        return _figure(path, f"rows: {rows} (first seed of each); columns: generations; blue: stored evaluation "
                             "samples" + ("; grey: real training data" if real is not None else ""))
    if samples.ndim == 4:
        return _image_grids(ctx, gens)
    return _note(f"samples have shape {samples.shape[1:]} per sample: scatter grids are drawn for 2-D vectors, "
                 "grids for images (C, H, W)")


def _image_grids(ctx: _Context, gens: list[int]) -> str:
    """One grid per (grid cell,) λ (first seed) and shown generation: the run's own ``grids/gen_XXXX.png``
    when the store wrote one, else drawn from the stored samples."""
    from genloop.report.grids import save_sample_grid

    from genloop.report.plots import run_groups
    from genloop.store.run import RunStore

    first: dict[str, Any] = {}
    for (cell, lam), runs in run_groups(ctx.folder).items():
        first[f"{cell}, λ = {lam}" if cell else f"λ = {lam}"] = RunStore(runs[0])
    parts = []
    for label, store in first.items():  # label: the cell (in a grid) and λ
        for g in gens:
            stored = store.path / "grids" / f"gen_{g:04d}.png"
            if stored.exists():
                parts.append(_figure(stored, f"{label}, generation {g}: stored sample grid"))
                continue
            try:
                imgs = store.load_samples(g)[:32]
            except FileNotFoundError:
                continue
            scale = max(1, 32 // int(imgs.shape[-1]))
            path = save_sample_grid(imgs, ctx.png(f"grid-{len(parts)}-{g}"), 8, scale=scale)
            parts.append(_figure(path, f"{label}, generation {g}: {imgs.shape[0]} samples"))
    return "\n".join(parts) if parts else _note("no image samples found")


def _section_theory(ctx: _Context) -> str:
    if not ctx.theory:
        return _note("theory section not requested")
    if ctx.cfg is None:
        return _note(f"no theory: the config could not be read ({ctx.cfg_error})")
    # imported only here: the theory toolkit loads torch, which nothing else in a report needs
    from genloop.report.trajectory import TRAJECTORY_MODELS
    from genloop.theory.report import THEORY_MODELS

    model = ctx.cfg.model.name
    if model not in THEORY_MODELS:
        return _note(f"the theory toolkit does not cover model {model!r} (supported: {', '.join(THEORY_MODELS)})")
    parts = ["<h3>Predicted stability per λ</h3>", _guard("theory table", lambda: _theory_table(ctx))]
    from genloop.theory.config_theory import variant_description

    variant = variant_description(ctx.cfg)
    if variant and model in TRAJECTORY_MODELS:
        # the overlays draw the plain loop's trajectory: another loop than the one that ran
        parts.append(_note(f"no trajectory overlay: this run uses {variant}; the overlays predict the plain loop"))
    elif model in TRAJECTORY_MODELS:
        parts.append("<h3>Distance of the parameters to θ*: predicted vs observed</h3>")
        if model == "gaussian":
            parts += ["<h4>Mean: ||μ_t − μ*||² (exact prediction)</h4>",
                      _guard("trajectory overlay (mean)", lambda: _trajectory(ctx, "mu")),
                      "<h4>Covariance: ||Σ_t − Σ*||<sub>F</sub>² (exact at λ = 0 and ∞, first order in 1/n otherwise)</h4>",
                      _guard("trajectory overlay (covariance)", lambda: _trajectory(ctx, "sigma"))]
        else:
            parts.append(_guard("trajectory overlay", lambda: _trajectory(ctx, None)))
    return "\n".join(parts)


def _section_probe(ctx: _Context) -> str:
    if ctx.cfg is None:
        return _note(f"no probe: the config could not be read ({ctx.cfg_error})")
    from genloop.report.probe import probe_section

    return probe_section(ctx.cfg)


_THEORY_COLUMNS = [
    ("lam", "λ"), ("m", "m = ⌊λn⌋"), ("rate", "rate (learner)"), ("maximiser_rate", "G_λ rate"),
    ("norm2", "‖J‖₂"), ("transient", "max_t ‖Jᵗ‖₂"), ("sd_T", "sd at T"), ("stationary_sd", "stationary sd"),
    ("paper_condition", "Thm 1 condition"), ("paper_rho", "Thm 1 ρ"), ("free_rho", "ρ with exact ‖A−B‖"),
    ("theorem2_radius", "Thm 2 radius (95 %, all T)"), ("verdict", "verdict"), ("kappa_max", "κ_max"),
    ("alpha", "α"), ("L", "L (est.)"), ("eps", "ε̂ (W1)"), ("eps_floor", "W1 noise floor"),
]


def _theory_table(ctx: _Context) -> str:
    from genloop.theory.config_theory import config_theory
    from genloop.theory.report import LEGEND

    import sys

    # the numbers of `genloop theory CONFIG` (same stream), computed once per process, with progress
    res = config_theory(ctx.cfg, progress=bool(getattr(sys.stderr, "isatty", lambda: False)()))
    if not hasattr(res, "w1"):  # a family with a closed-form law (genloop.theory.laws)
        from genloop.theory.report import LAW_LEGEND

        cols = [("lam", "λ"), ("m", "m = ⌊λn⌋"), ("rate", "rate"), ("sd_T", "sd at T"),
                ("stationary_sd", "stationary sd"), ("law_T", res.law_title), ("law_inf", res.limit_title),
                ("verdict", "verdict")]
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in res.notes)
        return (html_table(res.rows, [k for k, _ in cols], [t for _, t in cols])
                + f"<p>Learner: {html.escape(res.learner)}.</p><p>Law: {html.escape(res.law)}.</p>" + notes
                + "<pre>" + html.escape(getattr(res, "legend", "") or LAW_LEGEND) + "</pre>")
    keys = [k for k, _ in _THEORY_COLUMNS]
    w1 = res.w1
    eps = ("consistent with no misspecification" if w1["eps_consistent"]
           else "above the noise floor: the model misses part of the data")
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in res.notes)
    return (html_table(res.rows, keys, [t for _, t in _THEORY_COLUMNS])
            + f"<p>Learner: {html.escape(res.learner)}.</p>"
            + f"<p>ε̂ = {w1['eps']:.3g} ± {w1['eps_sd']:.2g} against a noise floor of {w1['eps_floor']:.3g} ± "
              f"{w1['eps_floor_sd']:.2g} at the run's size: {html.escape(eps)}.</p>" + notes
            + "<p>Fitted on the real training data of the first seed, with the stream of <code>genloop theory</code> "
              "(the same numbers).</p><pre>" + html.escape(LEGEND) + "</pre>")


def _trajectory(ctx: _Context, part: str | None) -> str:
    from genloop.report.trajectory import compare_trajectories, plot_trajectory_overlay

    comps = compare_trajectories(ctx.folder, part=part, seed=ctx.seed)
    path = plot_trajectory_overlay(ctx.folder, ctx.png("trajectory"), comparisons=comps)
    rows = []
    for lam, comp in comps.items():
        T = comp.observed.shape[1] - 1
        se = comp.standard_error()
        for g in _shown_generations(T):
            rows.append({
                "λ": lam, "generation": g, "seeds": comp.observed.shape[0],
                "observed mean sq.": float(comp.observed[:, g].mean()), "± s.e.": float(se[g]),
                "predicted mean sq.": float(comp.predicted[g]) if comp.predicted is not None else None,
                "prediction": ("exact" if comp.exact else comp.method) if comp.predicted is not None else comp.note,
            })
    part = next(iter(comps.values())).part
    caveat = ""
    if part == "theta":
        offset = float(np.mean([c.observed[:, 0].mean() for c in comps.values()]))
        caveat = ("<p>Mixtures: θ* is the exact maximum-likelihood fit reached from generation 0 (EM + Newton); "
                  f"generation 0 itself is at squared distance {html.escape(_fmt(offset))} from it on average "
                  "because EM stops at its tolerance. The prediction is linearised around θ* with the learner's own "
                  "map (k warm-started EM iterations, k from the run), which carries that offset. It holds near θ*: "
                  "when generation 0 is far from θ* (as EM from k-means often is), EM is slower there than its "
                  "linearisation and the prediction is optimistic for the first generations.</p>")
    return (_figure(path, f"RMS distance to θ* ({part}); dashed: predicted")
            + html_table(rows) + caveat
            + "<p>Squared distances, mean over seeds (see genloop.report.trajectory for the definitions "
              "of θ* and of each prediction).</p>")


def build_report(
    folder: str | Path,
    out: str | Path | None = None,
    *,
    theory: bool = True,
    seed: int = 0,
    n_boot: int = 100,
    probe: bool = False,
) -> Path:
    """Write one self-contained HTML report of an experiment (or run) folder; return its path.

    ``out`` is the file to write (default ``FOLDER/report.html``; an existing folder gets a
    ``report.html`` inside). ``theory=False`` skips the theory section (the costliest);
    ``seed`` seeds the trajectory overlay's Monte Carlo parts; the theory table uses the
    stream of ``genloop theory`` (same numbers). ``n_boot`` is kept for compatibility (Theorem
    2's constants now come from the one-step sampling law, without a bootstrap). ``probe=True``
    adds the stability probe of :mod:`genloop.report.probe` (off by default: it runs the loop). Raises :class:`ConfigError` when ``folder`` does not exist or holds no run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"run folder not found: {folder}")
    from genloop.sweep import find_runs

    if not find_runs(folder):
        raise ConfigError(f"{folder} holds no genloop run (no status.json found)")
    out_path = folder / "report.html" if out is None else Path(out)
    if out_path.is_dir():
        out_path = out_path / "report.html"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genloop-report-") as tmp:
        ctx = _Context(folder, Path(tmp), seed=seed, n_boot=n_boot, theory=theory, probe=probe)
        title = (ctx.cfg.name if ctx.cfg is not None and ctx.cfg.name else folder.name) or str(folder)
        head = (f"<p>Folder <code>{html.escape(str(folder))}</code>: {len(ctx.runs)} run(s), "
                f"last common generation {ctx.last_generation}.</p>")
        sections = [
            ("Configuration", lambda: _section_config(ctx)),
            ("Over seeds: means, 95% intervals, verdicts", lambda: _section_aggregate(ctx)),
            ("Runs (last generation of each)", lambda: _section_summary(ctx)),
            ("Metrics per generation", lambda: _section_metrics(ctx)),
            ("Samples", lambda: _section_samples(ctx)),
            ("Training loss", lambda: _section_losses(ctx)),
            ("Theory", lambda: _section_theory(ctx)),
        ]
        if probe:
            sections.append(("Stability probe (measured rate per λ)", lambda: _section_probe(ctx)))
        body = [f"<h1>genloop report: {html.escape(str(title))}</h1>", head]
        for name, fn in sections:
            body.append(f"<h2>{html.escape(name)}</h2>")
            body.append(_guard(name, fn))
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>genloop report: {html.escape(str(title))}</title><style>{_STYLE}</style></head>\n<body>\n"
           + "\n".join(body) + "\n</body></html>\n")
    from genloop.store.run import atomic_write_text

    atomic_write_text(out_path, doc)
    log.info("report written to %s", out_path)
    return out_path
