"""A folder that holds nothing but a failed start is not an experiment.

A run can still fail after the preflight (an error inside generation 0's fit, a killed
process): the experiment folder then holds configs and run folders without a single completed
generation. A corrected rerun, with or without ``--resume``, must proceed in that folder and
leave nothing of the failed start behind; work worth keeping (a completed generation, a
checkpoint inside a generation's training) still needs ``--resume``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from genloop.cli import main
from genloop.errors import DataError
from genloop.models.gmm import GMMModel

GOOD = {
    "data": {"name": "two_moons", "n": 80, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 2, "max_iter": 20},
    "loop": {"generations": 1, "lambdas": [0.5, 1], "seeds": [0]},
    "metrics": ["w2"],
}


def write(folder: Path, doc: dict, name: str = "cfg.yaml") -> str:
    path = folder / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def fail_in_generation_0(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fit(self, X, *, rng, init=None):
        raise DataError("the fit failed (simulated)")

    monkeypatch.setattr(GMMModel, "fit", broken_fit)


def failed_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc: dict, out: Path, capsys) -> list[Path]:
    """Run ``doc`` into ``out`` with a fit that fails in generation 0; check what it left."""
    with monkeypatch.context() as m:
        fail_in_generation_0(m)
        assert main(["-q", "run", write(tmp_path, doc, "first.yaml"), "--out", str(out)]) == 2
    assert "simulated" in capsys.readouterr().err
    assert (out / "config.yaml").exists()  # the failed start wrote its folder
    runs = [p for p in out.rglob("seed=*") if p.is_dir()]
    assert runs and all(json.loads((run / "status.json").read_text())["last_generation"] == -1
                        for run in runs if (run / "status.json").exists())
    return runs


def completed_runs(out: Path) -> dict[str, int]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())["last_generation"] for p in out.rglob("status.json")}


@pytest.mark.parametrize("resume", [False, True])
def test_corrected_rerun_proceeds_in_a_failed_start(tmp_path, monkeypatch, capsys, resume):
    out = tmp_path / "out"
    left = failed_start(tmp_path, monkeypatch, {**GOOD, "loop": {**GOOD["loop"], "lambdas": [2, 0.5, 1]}}, out, capsys)
    assert [p.relative_to(out).as_posix() for p in left] == ["lam=2/seed=0"]
    corrected = {**GOOD, "model": {**GOOD["model"], "n_components": 3}}
    argv = ["-q", "run", write(tmp_path, corrected), "--out", str(out)] + (["--resume"] if resume else [])
    assert main(argv) == 0, capsys.readouterr().err
    # exactly the corrected config's runs, completed; the failed start's λ = 2 run is gone
    assert completed_runs(out) == {"lam=0.5/seed=0": 1, "lam=1/seed=0": 1}
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["n_components"] == 3
    for run in ("lam=0.5/seed=0", "lam=1/seed=0"):
        assert yaml.safe_load((out / run / "config.yaml").read_text())["model"]["n_components"] == 3


def test_same_config_reruns_a_failed_start_without_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    failed_start(tmp_path, monkeypatch, GOOD, out, capsys)
    assert main(["-q", "run", write(tmp_path, GOOD), "--out", str(out)]) == 0, capsys.readouterr().err
    assert completed_runs(out) == {"lam=0.5/seed=0": 1, "lam=1/seed=0": 1}


def test_work_inside_generation_0_still_needs_resume(tmp_path, monkeypatch, capsys):
    """A checkpoint inside generation 0's training is work: the folder is an experiment."""
    out = tmp_path / "out"
    failed_start(tmp_path, monkeypatch, GOOD, out, capsys)
    training = out / "lam=0.5" / "seed=0" / "training" / "gen_0000"
    training.mkdir(parents=True)
    (training / "state.safetensors").write_bytes(b"x")
    assert main(["-q", "run", write(tmp_path, GOOD), "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert training.exists()


def test_completed_generation_makes_an_experiment(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["-q", "run", write(tmp_path, GOOD), "--out", str(out)]) == 0
    changed = {**GOOD, "model": {**GOOD["model"], "n_components": 3}}
    assert main(["-q", "run", write(tmp_path, changed), "--out", str(out), "--resume"]) == 2
    assert "config differs" in capsys.readouterr().err
    assert completed_runs(out) == {"lam=0.5/seed=0": 1, "lam=1/seed=0": 1}


def test_failed_grid_start_is_replaced_by_the_corrected_grid(tmp_path, monkeypatch, capsys):
    out = tmp_path / "grid"
    grid = {**GOOD, "model": {**GOOD["model"], "n_components": {"sweep": [4, 2]}}}
    left = failed_start(tmp_path, monkeypatch, grid, out, capsys)
    assert [p.relative_to(out).parts[0].split("-")[0] for p in left] == ["n_components=4"]
    corrected = {**GOOD, "model": {**GOOD["model"], "n_components": {"sweep": [2, 3]}}}
    assert main(["-q", "run", write(tmp_path, corrected), "--out", str(out)]) == 0, capsys.readouterr().err
    runs = completed_runs(out)
    assert len(runs) == 4 and set(runs.values()) == {1}
    cells = (out / "cells.csv").read_text()
    assert "no (kept on disk)" not in cells  # the failed cell (4 components) left nothing behind
    assert sorted(p.name.split("-")[0] for p in out.iterdir() if p.is_dir()) == ["n_components=2", "n_components=3"]


def test_failed_grid_start_leaves_a_listed_folder_with_foreign_files(tmp_path, monkeypatch, capsys):
    """A cell folder that cells.csv names but that holds something genloop did not write (a
    user's notes) is not removed with the failed start."""
    out = tmp_path / "grid"
    grid = {**GOOD, "model": {**GOOD["model"], "n_components": {"sweep": [4, 2]}}}
    left = failed_start(tmp_path, monkeypatch, grid, out, capsys)
    cell = out / left[0].relative_to(out).parts[0]
    (cell / "notes.txt").write_text("mine")
    corrected = {**GOOD, "model": {**GOOD["model"], "n_components": {"sweep": [2, 3]}}}
    assert main(["-q", "run", write(tmp_path, corrected), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (cell / "notes.txt").read_text() == "mine"
