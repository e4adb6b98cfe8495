"""kill -9 at many moments, then --resume: every run equals the uninterrupted one byte for byte.

Two ways of choosing the moment: (1) a write-level fault injector (a wrapper that SIGKILLs the
process right before its N-th ``os.replace`` or line append, i.e. in the middle of writing a
checkpoint, a samples file, the manifest, a metrics line or the status), and (2) random
wall-clock delays, also with ``--jobs 2`` (the whole process group is killed). A classical
family (gmm) and a neural one (flow, with checkpoints inside each generation's training, so
kills also land inside training) are covered.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from genloop.cli import main

pytestmark = pytest.mark.slow

CONFIGS = {
    "gmm": {
        "data": {"name": "two_moons", "n": 300, "noise": 0.05},
        "model": {"name": "gmm", "n_components": 4, "max_iter": 100, "tol": 1e-6},
        "loop": {"generations": 6, "lambdas": [1, "inf"], "seeds": [0], "scheme": "accumulate"},
        "metrics": ["moments", {"name": "w2", "max_exact": 300}],
    },
    "flow": {
        "data": {"name": "two_moons", "n": 256, "noise": 0.05},
        "model": {"name": "flow", "transforms": 2, "hidden_features": [16, 16],
                  "train": {"samples": 2048, "batch_size": 64, "device": "cpu"}},
        "loop": {"generations": 3, "lambdas": [1, "inf"], "seeds": [0]},
        "metrics": ["moments"],
        "output": {"training_checkpoint_every": 512},
    },
}

#: Runs a genloop command in a process that SIGKILLs itself right before its N-th write.
INJECTOR = """
import os, signal, sys
import genloop._fs as fs, genloop.store.run as store_run
count = {"n": 0}
target = int(sys.argv[1])
def maybe_die():
    count["n"] += 1
    if count["n"] == target:
        os.kill(os.getpid(), signal.SIGKILL)
real_replace = os.replace
def replace(src, dst, *a, **k):
    maybe_die()
    return real_replace(src, dst, *a, **k)
os.replace = replace
real_append = store_run.RunStore._append_line
def append(self, name, text, generation):
    maybe_die()
    return real_append(self, name, text, generation)
store_run.RunStore._append_line = append
from genloop.cli import main
sys.exit(main(sys.argv[2:]))
"""


def artefacts(exp: Path) -> dict[str, bytes]:
    """Every byte a user reads back: metrics, checkpoints, samples, pools (not wall times)."""
    out = {}
    for p in sorted(exp.rglob("*")):
        rel = p.relative_to(exp).as_posix()
        if p.is_file() and rel.split("/")[-1] in ("metrics.jsonl", "manifest.jsonl") or (
            p.is_file() and any(f"/{d}/" in f"/{rel}" for d in ("checkpoints", "samples", "synthetic"))
        ):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def family(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    cfg = folder / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIGS[request.param]))
    assert main(["-q", "run", str(cfg), "--out", str(folder / "ref")]) == 0
    return request.param, cfg, artefacts(folder / "ref")


def _resume_until_done(cfg: Path, out: Path, *extra: str) -> None:
    code = main(["-q", "run", str(cfg), "--out", str(out), "--resume", *extra])
    assert code == 0


def test_kill_before_each_kind_of_write_then_resume(family, tmp_path):
    name, cfg, reference = family
    rng = random.Random(0)
    # the first writes (config, lock, generation 0), then a spread of later ones
    targets = sorted({1, 2, 3, 5, 8, *rng.sample(range(9, 60 if name == "gmm" else 50), 4)})
    for target in targets:
        out = tmp_path / f"kill{target}"
        proc = subprocess.run([sys.executable, "-c", INJECTOR, str(target), "-q", "run", str(cfg), "--out", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr
        if not (out / "config.yaml").exists():  # killed before the experiment existed: start again
            assert main(["-q", "run", str(cfg), "--out", str(out)]) == 0
        else:
            _resume_until_done(cfg, out)
        assert artefacts(out) == reference, f"kill before write {target}"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_kill_at_random_moments_then_resume(family, tmp_path, jobs):
    name, cfg, reference = family
    rng = random.Random(int(jobs))
    out = tmp_path / "exp"
    kills = 0
    for attempt in range(3):
        args = ["-q", "run", str(cfg), "--out", str(out), "--jobs", jobs] + (["--resume"] if out.exists() else [])
        proc = subprocess.Popen([sys.executable, "-m", "genloop.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(rng.uniform(2.0, 6.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the command and its workers
            kills += 1
        proc.communicate(timeout=300)
    _resume_until_done(cfg, out, "--jobs", jobs)
    assert artefacts(out) == reference
    assert main(["check", str(out)]) == 0
    assert kills >= 1
