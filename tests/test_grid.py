"""Grids over any config key: expansion, cell folders, reruns that do only the missing work."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from genloop.cli import main
from genloop.errors import ConfigError
from genloop.sweep.experiment import load_experiment, plan_experiment, run_grid
from genloop.sweep.grid import expand_grid, find_sweeps

GRID = {
    "data": {"name": "two_moons", "n": {"sweep": [60, 80]}, "noise": 0.05},
    "model": {"name": {"sweep": ["gmm", "kde"]}},
    "loop": {"generations": 2, "lambdas": [0, "inf"], "seeds": [0, 1, 2]},
    "metrics": [{"name": "w2", "max_exact": 80}],
}


def test_expansion_is_the_cartesian_product_in_key_order():
    cells = expand_grid(GRID)
    assert [c.values for c in cells] == [
        (("data.n", 60), ("model.name", "gmm")), (("data.n", 60), ("model.name", "kde")),
        (("data.n", 80), ("model.name", "gmm")), (("data.n", 80), ("model.name", "kde")),
    ]
    assert cells[1].doc["model"] == {"name": "kde"} and cells[1].doc["data"]["n"] == 60
    assert [c.label for c in cells][:2] == ["n=60,name=gmm", "n=60,name=kde"]
    assert len({c.folder for c in cells}) == 4


def test_sweeps_inside_lists_and_nested_options():
    doc = {**GRID, "model": {"name": "gmm", "n_components": 2}, "metrics": [{"name": "w2", "max_exact": {"sweep": [50, 80]}}]}
    doc["data"] = {"name": "two_moons", "n": 80}
    sweeps = find_sweeps(doc)
    assert sweeps == [(("metrics", "0", "max_exact"), [50, 80])]
    exp = plan_experiment(doc)
    assert [p.cfg.metrics[0]["max_exact"] for p in exp.cells] == [50, 80]


@pytest.mark.parametrize("doc, message", [
    ({**GRID, "loop": {**GRID["loop"], "lambdas": {"sweep": [0, 1]}}}, "already a list of runs"),
    ({**GRID, "loop": {**GRID["loop"], "seeds": {"sweep": [0, 1]}}}, "already a list of runs"),
    ({**GRID, "model": {"name": {"sweep": []}}}, "non-empty list"),
    ({**GRID, "model": {"name": {"sweep": ["gmm", "gmm"]}}}, "same value twice"),
    ({**GRID, "model": {"name": {"sweep": ["gmm", "vae"]}}}, "grid cell n=60,name=vae: .*unknown model 'vae'"),
    ({**GRID, "data": {"name": "two_moons", "n": {"sweep": [50, 50.0]}}}, "same resolved config"),
])
def test_bad_grids_are_named(doc, message):
    with pytest.raises(ConfigError, match=message):
        plan_experiment(doc)


def test_cell_identity_ignores_what_resume_may_change():
    base = plan_experiment(GRID).cells
    longer = plan_experiment({**GRID, "loop": {**GRID["loop"], "generations": 9, "lambdas": [0, 1], "seeds": [5]}}).cells
    assert [c.folder for c in base] == [c.folder for c in longer]
    other = plan_experiment({**GRID, "metrics": ["w2"]}).cells
    assert not {c.folder for c in base} & {c.folder for c in other}


def _count_fits(monkeypatch) -> dict[str, int]:
    from genloop.models.gmm import GMMModel
    from genloop.models.kde import KDEModel

    counts = {"fits": 0}
    for cls in (GMMModel, KDEModel):
        real = cls.fit

        def fit(self, *a, _real=real, **k):  # noqa: ANN001, ANN002, ANN003
            counts["fits"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(cls, "fit", fit)
    return counts


def test_interrupted_grid_rerun_does_only_the_missing_work(tmp_path, monkeypatch):
    counts = _count_fits(monkeypatch)
    exp = plan_experiment(GRID)
    seen = {"gens": 0}

    def stop_after_some(spec, record):  # noqa: ANN001
        seen["gens"] += 1
        if seen["gens"] == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(exp, tmp_path / "g", progress=stop_after_some)
    assert counts["fits"] == 20
    total = 4 * 2 * 3 * (2 + 1)  # cells × λ × seeds × generations 0..2
    run_grid(exp, tmp_path / "g", resume=True)
    assert counts["fits"] == total  # the 20 finished generations were not redone
    run_grid(exp, tmp_path / "g", resume=True)
    assert counts["fits"] == total  # complete: nothing to do
    # a changed grid: only the new cells run; the removed one is reported and kept
    bigger = plan_experiment({**GRID, "data": {"name": "two_moons", "n": {"sweep": [60, 100]}, "noise": 0.05}})
    run_grid(bigger, tmp_path / "g", resume=True)
    assert counts["fits"] == total + 2 * 2 * 3 * 3
    rows = list(csv.DictReader(io.StringIO((tmp_path / "g" / "cells.csv").read_text())))
    assert sorted(r["in_grid"] for r in rows) == ["no (kept on disk)"] * 2 + ["yes"] * 4
    assert all((tmp_path / "g" / r["cell"]).is_dir() for r in rows)


def test_grid_through_the_cli_writes_tables_and_show_summarises(tmp_path, capsys):
    import pandas as pd

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(GRID))
    assert main(["-q", "run", str(path), "--out", str(tmp_path / "g")]) == 0
    table = pd.read_parquet(tmp_path / "g" / "results.parquet")
    assert list(table.columns) == ["cell", "data.n", "model.name", "lam", "seed", "generation", "metric", "value"]
    assert len(table) == 4 * 2 * 3 * 3  # one metric
    assert set(table["model.name"]) == {"gmm", "kde"}
    # the table equals the runs' own metrics files
    exp = load_experiment(path)
    cell = exp.cells[3]
    line = json.loads((tmp_path / "g" / cell.folder / "lam=inf" / "seed=2" / "metrics.jsonl").read_text().splitlines()[2])
    row = table[(table["cell"] == cell.cell.label + "-" + cell.cell.key) & (table["lam"] == float("inf"))
                & (table["seed"] == 2) & (table["generation"] == 2)]
    assert row["value"].item() == line["w2"]
    capsys.readouterr()
    assert main(["show", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "95% t-interval" in out and "stability verdict on w2" in out and "baseline" in out
    assert main(["run", str(path), "--out", str(tmp_path / "g")]) == 2  # exists: needs --resume
    assert "--resume" in capsys.readouterr().err


def test_grid_and_plain_experiments_do_not_mix(tmp_path, capsys):
    plain = {**GRID, "data": {"name": "two_moons", "n": 60}, "model": {"name": "gmm"}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plain))
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(GRID))
    assert main(["-q", "run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "x")]) == 0
    assert main(["-q", "run", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert "without a grid" in capsys.readouterr().err
    assert not list(Path(tmp_path / "x").glob("n=*"))
