"""The Ray executor against the local one, a Ray worker killed mid-run, and MLflow tracking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from genloop.cli import main

GRID = {
    "data": {"name": "two_moons", "n": 80, "noise": 0.05},
    "model": {"name": {"sweep": ["gmm", "kde"]}},
    "loop": {"generations": 2, "lambdas": [0.5, "inf"], "seeds": [0, 1, 2]},
    "metrics": [{"name": "w2", "max_exact": 80}, "moments"],
}


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not _has_ray(), reason="ray is not installed (pip install 'genloop[ray]')")


def _write(folder: Path, doc: dict) -> str:
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("local")
    assert main(["-q", "run", _write(folder, GRID), "--out", str(folder / "g"), "--jobs", "2"]) == 0
    return folder / "g"


@pytest.mark.slow
@needs_ray
def test_ray_and_local_give_identical_tables(local_grid, tmp_path):
    assert main(["-q", "run", _write(tmp_path, GRID), "--out", str(tmp_path / "g"), "--executor", "ray"]) == 0
    assert (tmp_path / "g" / "results.csv").read_text() == (local_grid / "results.csv").read_text()


def _ray_workers() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::_execute"):  # a worker running one of genloop's run tasks
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@needs_ray
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find Ray's worker processes")
def test_ray_worker_killed_mid_run_still_completes_the_experiment(local_grid, tmp_path):
    doc = {**GRID, "loop": {**GRID["loop"], "generations": 30}, "data": {**GRID["data"], "n": 400}}
    cfg = _write(tmp_path, doc)
    out = tmp_path / "g"
    proc = subprocess.Popen([sys.executable, "-m", "genloop.cli", "-q", "run", cfg, "--out", str(out), "--executor", "ray"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not any(
            len(p.read_text().splitlines()) >= 3 for p in out.glob("*/lam=*/seed=*/metrics.jsonl")):
        time.sleep(0.1)
    workers = [w for w in _ray_workers() if w != proc.pid]
    assert workers, "no Ray worker process found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    for metrics in out.glob("*/lam=*/seed=*/metrics.jsonl"):
        generations = [json.loads(line)["generation"] for line in metrics.read_text().splitlines()]
        assert generations == list(range(31)), metrics  # none missing, none twice
    assert main(["check", str(out)]) == 0
    assert main(["-q", "run", cfg, "--out", str(out), "--jobs", "1", "--set", "loop.generations=30"]) == 2  # exists
    reference = tmp_path / "ref"
    assert main(["-q", "run", cfg, "--out", str(reference), "--jobs", "2"]) == 0
    assert (out / "results.csv").read_text() == (reference / "results.csv").read_text()


@pytest.mark.slow
def test_mlflow_tracking_logs_and_resumes_the_same_run(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    doc = {"data": {"name": "two_moons", "n": 80}, "model": {"name": "gmm", "n_components": 2},
           "loop": {"generations": 2, "lambdas": [1], "seeds": [0]}, "metrics": [{"name": "w2", "max_exact": 80}]}
    cfg = _write(tmp_path, doc)
    out = tmp_path / "exp"
    assert main(["-q", "run", cfg, "--out", str(out), "--track", "mlflow"]) == 0
    run_folder = out / "lam=1" / "seed=0"
    state = json.loads((run_folder / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    run = client.get_run(state["run_id"])
    assert run.data.params["model.name"] == "gmm" and run.data.params["lam"] == "1.0"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(state["run_id"], "w2")
    lines = [json.loads(ln) for ln in (run_folder / "metrics.jsonl").read_text().splitlines()]
    assert [(m.step, m.value) for m in history] == [(ln["generation"], ln["w2"]) for ln in lines]
    assert "checkpoint" in [a.path for a in client.list_artifacts(state["run_id"])]
    # extending the run continues the same MLflow run, logging only the new generations
    assert main(["-q", "run", cfg, "--out", str(out), "--track", "mlflow", "--resume", "--set", "loop.generations=4"]) == 0
    assert json.loads((run_folder / "tracking.json").read_text())["run_id"] == state["run_id"]
    steps = [m.step for m in client.get_metric_history(state["run_id"], "w2")]
    assert steps == [0, 1, 2, 3, 4]
    experiments = [e.name for e in client.search_experiments()]
    assert "exp" in experiments


@pytest.mark.slow
@needs_ray
def test_ray_run_asking_for_missing_gpus_is_refused_before_writing(tmp_path, capsys):
    """A run asking for more GPUs than the cluster has would wait for ever: refused (exit 2,
    one line) after joining Ray and before the experiment folder exists."""
    doc = {**GRID, "model": {"name": "gmm"}, "data": {"name": "two_moons", "n": 60}, "resources": {"num_gpus": 64}}
    code = main(["run", _write(tmp_path, doc), "--out", str(tmp_path / "g"), "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "would never start" in err and "Traceback" not in err, err
    assert not (tmp_path / "g").exists()
