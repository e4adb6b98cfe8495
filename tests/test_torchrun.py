"""``genloop run`` under ``torchrun`` on CPUs (gloo, 2 processes): the run folder holds what a
single process writes, and a run whose rank is killed resumes from its folder."""

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

from genloop.cli import main
from genloop.store import RunStore
from genloop.sweep import find_runs

# a normalizing flow: its objective draws no noise, so a DDP step on the global batch equals
# the single-process step up to rounding, and sampling gives the same rows on any number of ranks
CONFIG = {
    "data": {"name": "two_moons", "n": 64, "noise": 0.05},
    "model": {"name": "flow", "transforms": 2, "hidden_features": [16, 16], "sample_batch_size": 16,
              "train": {"samples": 512, "batch_size": 32, "lr": 3e-3, "device": "cpu"}},
    "loop": {"generations": 2, "lambdas": [1], "seeds": [0], "n_eval": 50, "eval_samples": "reuse"},
    "metrics": ["moments", {"name": "w2", "max_exact": 100}],
}


def _write(folder: Path, doc: dict) -> str:
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _torchrun(cfg: str, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "genloop.cli", "run", cfg, "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _metrics(out: Path) -> list[dict]:
    (run,) = find_runs(out)
    return RunStore(run).read_metrics()


def _assert_same_metrics(a: list[dict], b: list[dict]) -> None:
    assert [r["generation"] for r in a] == [r["generation"] for r in b]
    for ra, rb in zip(a, b):
        keys = [k for k in ra if isinstance(ra[k], float)]
        assert keys and set(keys) <= set(rb)
        np.testing.assert_allclose([rb[k] for k in keys], [ra[k] for k in keys], rtol=2e-3, atol=2e-4,
                                   err_msg=f"generation {ra['generation']}")


@pytest.mark.slow
def test_torchrun_run_folder_equals_the_single_process_one(tmp_path) -> None:
    cfg = _write(tmp_path, CONFIG)
    assert main(["run", cfg, "--out", str(tmp_path / "single"), "--quiet"]) == 0
    proc = _torchrun(cfg, tmp_path / "ddp")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    single, ddp = _metrics(tmp_path / "single"), _metrics(tmp_path / "ddp")
    assert len(ddp) == 3
    _assert_same_metrics(single, ddp)
    # only rank 0 wrote: one lock holder, one metrics line per generation, the same files
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(tmp_path / "ddp") == files(tmp_path / "single")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


@pytest.mark.slow
def test_torchrun_run_with_a_killed_rank_resumes(tmp_path) -> None:
    doc = json.loads(json.dumps(CONFIG))
    doc["loop"]["generations"] = 4
    cfg = _write(tmp_path, doc)
    out = tmp_path / "ddp"
    proc = _torchrun(cfg, out)
    status = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # wait until generation 0 is stored
        runs = find_runs(out) if out.exists() else []
        if runs and (runs[0] / "status.json").exists():
            status = json.loads((runs[0] / "status.json").read_text())
            if status.get("last_generation", -1) >= 0:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before a rank could be killed"
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)  # one rank dies; torchrun stops the other
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    stored = RunStore(find_runs(out)[0]).read_metrics()
    assert 1 <= len(stored) < 5  # killed mid-run, finished generations kept

    again = _torchrun(cfg, out, "--resume")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert main(["run", cfg, "--out", str(tmp_path / "single"), "--quiet"]) == 0
    _assert_same_metrics(_metrics(tmp_path / "single"), _metrics(out))
