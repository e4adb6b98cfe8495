"""A fine-tune that learns nothing is said so: a log line when it trains, a line in ``genloop show``.

With EDM's warm-up (lr_k = lr · min(s_k / warmup, 1), restarted by every training) and a
fine-tune budget far below it, the learning rate never leaves the ramp's first percent.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import yaml

from genloop.cli import main
from genloop.config import parse_config
from genloop.models import make_model
from genloop.models.neural.trainer import (
    LR_WARN_FRACTION,
    TrainConfig,
    learning_rate,
    peak_lr_fraction,
)
from genloop.sweep.preflight import learning_rate_warnings

TRAIN = {"samples": 512, "finetune_samples": 256, "batch_size": 128, "lr": 1e-3, "warmup_samples": 10_000_000,
         "device": "cpu"}
DOC = {
    "data": {"name": "two_moons", "n": 128},
    "model": {"name": "edm", "train": TRAIN, "num_steps": 4},
    "loop": {"generations": 1, "lambdas": [1], "seeds": [0], "retrain": "finetune"},
    "metrics": [],
}


@pytest.mark.parametrize(("samples", "batch", "warmup"), [(512, 128, 10_000_000), (1000, 64, 300), (50, 64, 0)])
def test_peak_fraction_is_the_last_steps_rate(samples, batch, warmup) -> None:
    """The closed form against the trainer's own rate at every step (it is non-decreasing)."""
    cfg = TrainConfig(samples=samples, batch_size=batch, warmup_samples=warmup)
    steps = cfg.num_steps(100)
    rates = [learning_rate(cfg, (k + 1) * batch) for k in range(steps)]
    assert peak_lr_fraction(cfg, 100) == max(rates) / cfg.lr
    assert peak_lr_fraction(cfg, 100) == (min(1.0, steps * batch / warmup) if warmup else 1.0)


def test_learning_rate_warnings_follow_the_config() -> None:
    cfg = parse_config(DOC)
    lines = learning_rate_warnings(cfg)
    # generation 0: 512 samples of a 10 M warm-up (0.005 %); the fine-tune: 256 (0.0026 %)
    assert len(lines) == 2 and "trainings from scratch" in lines[0] and "fine-tune generations" in lines[1]
    assert "0.0026%" in lines[1] and "finetune_warmup_samples" in lines[1]
    fixed = parse_config({**DOC, "model": {**DOC["model"], "train": {**TRAIN, "warmup_samples": 256,
                                                                       "finetune_warmup_samples": 0}}})
    assert learning_rate_warnings(fixed) == []
    scratch_only = parse_config({**DOC, "loop": {**DOC["loop"], "retrain": "scratch"}})
    assert [ln for ln in learning_rate_warnings(scratch_only) if "fine-tune" in ln] == []
    assert learning_rate_warnings(parse_config({**DOC, "model": {"name": "gmm"}})) == []


def test_a_fine_tune_at_a_tiny_rate_warns_and_show_says_so(tmp_path, caplog, capsys) -> None:
    X = np.random.default_rng(0).normal(size=(128, 2))
    model = make_model("edm", train=TRAIN, num_steps=4)
    with caplog.at_level(logging.WARNING, logger="genloop.models.neural.base"):
        first = model.fit(X, rng=np.random.default_rng(1))
    assert any("never exceeded" in r.getMessage() and "warmup_samples" in r.getMessage() for r in caplog.records)
    caplog.clear()
    ok = make_model("edm", train={**TRAIN, "warmup_samples": 128}, num_steps=4)
    with caplog.at_level(logging.WARNING, logger="genloop.models.neural.base"):
        ok.fit(X, rng=np.random.default_rng(1), init=first)
    assert not [r for r in caplog.records if "never exceeded" in r.getMessage()]
    assert LR_WARN_FRACTION == 0.01
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(DOC))
    assert main(["-q", "run", str(path), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["show", str(tmp_path / "out" / "lam=1" / "seed=0")]) == 0
    out = capsys.readouterr().out
    assert "warning: fine-tune generations (t >= 1) never exceed" in out
    assert main(["show", str(tmp_path / "out")]) == 0
    assert "warning: fine-tune generations" in capsys.readouterr().out
