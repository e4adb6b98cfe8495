"""``genloop reproduce``: the paper's claims rerun from the configs of ``examples/reproduce/``.

Bertrand et al. (ICLR 2024) make four kinds of claim: Theorem 1's stability condition
λ(1 + Lε/α) < 1/2, the Gaussian collapse law when fully synthetic (E[σ_t]/σ_0 = c4(n)^t for
the unbiased estimator), stability for small λ and collapse for λ = ∞ with flows and diffusion
models on 2-D data, and FID / precision / recall over generations on images. Every config of
the reproduction folder is one experiment (every λ × seed); this module runs them all
(:func:`run_reproduction`), then writes, per config, the mean and 95 % t-interval per λ and
generation (:func:`genloop.results.summarize`), the observed verdict per λ
(:func:`genloop.results.verdicts`) beside the theory's predicted verdict, exact rate and the
paper's sufficient condition where the theory applies (:func:`genloop.theory.config_theory.config_theory`),
and a figure per metric (:func:`write_results`). :func:`compare_results` checks a rerun against
committed numbers within their intervals.

A config may start from another config's generation 0: ``model.init: "{out}/NAME/lam=0/seed=0/checkpoints/gen_0000"``
names the generation-0 checkpoint that config ``NAME`` trains on real data; ``{out}`` is the
reproduction's output folder, and ``NAME`` runs first.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genloop._text import format_table
from genloop.errors import ConfigError

log = logging.getLogger(__name__)

#: where the configs live and where the committed tables go (relative to the repository root)
CONFIG_DIR = Path("examples/reproduce")
RESULTS_DIR = Path("docs/reproduction")
#: the placeholder of the output folder inside a config's strings
OUT_PLACEHOLDER = "{out}"
#: metrics a verdict is read on, by preference (the first one a config records)
VERDICT_METRICS = ("fid", "w2", "cov_drift")
#: metrics whose observed verdicts are also shown side by side, where recorded (each read in its
#: own direction: precision, recall, density and coverage are better when higher)
SIDE_METRICS = ("fid", "precision", "recall", "density", "coverage", "w2", "mmd", "nll")
#: ``--quick``: every config at toy size, one generation (dotted key -> largest value kept)
QUICK_CAPS: dict[str, int] = {
    "loop.generations": 1,
    "data.n": 300,
    "model.train.samples": 512,
    "model.train.finetune_samples": 256,
    "model.train.warmup_samples": 256,
    "model.train.batch_size": 128,
    "model.train.ema_halflife_samples": 256,
    "model.max_iter": 20,
}
#: ``--quick``: evaluation samples per generation, and EDM's sampler steps
QUICK_N_EVAL = 128
QUICK_EDM_STEPS = 4
#: the file name of the run record written beside the tables
MANIFEST = "manifest.json"
#: relative tolerance for values that carry no interval (a single seed; the theory's numbers)
EXACT_RTOL = 1e-6


@dataclass(frozen=True)
class ReproConfig:
    """One config of the reproduction: its name (the file stem), path and parsed document."""

    name: str
    path: Path
    doc: dict[str, Any]

    @property
    def needs(self) -> list[str]:
        """Names of the configs whose output this one reads (its generation-0 checkpoint)."""
        text = json.dumps(self.doc)
        return sorted(set(re.findall(re.escape(OUT_PLACEHOLDER) + r"/([A-Za-z0-9_.-]+)/", text)))


# ---- the configs ---------------------------------------------------------------------------------
def _set_dotted(doc: dict[str, Any], dotted: str, cap: int) -> None:
    node: Any = doc
    keys = dotted.split(".")
    for k in keys[:-1]:
        if not isinstance(node, dict) or k not in node:
            return
        node = node[k]
    last = keys[-1]
    if isinstance(node, dict) and isinstance(node.get(last), int) and not isinstance(node.get(last), bool):
        node[last] = min(node[last], cap)


def quick_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The toy-size version of a config: :data:`QUICK_CAPS` applied where the key is set,
    :data:`QUICK_N_EVAL` evaluation samples, :data:`QUICK_EDM_STEPS` sampler steps for EDM, the
    first seed, and the first and last λ only (the no-synthetic and the most synthetic run)."""
    out = json.loads(json.dumps(doc))
    for dotted, cap in QUICK_CAPS.items():
        _set_dotted(out, dotted, cap)
    loop = out.get("loop", {})
    if isinstance(loop, dict):  # evaluate on a few samples even where the config evaluates on all held-out data
        loop["n_eval"] = min(loop.get("n_eval") or QUICK_N_EVAL, QUICK_N_EVAL)
    model = out.get("model", {})
    if isinstance(model, dict) and model.get("name") == "edm":  # EDM samples with 18 Heun steps by default
        model["num_steps"] = min(model.get("num_steps") or QUICK_EDM_STEPS, QUICK_EDM_STEPS)
    if isinstance(loop.get("seeds"), list) and loop["seeds"]:
        loop["seeds"] = loop["seeds"][:1]
    lams = loop.get("lambdas")
    if isinstance(lams, list) and len(lams) > 2:
        loop["lambdas"] = [lams[0], lams[-1]]
    for metric in out.get("metrics", []):
        if isinstance(metric, dict) and isinstance(metric.get("n_repeats"), int):
            metric["n_repeats"] = min(metric["n_repeats"], 1)
    return out


