"""``genloop reproduce``: every reproduction config runs (toy size, one generation), its tables
hold what the runs recorded, and ``--compare`` flags a value outside the committed interval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genloop.cli import main
from genloop.errors import ConfigError
from genloop.report.reproduce import (
    CONFIG_DIR,
    compare_results,
    load_configs,
    quick_doc,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / CONFIG_DIR


def test_configs_run_after_the_generation_0_they_start_from() -> None:
    configs = load_configs(CONFIGS)
    names = [c.name for c in configs]
    assert {"gaussian_collapse", "theorem1_gmm", "digits_edm", "digits_gen0"} <= set(names)
    for c in configs:
        for dep in c.needs:
            assert names.index(dep) < names.index(c.name), (dep, c.name)
    only = [c.name for c in load_configs(CONFIGS, only="digits_edm")]
    assert only == ["digits_gen0", "digits_edm"]


def test_every_config_states_what_it_changes_and_uses_the_paper_grid() -> None:
    paper = [0, 0.001, 0.1, 0.5, 1, math.inf]
    for c in load_configs(CONFIGS):
        text = c.path.read_text()
        assert text.startswith("#"), f"{c.path} must open with a comment on what it reproduces"
        if c.doc["loop"]["generations"] == 0:  # a generation-0 checkpoint, not an experiment
            continue
        assert "Changes from the paper" in text, c.path
        lams = [math.inf if str(v) == "inf" else float(v) for v in c.doc["loop"]["lambdas"]]
        assert lams == paper, c.path


def test_quick_doc_only_shrinks() -> None:
    doc = {"data": {"n": 2000}, "model": {"train": {"samples": 100, "finetune_samples": 10_000}},
           "loop": {"generations": 20, "lambdas": [0, 0.5, 1, "inf"], "seeds": [3, 4, 5]}}
    q = quick_doc(doc)
    assert q["data"]["n"] == 300 and q["model"]["train"] == {"samples": 100, "finetune_samples": 256}
    assert q["loop"] == {"generations": 1, "lambdas": [0, "inf"], "seeds": [3], "n_eval": 128}
    assert doc["loop"]["generations"] == 20  # the original is untouched


def _summary(path: Path, rows: list[tuple[float, int, str, float, float, float]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"cell": "", "lam": lam, "generation": g, "metric": m, "seeds": 3, "mean": mean, "se": 0.1,
                   "ci_low": lo, "ci_high": hi} for lam, g, m, mean, lo, hi in rows]).to_csv(path / "summary.csv",
                                                                                              index=False)


def test_compare_flags_values_outside_the_committed_interval(tmp_path: Path, capsys) -> None:
    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    _summary(committed / "a", [(0.0, 1, "fid", 10.0, 9.0, 11.0), (math.inf, 1, "fid", 20.0, 18.0, 22.0),
                               (math.inf, 1, "fid_se", 1.0, math.nan, math.nan)])
    _summary(rerun / "a", [(0.0, 1, "fid", 10.9, 10.0, 11.8), (math.inf, 1, "fid", 22.5, 21.0, 24.0),
                           (math.inf, 1, "fid_se", 5.0, math.nan, math.nan)])
    diffs, notes = compare_results(rerun, committed)
    assert [(d.lam, d.metric, d.rerun) for d in diffs] == [(math.inf, "fid", 22.5)]  # 10.9 lies inside [9, 11]
    assert notes == []
    assert main(["reproduce", "--compare", str(rerun), "--results", str(committed)]) == 1
    assert "outside the committed interval [18, 22]" in capsys.readouterr().out
    _summary(rerun / "a", [(0.0, 1, "fid", 9.0, 8.0, 10.0), (math.inf, 1, "fid", 18.0, 17.0, 19.0)])
    assert main(["reproduce", "--compare", str(rerun), "--results", str(committed)]) == 0
    # a value without an interval (one seed) must agree exactly
    _summary(committed / "b", [(0.5, 2, "w2", 0.25, math.nan, math.nan)])
    _summary(rerun / "b", [(0.5, 2, "w2", 0.2501, math.nan, math.nan)])
    assert [d.config for d in compare_results(rerun, committed)[0]] == ["b"]


@pytest.mark.slow
def test_every_config_runs_one_generation_at_toy_size(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the configs name examples/reproduce/ relative to the repository
    out = tmp_path / "out"
    assert main(["reproduce", "--quick", "--out", str(out), "--jobs", "1", "-q"]) == 0, capsys.readouterr().err
    results = out / "results"
    text = (results / "README.md").read_text()
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["quick"] is True
    for c in load_configs(CONFIGS, quick=True):
        assert f"## {c.name}" in text
        summary = pd.read_csv(results / c.name / "summary.csv")
        assert summary["generation"].max() == c.doc["loop"]["generations"]
        lams = {math.inf if str(v) == "inf" else float(v) for v in c.doc["loop"]["lambdas"]}
        assert set(summary["lam"]) == lams
        # the table's means are those the runs recorded (one seed: the value itself)
        metrics = [json.loads(line) for line in (out / c.name / f"lam={c.doc['loop']['lambdas'][0]}" / "seed=0"
                                                 / "metrics.jsonl").read_text().splitlines()]
        key = next(k for k in metrics[-1] if k not in ("generation", "n_real", "n_synthetic"))
        row = summary[(summary["metric"] == key) & (summary["generation"] == metrics[-1]["generation"])
                      & (summary["lam"] == min(lams))]
        np.testing.assert_allclose(row["mean"].to_numpy(), [metrics[-1][key]])
    theory = json.loads((results / "theorem1_gmm" / "theory.json").read_text())
    assert [r["lam"] for r in theory["rows"]] == [0.0, "inf"] and theory["rows"][1]["verdict"].startswith("drifts")
    assert json.loads((results / "digits_edm" / "theory.json").read_text())["note"].startswith("no prediction")
    from genloop.theory.gaussian import expected_sigma_ratio

    note = json.loads((results / "gaussian_collapse" / "theory.json").read_text())["note"]
    assert f"E[σ_T]/σ_0 = {expected_sigma_ratio(20, 1, 'unbiased'):.4g} at T = 1" in note
    # a rerun compared with itself agrees
    assert compare_results(results, results)[0] == []
    # --tables-only rewrites the tables from the runs, runs nothing and keeps the times they took
    (results / "README.md").unlink()
    assert main(["reproduce", "--quick", "--out", str(out), "--tables-only", "-q"]) == 0
    assert (results / "README.md").read_text() == text
    assert json.loads((results / "manifest.json").read_text())["seconds"] == manifest["seconds"]
    assert main(["reproduce", "--quick", "--out", str(tmp_path / "none"), "--tables-only", "-q"]) == 2


def _toy_configs(folder: Path) -> Path:
    import yaml

    folder.mkdir()
    for name, n in (("a", 60), ("b", 80)):
        doc = {"data": {"name": "two_moons", "n": n, "noise": 0.05},
               "model": {"name": "gaussian"},
               "loop": {"generations": 3, "lambdas": [0, "inf"], "seeds": [0, 1, 2]},
               "metrics": ["moments"]}
        (folder / f"{name}.yaml").write_text("# a toy\n" + yaml.safe_dump(doc))
    return folder


@pytest.mark.slow
def test_tables_hold_the_runs_and_a_partial_rerun_keeps_the_others(tmp_path: Path, capsys) -> None:
    from genloop.results import summarize, tidy

    configs = _toy_configs(tmp_path / "cfg")
    out, results = tmp_path / "out", tmp_path / "results"
    argv = ["reproduce", "--configs", str(configs), "--out", str(out), "--results", str(results), "--jobs", "1", "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    text = (results / "README.md").read_text()
    assert "## a" in text and "## b" in text
    # a cell of the markdown table is the mean and t-interval over the three seeds of the runs
    expected = summarize(tidy(out / "a"))
    row = expected[(expected["lam"] == math.inf) & (expected["generation"] == 3) & (expected["metric"] == "cov_drift")]
    mean, low, high = (float(row[c].iloc[0]) for c in ("mean", "ci_low", "ci_high"))
    assert f"{mean:.4g} [{low:.4g}, {high:.4g}]" in text
    committed = pd.read_csv(results / "a" / "summary.csv")
    np.testing.assert_allclose(committed["mean"], expected["mean"])
    # the Gaussian's theory: rate m/(n + m) = 0 at λ = 0 and 1 at λ = ∞
    theory = json.loads((results / "a" / "theory.json").read_text())
    assert theory["note"] == ""  # the 1-D collapse law is not quoted for 2-D data
    rows = theory["rows"]
    assert [(r["lam"], r["rate"]) for r in rows] == [(0.0, 0.0), ("inf", 1.0)]
    # --only rewrites its own tables and keeps the other config's
    assert main([*argv, "--only", "b"]) == 0
    assert "## a" in (results / "README.md").read_text()
    assert set(json.loads((results / "manifest.json").read_text())["seconds"]) == {"a", "b"}
    # the rerun agrees with itself; a value moved outside its interval is reported, exit 1
    assert main(["reproduce", "--compare", str(results), "--results", str(results)]) == 0
    moved = tmp_path / "moved"
    (moved / "a").mkdir(parents=True)
    committed.loc[committed["ci_high"].notna().idxmax(), "mean"] += 1e3
    committed.to_csv(moved / "a" / "summary.csv", index=False)
    capsys.readouterr()
    assert main(["reproduce", "--compare", str(moved), "--results", str(results)]) == 1
    out_text = capsys.readouterr().out
    assert "1 value(s) outside" in out_text and "b: in the committed results only" in out_text
    # each config keeps the time of the call that ran it with its runs: the manifest can be rebuilt
    kept = {name: json.loads((out / name / "reproduce.json").read_text())["seconds"] for name in ("a", "b")}
    assert json.loads((results / "manifest.json").read_text())["seconds"] == kept
    (results / "manifest.json").unlink()
    assert main(["reproduce", "--configs", str(configs), "--out", str(out), "--results", str(results),
                 "--tables-only", "-q"]) == 0
    assert json.loads((results / "manifest.json").read_text())["seconds"] == kept


def test_a_config_added_while_the_reproduction_runs_waits_for_its_own_run(tmp_path: Path) -> None:
    from genloop.report.reproduce import write_results

    configs = _toy_configs(tmp_path / "cfg")
    out, results = tmp_path / "out", tmp_path / "results"
    assert main(["reproduce", "--configs", str(configs), "--out", str(out), "--results", str(results),
                 "--only", "a", "--jobs", "1", "-q"]) == 0
    # "b" was not among the configs this call loaded: its tables wait, the others' are written
    write_results(out, results, config_dir=configs, names=["a"])
    assert "## a" in (results / "README.md").read_text() and "## b" not in (results / "README.md").read_text()
    with pytest.raises(ConfigError, match="run the reproduction first"):
        write_results(out, results, config_dir=configs)
