"""Run folders: resume gives identical metrics, SIGKILL loses no finished work, locking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from genloop.config import parse_config
from genloop.errors import RunLockedError
from genloop.store import RunStore
from genloop.sweep import run_experiment


def config(scheme="replace", generations=4, model=None, lambdas=(0.5, "inf"), seeds=(0,)):
    return {
        "data": {"name": "gaussian", "n": 200, "mean": [1.0, -1.0]},
        "model": model or {"name": "gmm", "n_components": 2, "max_iter": 20},
        "loop": {"generations": generations, "lambdas": list(lambdas), "scheme": scheme, "seeds": list(seeds)},
        "metrics": ["moments", "nll", {"name": "w2", "max_exact": 200}],
    }


def metrics_text(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.glob("lam=*/seed=*/metrics.jsonl"))}


@pytest.mark.parametrize("scheme", ["replace", "accumulate", "accumulate-subsample"])
def test_resume_extends_to_identical_metrics(tmp_path, scheme):
    full, part = tmp_path / "full", tmp_path / "part"
    run_experiment(parse_config(config(scheme, generations=5)), full)
    run_experiment(parse_config(config(scheme, generations=2)), part)
    first = metrics_text(part)
    run_experiment(parse_config(config(scheme, generations=5)), part, resume=True)
    assert metrics_text(part) == metrics_text(full)
    for name, text in first.items():  # finished generations were not recomputed or rewritten
        assert metrics_text(part)[name].startswith(text)
    status = json.loads((part / "lam=0.5" / "seed=0" / "status.json").read_text())
    assert status == {**status, "state": "completed", "last_generation": 5}


def test_resume_after_partial_write_drops_unfinished_generation(tmp_path):
    """A kill after metrics.jsonl was appended but before status.json: the line is redone."""
    full, part = tmp_path / "full", tmp_path / "part"
    run_experiment(parse_config(config(generations=3, lambdas=[1])), full)
    run_experiment(parse_config(config(generations=3, lambdas=[1])), part)
    run = part / "lam=1" / "seed=0"
    store = RunStore(run)
    store.write_status("running", 1)  # pretend generations 2..3 never completed
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"generation": 2, "garbage": 1}\n')
    run_experiment(parse_config(config(generations=3, lambdas=[1])), part, resume=True)
    assert metrics_text(part) == metrics_text(full)


def test_existing_experiment_needs_resume_and_same_config(tmp_path):
    from genloop.errors import ConfigError

    run_experiment(parse_config(config(generations=1)), tmp_path / "x")
    with pytest.raises(ConfigError, match="--resume"):
        run_experiment(parse_config(config(generations=1)), tmp_path / "x")
    other = config(generations=1)
    other["model"]["n_components"] = 3
    with pytest.raises(ConfigError, match="differs"):
        run_experiment(parse_config(other), tmp_path / "x", resume=True)


def test_checkpoints_reload_the_fitted_model(tmp_path):
    from genloop.loop import run_loop
    from genloop.models import make_model

    run_experiment(parse_config(config(generations=2, lambdas=[1])), tmp_path)
    store = RunStore(tmp_path / "lam=1" / "seed=0")
    model = store.load_model(2)
    X = np.random.default_rng(0).standard_normal((10, 2))
    assert model.log_prob(X).shape == (10,)
    assert sorted(p.name for p in (store.path / "checkpoints").iterdir()) == ["gen_0000", "gen_0001", "gen_0002"]
    saved = yaml.safe_load((store.path / "config.yaml").read_text())
    assert saved["loop"]["lambdas"] == [1] and saved["loop"]["seeds"] == [0]
    del run_loop, make_model


def test_lock_refuses_second_writer(tmp_path):
    with RunStore(tmp_path / "run"):
        with pytest.raises(RunLockedError, match="another process"):
            RunStore(tmp_path / "run").acquire()
    with RunStore(tmp_path / "run"):  # released: can be taken again
        pass


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genloop.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_metrics_file(tmp_path):
    cfg = config(generations=25, lambdas=[1], model={"name": "gmm", "n_components": 4, "max_iter": 100, "tol": 1e-6})
    cfg["data"]["n"] = 1000
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ref = _cli("run", str(path), "--out", str(tmp_path / "ref"))
    assert ref.wait(timeout=600) == 0, ref.stderr.read()

    proc = _cli("run", str(path), "--out", str(tmp_path / "killed"))
    metrics = tmp_path / "killed" / "lam=1" / "seed=0" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status = json.loads((metrics.parent / "status.json").read_text())
    assert status["state"] == "running" and 1 <= status["last_generation"] < 25, status  # killed mid-run

    resumed = _cli("run", str(path), "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert metrics.read_text() == (tmp_path / "ref" / "lam=1" / "seed=0" / "metrics.jsonl").read_text()