def _substitute(value: Any, out: str) -> Any:
    if isinstance(value, str):
        return value.replace(OUT_PLACEHOLDER, out)
    if isinstance(value, dict):
        return {k: _substitute(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, out) for v in value]
    return value


def load_configs(config_dir: str | Path = CONFIG_DIR, *, only: str | None = None,
                 quick: bool = False) -> list[ReproConfig]:
    """The reproduction's configs in the order they run (a config after those it reads).

    ``only`` keeps one config and the configs it needs; ``quick`` shrinks each one
    (:func:`quick_doc`). Raises :class:`ConfigError` for a missing folder, an unknown name, or a
    config that needs one that does not exist.
    """
    from genloop.config import read_config_doc

    folder = Path(config_dir)
    if not folder.is_dir():
        raise ConfigError(f"reproduction configs folder {folder} does not exist (run from the repository root, "
                          "or pass --configs)")
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"reproduction configs folder {folder} holds no .yaml config")
    configs: dict[str, ReproConfig] = {}
    for p in paths:
        doc = read_config_doc(p)
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {p} must be a mapping")
        configs[p.stem] = ReproConfig(p.stem, p, quick_doc(doc) if quick else doc)
    for c in configs.values():
        missing = [n for n in c.needs if n not in configs]
        if missing:
            raise ConfigError(f"config {c.path} reads {OUT_PLACEHOLDER}/{missing[0]}/, but {folder} has no "
                              f"config {missing[0]}.yaml")
    if only is not None and only not in configs:
        raise ConfigError(f"unknown reproduction config {only!r}; known: {', '.join(configs)}")
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise ConfigError(f"reproduction configs read each other in a circle: {' -> '.join((*chain, name))}")
        if name in order:
            return
        for dep in configs[name].needs:
            visit(dep, (*chain, name))
        order.append(name)

    for name in [only] if only is not None else list(configs):
        visit(name, ())
    return [configs[n] for n in order]


def resolved_doc(config: ReproConfig, out: str | Path) -> dict[str, Any]:
    """The config's document with :data:`OUT_PLACEHOLDER` replaced by ``out``."""
    return _substitute(config.doc, str(Path(out)))


