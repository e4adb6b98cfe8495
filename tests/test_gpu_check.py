"""benchmarks/gpu_check.py's modes are sized by their flags (the GPU run itself is not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _gpu_check():
    path = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_generation_is_full_size_unless_told_otherwise() -> None:
    gc = _gpu_check()
    full = gc.parse_args(["--paper-generation"])
    assert (full.n, full.n_eval, full.train_samples) == (50_000, 50_000, 50_000)
    sized = gc.parse_args(["--paper-generation", "--n-eval", "20000"])
    assert (sized.n, sized.n_eval, sized.train_samples) == (50_000, 20_000, 50_000)
    smoke = gc.parse_args(["--paper-generation", "--smoke"])
    assert (smoke.n, smoke.n_eval, smoke.train_samples) == (64, 32, 64)
    plain = gc.parse_args([])
    assert (plain.n, plain.n_eval, plain.train_samples) == (10_000, 10_000, 20_480)
