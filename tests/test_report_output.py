"""Output that never misleads: strict JSON, one curve per grid cell and λ, captions that say what
is drawn, standard errors as error bars, the gap column only against a λ = 0 that ran, and a
report that loads torch only for a section that needs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genloop import _json as strict_json
from genloop.config import parse_config
from genloop.sweep import run_experiment
from genloop.sweep.experiment import plan_experiment, run_grid


def _strict_load(text: str):  # type: ignore[no-untyped-def]
    """A reader as strict as a browser's: NaN / Infinity are not JSON."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


# ---- strict JSON -----------------------------------------------------------------------------------


def test_strict_json_round_trip_flags_every_non_finite_value() -> None:
    doc = {"fid": 3.5, "fid_se": math.nan, "gap": -math.inf, "curve": [1.0, math.inf, 2.0],
           "nested": {"a.b": math.nan, "ok": 1}, "rows": [{"x": -math.inf}], "n": 3, "name": "x"}
    text = strict_json.dumps(doc, indent=1)
    loaded = _strict_load(text)
    assert loaded["fid_se"] is None and loaded["curve"][1] is None and loaded["rows"][0]["x"] is None
    assert loaded["nonfinite"] == {"fid_se": "nan", "gap": "-inf", "curve.1": "inf"}
    assert loaded["nested"]["nonfinite"] == {"a.b": "nan"} and loaded["rows"][0]["nonfinite"] == {"x": "-inf"}
    back = strict_json.loads(text)
    assert math.isnan(back["fid_se"]) and back["gap"] == -math.inf and back["curve"] == [1.0, math.inf, 2.0]
    assert math.isnan(back["nested"]["a.b"]) and back["rows"][0]["x"] == -math.inf
    assert back["fid"] == 3.5 and back["n"] == 3 and "nonfinite" not in back
    # numpy values through a default hook; a finite document is unchanged by the round trip
    assert strict_json.loads(strict_json.dumps({"v": np.float64("inf")}, default=float)) == {"v": math.inf}
    assert strict_json.loads(strict_json.dumps({"a": [1, 2], "b": "c"})) == {"a": [1, 2], "b": "c"}
    with pytest.raises(ValueError, match="outside a dict"):
        strict_json.dumps([1.0, math.nan])


def _grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lambdas: list, name: str = "grid") -> Path:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not what is tested here
    doc = {
        "name": "two-cells",
        "data": {"name": "two_moons", "n": 80, "noise": 0.05},
        "model": {"name": {"sweep": ["gmm", "kde"]}},
        "loop": {"generations": 2, "lambdas": lambdas, "seeds": [0, 1]},
        "metrics": ["w2", "mmd"],
        "output": {"keep_samples": 50},
    }
    out = tmp_path / name
    run_grid(plan_experiment(doc), out)
    return out


@pytest.mark.slow
def test_every_json_file_of_an_experiment_is_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genloop.metrics import METRICS, register_metric
    from genloop.metrics.base import Metric
    from genloop.store import RunStore

    if "nonfinite_probe" not in METRICS:

        @register_metric("nonfinite_probe")
        class _Probe(Metric):  # a metric whose values are not finite, as a rank-deficient FID's s.e.
            def __call__(self, generated, real, *, model=None, rng=None):  # type: ignore[no-untyped-def]
                return {"probe": math.inf, "probe_se": math.nan, "probe_low": -math.inf, "probe_ok": 1.5}

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    doc = {"data": {"name": "gaussian", "n": 60, "mean": [0.0]}, "model": {"name": "gaussian"},
           "loop": {"generations": 1, "lambdas": [0, "inf"], "seeds": [0, 1]}, "metrics": ["nonfinite_probe"]}
    out = tmp_path / "exp"
    run_experiment(parse_config(doc), out)
    files = [p for p in out.rglob("*") if p.suffix in (".json", ".jsonl") and p.name != "verdicts.json"]
    assert any(p.name == "metrics.jsonl" for p in files) and any(p.name == "model.json" for p in files)
    for p in files:
        for line in p.read_text().splitlines() if p.suffix == ".jsonl" else [p.read_text()]:
            if line.strip():
                _strict_load(line)
    run = out / "lam=inf" / "seed=0"
    raw = _strict_load((run / "metrics.jsonl").read_text().splitlines()[0])
    assert raw["probe"] is None and raw["nonfinite"] == {"probe": "inf", "probe_se": "nan", "probe_low": "-inf"}
    row = RunStore(run).read_metrics()[0]
    assert row["probe"] == math.inf and row["probe_low"] == -math.inf and math.isnan(row["probe_se"])
    assert row["probe_ok"] == 1.5 and "nonfinite" not in row
    check = RunStore(run).verify()  # the checksummed manifest covers the strict line
    assert check.problems == [] and check.intact_generation == 1


