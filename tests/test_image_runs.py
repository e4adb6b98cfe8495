"""An image experiment end to end: digits images, a U-Net DDPM, image metrics, sample grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genloop.config import parse_config
from genloop.store import RunStore
from genloop.sweep import run_experiment


@pytest.mark.slow
def test_digits_ddpm_run_logs_image_metrics_and_grids(tmp_path):
    cache = str(tmp_path / "cache")
    feats = {"features": "classifier", "classifier_dataset": "digits", "cache_dir": cache}
    cfg = parse_config({
        "data": {"name": "digits_images", "n": 400, "n_heldout": 200},
        "model": {
            "name": "ddpm", "T": 100, "sample_steps": 10,
            "network": {"kind": "unet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                        "attn_resolutions": [4]},
            "train": {"samples": 800, "batch_size": 64, "device": "cpu"},
        },
        "loop": {"generations": 1, "lambdas": [1], "n_eval": 200},
        "metrics": [{"name": "fid", **feats}, {"name": "prdc", **feats},
                    {"name": "kid", **feats, "subset_size": 100, "n_subsets": 10}],
    })
    run_experiment(cfg, tmp_path / "exp")
    store = RunStore(tmp_path / "exp" / "lam=1" / "seed=0")
    rows = [json.loads(line) for line in (store.path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["n_real"], r["n_synthetic"]) for r in rows] == [(400, 0), (400, 400)]
    for row in rows:
        assert {"fid", "precision", "recall", "density", "coverage", "kid", "kid_std"} <= row.keys()
        assert row["fid"] > 0 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    for t in (0, 1):
        samples = store.load_samples(t)
        assert samples.shape == (200, 1, 8, 8) and samples.dtype == np.float32
        with Image.open(store.path / "grids" / f"gen_{t:04d}.png") as img:
            assert img.size[0] == img.size[1] > 8 * 8 * 8  # 8 x 8 tiles of 8x8 digits, enlarged
    # a barely trained model is far from the data: its FID exceeds that of real held-out digits
    from genloop.data import make_data
    from genloop.metrics import make_metric

    digits = make_data("digits_images").load()
    fid = make_metric("fid", **feats)
    real_fid = fid(digits[:300], digits[300:700])["fid"]
    assert rows[0]["fid"] > 3 * real_fid