# ---- running -------------------------------------------------------------------------------------
def run_reproduction(out: str | Path, *, config_dir: str | Path = CONFIG_DIR, only: str | None = None,
                     quick: bool = False, jobs: int = 2,
                     on_config: Callable[[str], None] | None = None,
                     progress: Callable[[Any, Path], Any] | None = None) -> dict[str, float]:
    """Run every reproduction config into ``out/NAME`` (resuming what is there); return the wall
    seconds each took in this call. Everything is validated before the first run writes.

    ``progress(experiment, folder)``, when given, returns a progress display for one config
    (a :class:`genloop.sweep.progress.SweepProgress`: ``generation_done``, ``run_done``, ``close``).
    """
    from genloop.results import write_tables
    from genloop.sweep.experiment import plan_experiment, run_grid
    from genloop.sweep.runs import check_experiment

    out = Path(out)
    configs = load_configs(config_dir, only=only, quick=quick)
    plans = []
    for c in configs:
        try:
            exp = plan_experiment(resolved_doc(c, out))
            if exp.is_grid:
                raise ConfigError("a reproduction config is one experiment, without sweeps")
            if not c.needs:  # the others read a checkpoint that an earlier config writes
                check_experiment(exp.cells[0].cfg, out / c.name, jobs=jobs)
        except ConfigError as exc:
            raise ConfigError(f"{c.path}: {exc}") from None
        plans.append((c, exp))
    seconds: dict[str, float] = {}
    for c, exp in plans:
        if on_config is not None:
            on_config(c.name)
        start = time.perf_counter()
        bar = progress(exp, out / c.name) if progress is not None else None
        try:
            run_grid(exp, out / c.name, resume=True, jobs=jobs,
                     progress=bar.generation_done if bar is not None and jobs == 1 else None,
                     on_run_done=bar.run_done if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        write_tables(out / c.name)
        seconds[c.name] = time.perf_counter() - start
        record_seconds(out / c.name, seconds[c.name])
        log.info("reproduce: %s done in %.0f s", c.name, seconds[c.name])
    return seconds


#: per config folder: the wall seconds of the call that last ran it (kept with the runs, so a
#: failure after a config finished never loses its time)
TIMING = "reproduce.json"


def record_seconds(folder: str | Path, seconds: float) -> None:
    """Record ``seconds`` (the wall time of the call that ran this config) in ``folder/reproduce.json``."""
    from genloop._fs import atomic_write_text

    atomic_write_text(Path(folder) / TIMING, json.dumps({"seconds": float(seconds), "cpu": cpu_name(),
                                                        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


def recorded_seconds(folder: str | Path) -> float | None:
    """The seconds :func:`record_seconds` kept for a config folder (None when there are none)."""
    try:
        value = json.loads((Path(folder) / TIMING).read_text())["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 else None


# ---- tables --------------------------------------------------------------------------------------
def _lam_text(lam: float) -> str:
    return "inf" if math.isinf(lam) else f"{lam:g}"


def _ci_text(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.4g}" + (f" [{low:.4g}, {high:.4g}]" if math.isfinite(low) else "")


def shown_generations(last: int) -> list[int]:
    """Generations a markdown table shows: all up to 10, else 0, G/4, G/2, 3G/4 and G (the CSV has all)."""
    if last <= 10:
        return list(range(last + 1))
    return sorted({0, last // 4, last // 2, (3 * last) // 4, last})


def verdict_metric(metrics: list[str]) -> str | None:
    """The metric the verdicts are read on: the first of :data:`VERDICT_METRICS` recorded."""
    return next((m for m in VERDICT_METRICS if m in metrics), None)


def theory_rows(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The theory's per-λ rows for a config (empty with the reason when it makes no prediction)."""
    from genloop.config import parse_config
    from genloop.theory.config_theory import config_theory
    from genloop.theory.report import SUPPORTED_MODELS

    cfg = parse_config(doc)
    if cfg.model.name not in SUPPORTED_MODELS:
        return [], (f"no prediction: the theory covers {', '.join(SUPPORTED_MODELS)}; a neural family fine-tunes "
                    "for a fixed budget, a map the theory does not model")
    try:
        res = config_theory(cfg)
    except ConfigError as exc:
        return [], f"no prediction: {exc}"
    rows = []
    for r in res.rows:
        rows.append({k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
                         else (bool(v) if isinstance(v, (bool, np.bool_)) else v))
                     for k, v in r.items()
                     if k in ("lam", "m", "rate", "paper_condition", "paper_lambda_max", "free_lambda_max",
                              "paper_rho", "verdict")})
    note = ""
    if (cfg.model.name == "gaussian" and res.d == 1 and cfg.data.n > 1
            and any(math.isinf(lam) for lam in cfg.loop.lambdas)):  # the 1-D law (paper, Section 2.2)
        from genloop.theory.gaussian import expected_sigma_ratio

        estimator = cfg.model.options.get("estimator", "mle")
        T = cfg.loop.generations
        note = (f"closed form at λ = ∞ ({estimator} estimator, n = {cfg.data.n}): E[σ_T]/σ_0 = "
                f"{expected_sigma_ratio(cfg.data.n, T, estimator):.4g} at T = {T}")
    return rows, note


def _prediction_checks(doc: dict[str, Any], table: Any, metric: str) -> dict[float, Any]:
    """λ → the prediction check (:mod:`genloop.report.prediction`) of one config's run."""
    from genloop.config import parse_config
    from genloop.report.prediction import config_predictions, prediction_checks

    predictions = config_predictions(parse_config(doc))
    if not predictions:
        return {}
    return {c.lam: c for c in prediction_checks(table, predictions, metric)}


def _check_cell(check: Any) -> str:
    if check is None:
        return "no prediction"
    from genloop.report.prediction import check_text

    return check_text(check)


def _plot_summary(summary: Any, metric: str, path: Path, title: str) -> Path:
    """Mean over seeds per generation, one line per λ, with its 95 % t-interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = summary[summary["metric"] == metric]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for lam, rows in sub.groupby("lam", sort=True):
        rows = rows.sort_values("generation")
        label = "λ = ∞ (fully synthetic)" if math.isinf(lam) else f"λ = {lam:g}"
        (line,) = ax.plot(rows["generation"], rows["mean"], marker="o", ms=3, label=label)
        if np.isfinite(rows["ci_low"].to_numpy()).any():
            ax.fill_between(rows["generation"], rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def config_section(name: str, run_folder: Path, doc: dict[str, Any], results: Path, config_path: str | Path = "") -> str:
    """Write one config's tables and figures under ``results/NAME/``; return its markdown section."""
    from genloop._fs import atomic_write_text
    from genloop.results import summarize, tidy, verdicts

    target = results / name
    target.mkdir(parents=True, exist_ok=True)
    table = tidy(run_folder)
    summary = summarize(table)
    atomic_write_text(target / "summary.csv", summary.to_csv(index=False))
    metrics = [m for m in dict.fromkeys(summary["metric"]) if not str(m).endswith("_se")]
    vmetric = verdict_metric(metrics)
    vs = verdicts(table, vmetric) if vmetric else []
    atomic_write_text(target / "verdicts.json", strict_json([v.as_dict() for v in vs]))
    theory, note = theory_rows(doc)
    atomic_write_text(target / "theory.json", strict_json({"rows": theory, "note": note}))
    checks = _prediction_checks(doc, table, vmetric) if (theory and vmetric) else {}
    if checks:
        atomic_write_text(target / "prediction_checks.json", strict_json([c.as_dict() for c in checks.values()]))

    last = int(summary["generation"].max()) if not summary.empty else 0
    seeds = int(summary["seeds"].max()) if not summary.empty else 0
    head = (f"Config `{config_path}`; {seeds} seed(s), generations 0–{last}; "
            f"run folder `{run_folder}`; all generations in `{name}/summary.csv`.")
    parts = [f"## {name}", "", head, "", "Mean over seeds [95 % t-interval]:", ""]
    rows = []
    for (lam, g), sub in summary[summary["generation"].isin(shown_generations(last))].groupby(
            ["lam", "generation"], sort=True):
        row: dict[str, Any] = {"λ": _lam_text(lam), "gen": int(g)}
        for _, r in sub.iterrows():
            if r["metric"] in metrics:
                row[r["metric"]] = _ci_text(r["mean"], r["ci_low"], r["ci_high"])
        rows.append(row)
    parts += [format_table(rows, ["λ", "gen", *metrics], markdown=True), ""]

    by_lam = {r["lam"]: r for r in theory}
    vrows = []
    for v in vs:
        t = by_lam.get(v.lam, {})
        vrows.append({
            "λ": _lam_text(v.lam), "observed verdict": v.verdict,
            f"gap to λ=0 ({v.metric})": _ci_text(v.gap, v.gap_low, v.gap_high),
            "slope/gen": _ci_text(v.slope, v.slope_low, v.slope_high),
            "predicted (theory)": (str(t.get("verdict", "-")).replace("genloop probe CONFIG", f"genloop probe {config_path}")
                                   if theory else "no prediction"),
            "prediction check": _check_cell(checks.get(v.lam)),
            "exact rate": _num(t.get("rate")),
            "Thm 1 condition": {True: "holds", False: "fails"}.get(t.get("paper_condition"), "-"),
            "Thm 1 certifies λ <": _num(t.get("paper_lambda_max")),
            "exact ‖A−B‖ certifies λ <": _num(t.get("free_lambda_max")),
        })
    if vrows:
        from genloop.report.prediction import LEGEND

        parts += [f"Verdict per λ on {vmetric} (rule: docs/experiments.md) beside the theory's prediction:", "",
                  format_table(vrows, markdown=True), "", LEGEND, ""]
    side = [m for m in SIDE_METRICS if m in metrics]
    if len(side) > 1:
        per = {m: {v.lam: v.verdict for v in verdicts(table, m)} for m in side}
        lams = sorted({lam for d in per.values() for lam in d})
        parts += ["Observed verdict per λ on each metric (the same rule, each metric in its own direction):", "",
                  format_table([{"λ": _lam_text(lam), **{m: per[m].get(lam, "-") for m in side}} for lam in lams],
                               markdown=True), ""]
    if note:
        parts += [note, ""]
    for metric in [m for m in metrics if m in (vmetric, "precision", "recall", "std_ratio")]:
        fig = _plot_summary(summary, metric, target / f"{metric}.png", f"{name}: {metric} (mean, 95 % interval)")
        parts += [f"![{name} {metric}]({name}/{fig.name})", ""]
    return "\n".join(parts)


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return None
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else v
    return value if value is None or isinstance(value, str) else str(value)


def strict_json(value: Any) -> str:
    """``value`` as strict JSON: ∞ as the text "inf" (as in the folders ``lam=inf``), NaN as null."""
    return json.dumps(_json_value(value), indent=1, allow_nan=False)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    return "inf" if math.isinf(v) else f"{v:.4g}"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def genloop_version() -> str:
    """The installed genloop's version ("unknown" when it runs from a source tree without metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genloop")
    except PackageNotFoundError:
        return "unknown"


def write_results(out: str | Path, results: str | Path, *, config_dir: str | Path = CONFIG_DIR,
                  only: str | None = None, quick: bool = False, seconds: dict[str, float] | None = None,
                  names: Sequence[str] | None = None) -> Path:
    """Write ``results/README.md`` (every config's tables), per-config CSV / JSON / PNG files and
    ``results/manifest.json`` (what ran, on which CPU, how long); return the markdown's path.

    Every config that has run is written; one that has not is refused, except outside ``names``
    (the configs the calling run loaded: a config added to the folder while it ran waits for
    its own run). Times come from ``seconds``, else from each config's ``reproduce.json``."""
    from genloop._fs import atomic_write_text

    __version__ = genloop_version()
    out, results = Path(out), Path(results)
    for c in load_configs(config_dir, only=only, quick=quick):
        if not (out / c.name).is_dir() and (names is None or c.name in names):
            raise ConfigError(f"{out / c.name} does not exist: run the reproduction first")
    # every config that has run (not only ``only``): a partial rerun never drops another's tables
    configs = [c for c in load_configs(config_dir, quick=quick) if (out / c.name).is_dir()]
    results.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if (results / MANIFEST).is_file():
        try:
            previous = json.loads((results / MANIFEST).read_text())
        except (OSError, ValueError):
            previous = {}
    kept = {c.name: t for c in configs if (t := recorded_seconds(out / c.name)) is not None}
    seconds = {**(previous.get("seconds", {}) if previous.get("quick") == quick else {}), **kept, **(seconds or {})}
    sections = [config_section(c.name, out / c.name, resolved_doc(c, out), results, c.path) for c in configs]
    total = sum(seconds.get(c.name, 0.0) for c in configs)
    head = ["# Reproduction results", "",
            "Written by `genloop reproduce`" + (" --quick (toy sizes: not results)" if quick else "")
            + f"; genloop {__version__}; CPU: {cpu_name()}; wall time of the runs {total:.0f} s "
            "(per config in manifest.json; a resumed config counts the time of its last call).", ""]
    md = results / "README.md"
    atomic_write_text(md, "\n".join(head + sections))
    manifest = {"genloop": __version__, "quick": quick, "cpu": cpu_name(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "configs": [c.name for c in configs], "seconds": {c.name: seconds[c.name] for c in configs if c.name in seconds}}
    atomic_write_text(results / MANIFEST, json.dumps(manifest, indent=1))
    return md


# ---- comparing a rerun ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """A rerun's value outside the committed interval (or differing from a value without one)."""

    config: str
    lam: float
    generation: int
    metric: str
    rerun: float
    committed: float
    low: float
    high: float

    def text(self) -> str:
        where = f"{self.config}: λ = {_lam_text(self.lam)}, generation {self.generation}, {self.metric}"
        if math.isfinite(self.low):
            return f"{where}: rerun {self.rerun:.6g} outside the committed interval [{self.low:.6g}, {self.high:.6g}]"
        return f"{where}: rerun {self.rerun:.6g} differs from the committed {self.committed:.6g} (no interval)"


def compare_results(rerun: str | Path, committed: str | Path = RESULTS_DIR) -> tuple[list[Difference], list[str]]:
    """Check every mean of a rerun's tables against the committed ones.

    Both folders are written by :func:`write_results` (``NAME/summary.csv`` per config). A
    rerun mean must lie inside the committed 95 % interval of the same (config, λ, generation,
    metric); a value with no interval (one seed) must agree to a relative :data:`EXACT_RTOL`.
    Standard-error columns (``*_se``) are not compared. Returns the differences and notes on
    what could not be compared (a config or a row present on one side only).
    """
    import pandas as pd

    rerun, committed = Path(rerun), Path(committed)
    for folder, what in ((rerun, "rerun"), (committed, "committed results")):
        if not folder.is_dir():
            raise ConfigError(f"{what} folder {folder} does not exist")
    ours = {p.parent.name: p for p in committed.glob("*/summary.csv")}
    theirs = {p.parent.name: p for p in rerun.glob("*/summary.csv")}
    if not ours:
        raise ConfigError(f"{committed} holds no NAME/summary.csv: no committed results to compare with")
    if not theirs:
        raise ConfigError(f"{rerun} holds no NAME/summary.csv: not a folder written by genloop reproduce")
    diffs: list[Difference] = []
    notes = [f"{n}: in the committed results only" for n in sorted(set(ours) - set(theirs))]
    notes += [f"{n}: in the rerun only" for n in sorted(set(theirs) - set(ours))]
    keys = ["cell", "lam", "generation", "metric"]
    for name in sorted(set(ours) & set(theirs)):
        a = pd.read_csv(ours[name], keep_default_na=False, na_values=["nan", "NaN", ""])
        b = pd.read_csv(theirs[name], keep_default_na=False, na_values=["nan", "NaN", ""])
        for frame in (a, b):
            frame["cell"] = frame["cell"].astype(str)
        merged = a.merge(b, on=keys, how="outer", suffixes=("_c", "_r"), indicator=True)
        only = merged[merged["_merge"] != "both"]
        if len(only):
            notes.append(f"{name}: {len(only)} (λ, generation, metric) rows on one side only, not compared")
        for _, r in merged[merged["_merge"] == "both"].iterrows():
            if str(r["metric"]).endswith("_se"):
                continue
            value, mean, low, high = (float(r["mean_r"]), float(r["mean_c"]), float(r["ci_low_c"]),
                                      float(r["ci_high_c"]))
            if math.isfinite(low) and math.isfinite(high):
                ok = low <= value <= high
            elif math.isnan(mean):
                ok = math.isnan(value)
            else:
                ok = math.isclose(value, mean, rel_tol=EXACT_RTOL, abs_tol=1e-12)
            if not ok:
                diffs.append(Difference(name, float(r["lam"]), int(r["generation"]), str(r["metric"]), value, mean,
                                        low, high))
    return diffs, notes