# ---- the grid report: one curve per cell and λ -------------------------------------------------------


@pytest.mark.slow
def test_grid_report_draws_each_cell_separately(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from genloop.report.html import build_report
    from genloop.report.plots import metric_figure, plotted_metrics
    from genloop.store import RunStore

    folder = _grid(tmp_path, monkeypatch, [0, "inf"])
    cells = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("name="))
    assert len(cells) == 2
    fig = metric_figure(folder, "w2")
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 2  # one panel per cell
    curves = {(ax.get_title(), line.get_label()): line.get_ydata() for ax in panels for line in ax.get_lines()}
    assert len(curves) == 2 * 2  # cells × λ, never one curve per λ over both cells
    for cell in cells:
        for lam, label in (("0", "λ = 0"), ("inf", "λ = ∞ (fully synthetic)")):
            runs = [RunStore(folder / cell / f"lam={lam}" / f"seed={s}").read_metrics() for s in (0, 1)]
            expected = np.mean([[row["w2"] for row in rows] for rows in runs], axis=0)  # this cell's seeds only
            np.testing.assert_allclose(curves[(cell, label)], expected, rtol=1e-12)
    # mmd's standard error is drawn as error bars of mmd (one bar set per curve), not as a curve
    mmd = metric_figure(folder, "mmd")
    labelled = [line for ax in mmd.axes for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len(labelled) == 4 and not any("se" in line.get_label() for line in labelled)
    assert sum(len(ax.containers) for ax in mmd.axes) == 4  # an errorbar container per cell and λ
    plt.close("all")
    assert plotted_metrics(["w2", "mmd", "mmd_se", "mmd_bandwidth", "kid_std", "kid_subset_size"]) == ["w2", "mmd"]

    text = build_report(folder, n_boot=5).read_text()
    captions = [c for c in text.split("<figcaption>")[1:]]
    assert not any(c.startswith(("mmd_se", "mmd_bandwidth")) for c in captions)  # not plotted as metrics
    samples = [c for c in captions if c.startswith("rows:")]
    assert samples and "grey" not in samples[0]  # a grid draws no real data behind the samples, so says none
    assert "grid cell and λ" in samples[0]


# ---- the gap column ------------------------------------------------------------------------------


def test_gap_to_lambda_zero_only_when_lambda_zero_ran() -> None:
    import pandas as pd

    from genloop.results import gap_header, verdicts

    def table(lambdas: list[float]) -> pd.DataFrame:
        rng = np.random.default_rng(0)
        return pd.DataFrame([{"cell": "", "lam": lam, "seed": s, "generation": g, "metric": "w2",
                              "value": 1 + 0.05 * g * (lam > 0) + 0.01 * rng.standard_normal()}
                             for lam in lambdas for s in range(4) for g in range(6)])

    with_zero, without = verdicts(table([0.0, math.inf])), verdicts(table([0.5, math.inf]))
    assert {v.reference for v in with_zero} == {"λ = 0"} and gap_header(with_zero) == "gap to λ=0 (w2)"
    assert {v.reference for v in without} == {"generation 0"}
    assert gap_header(without) == "change since generation 0 (w2)"
    # without λ = 0 the gap is the change of the same run since generation 0
    t = table([0.5, math.inf])
    last = t[(t["lam"] == 0.5) & (t["generation"] == 5)].set_index("seed")["value"]
    first = t[(t["lam"] == 0.5) & (t["generation"] == 0)].set_index("seed")["value"]
    assert without[0].gap == pytest.approx(float((last - first).mean()))


@pytest.mark.slow
def test_show_says_gap_to_lambda_zero_only_when_it_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genloop.results import summary_text

    assert "gap to λ=0" in summary_text(_grid(tmp_path, monkeypatch, [0, "inf"], "with"))
    text = summary_text(_grid(tmp_path, monkeypatch, [0.5, "inf"], "without"))
    assert "gap to λ=0" not in text and "change since generation 0" in text


# ---- torch only when a section needs it --------------------------------------------------------------


@pytest.mark.slow
def test_grid_report_does_not_import_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _grid(tmp_path, monkeypatch, [0, "inf"])
    code = ("import sys; from genloop.report.html import build_report; "
            f"build_report({str(folder)!r}, n_boot=5); assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
