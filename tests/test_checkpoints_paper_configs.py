"""The paper's image recipes (examples/paper_*.yaml): each validates, says what the paper does,
and runs one generation at toy size from a random small checkpoint through the CLI."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from genloop.cli import main
from genloop.config import load_config
from genloop.models.neural.checkpoints import WEIGHTS_FORMAT
from genloop.models.neural.networks import NetworkConfig, build_network

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS = {
    "paper_edm_cifar10.yaml": ("edm", "songunet", 32),
    "paper_edm_ffhq64.yaml": ("edm", "songunet", 64),
    "paper_otcfm_cifar10.yaml": ("otcfm", "adm", 32),
    "paper_ddpm_cifar10.yaml": ("ddpm", "ddpm", 32),
}
TOY_NET = {"channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1}


def test_every_paper_config_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("paper_*.yaml")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_config_is_the_paper_recipe(name: str) -> None:
    family, kind, resolution = CONFIGS[name]
    cfg = load_config(EXAMPLES / name)
    opts = cfg.model.options
    assert cfg.model.name == family and opts["network"]["kind"] == kind and opts["init"]
    assert cfg.loop.generations == 20 and cfg.loop.scheme == "replace" and cfg.loop.retrain == "finetune"
    assert cfg.loop.lambdas == [0, 0.001, 0.1, 0.5, 1, math.inf]
    assert cfg.loop.n_eval == 50_000 and cfg.loop.eval_against == "train"
    assert cfg.loop.train_generation_0 is False  # generation 0 is the public checkpoint as it is
    assert opts["train"]["finetune_samples"] == 50_000  # the paper's fine-tuning budget per generation
    assert opts["train"]["carry_over"] == ["ema_as_weights"]  # the official transfer path
    from genloop.models.neural.trainer import TrainConfig, peak_lr_fraction
    from genloop.sweep.preflight import learning_rate_warnings

    # the fine-tunes learn: their warm-up ends inside the budget (the official one would not)
    finetune = TrainConfig(**opts["train"]).for_finetuning(ema_from_zero=True)
    assert peak_lr_fraction(finetune, cfg.data.n) == 1.0 and learning_rate_warnings(cfg) == []
    # what resume (the newest checkpoint) and the report (metrics, samples, grids) need, no more
    assert cfg.output.checkpoints == "last"
    assert [m["name"] for m in cfg.metrics] == ["fid", "prdc"]
    assert all(m["features"] == "inception" for m in cfg.metrics)
    from genloop.errors import ConfigError
    from genloop.models import make_model

    make_model(cfg.model.name, **{**opts, "init": None}).check_data((3, resolution, resolution), cfg.data.n)
    with pytest.raises(ConfigError, match="does not exist"):  # found before a run writes anything
        make_model(cfg.model.name, **opts).check_data((3, resolution, resolution), cfg.data.n)


def _fake_cifar(folder: Path, per_batch: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8), b"labels": [0] * per_batch}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def _fake_folder(folder: Path, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")


def _checkpoint(path: Path, kind: str, preset: str, res: int) -> None:
    net = build_network(NetworkConfig(kind=kind, preset=preset, attn_resolutions=(res // 2,), **TOY_NET),
                        (3, res, res), generator=torch.Generator().manual_seed(0))
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":  # what `genloop convert edm-pkl` writes
        save_file(state, str(path))
        path.with_suffix(".json").write_text(json.dumps({"format": WEIGHTS_FORMAT, "event_shape": [3, res, res]}))
    elif path.suffix == ".pt":  # torchcfm's training script's dict
        torch.save({"net_model": state, "ema_model": state, "step": 400_000}, path)
    else:  # the DDIM code's state dict
        torch.save(state, path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_config_runs_one_toy_generation(tmp_path: Path, name: str) -> None:
    family, kind, _ = CONFIGS[name]
    cfg = load_config(EXAMPLES / name)
    res = 16 if "ffhq" in name else 32  # FFHQ resized to 16x16 here; CIFAR-10 is 32x32
    if cfg.data.name == "cifar10":
        _fake_cifar(tmp_path / "cifar", per_batch=4)
        data = [f"data.path={tmp_path / 'cifar'}"]
    else:
        _fake_folder(tmp_path / "ffhq", 20)
        data = [f"data.path={tmp_path / 'ffhq'}", f"data.resolution={res}"]
    ckpt = tmp_path / Path(cfg.model.options["init"]).name
    _checkpoint(ckpt, kind, cfg.model.options["network"]["preset"], res)
    sampler = {"edm": ["model.num_steps=2"], "ddpm": ["model.sample_steps=2"],
               "otcfm": ["model.solver=euler", "model.steps=2"]}[family]
    sets = data + sampler + [
        "data.n=16", "loop.generations=1", "loop.lambdas=[1]", "loop.n_eval=8", f"model.init={ckpt}",
        *(f"model.network.{k}={json.dumps(v)}" for k, v in TOY_NET.items()), f"model.network.attn_resolutions=[{res // 2}]",
        "model.train.samples=16", "model.train.finetune_samples=16", "model.train.batch_size=8", "model.train.device=cpu",
        "model.sample_batch_size=16", "output.keep_samples=0", "output.checkpoints=all",  # both read below
        # no Inception weights in tests; raw-pixel FID at 16x16 (768-d) is cheap, at 32x32 it is not
        "metrics=[{name: fid, features: raw, allow_rank_deficient: true}]" if res == 16 else "metrics=[]",
    ]
    argv = ["run", str(EXAMPLES / name), "--out", str(tmp_path / "exp")]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "exp" / "lam=1" / "seed=0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1]
    assert [(r["n_real"], r["n_synthetic"]) for r in rows] == [(16, 0), (16, 16)]  # λ = 1 at generation 1
    # generation 0 is the checkpoint itself (loop.train_generation_0: false); generation 1 trained
    from genloop.models.io import load_model

    run = tmp_path / "exp" / "lam=1" / "seed=0" / "checkpoints"
    written = build_network(NetworkConfig(kind=kind, preset=cfg.model.options["network"]["preset"],
                                          attn_resolutions=(res // 2,), **TOY_NET),
                            (3, res, res), generator=torch.Generator().manual_seed(0)).state_dict()
    gen0, gen1 = load_model(run / "gen_0000"), load_model(run / "gen_0001")
    assert all(torch.equal(gen0.net_.state_dict()[k], v) for k, v in written.items())
    assert not all(torch.equal(gen1.net_.state_dict()[k], v) for k, v in written.items())
    if res == 16:
        assert all(math.isfinite(r["fid"]) and r["fid"] > 0 for r in rows)


def test_train_generation_0_false_without_init_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    _fake_cifar(tmp_path / "cifar", per_batch=4)
    argv = ["run", str(EXAMPLES / "paper_ddpm_cifar10.yaml"), "--out", str(tmp_path / "exp"),
            "--set", "model.init=null", "--set", f"data.path={tmp_path / 'cifar'}", "--set", "data.n=16"]
    assert main(argv) == 2
    assert "train_generation_0: false needs a model started from a checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()
