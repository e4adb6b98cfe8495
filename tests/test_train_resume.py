"""Checkpoints inside one generation's training: a killed fit resumes exactly where it stopped."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from genloop.errors import ConfigError
from genloop.models import make_model
from genloop.models.neural.train_checkpoint import TrainCheckpointing, load_latest

VEC = {"network": {"hidden": 16, "depth": 2}, "train": {"samples": 640, "batch_size": 32, "device": "cpu",
                                                       "ema_halflife_samples": 200.0, "warmup_samples": 128}}
FLOW = {"transforms": 2, "hidden_features": [16, 16], "train": {"samples": 640, "batch_size": 32, "device": "cpu",
                                                                 "ema_halflife_samples": 200.0}}
SONG = {"network": {"kind": "songunet", "preset": "edm-cifar10-uncond-vp", "channels": 8, "channel_mult": [1, 2],
                    "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.2, "norm_groups": 4},
        "augment": {"p": 0.5, "xflip": 1e8, "yflip": 1, "scale": 1, "rotate_frac": 1, "aniso": 1, "translate_frac": 1},
        "train": {"samples": 48, "batch_size": 8, "device": "cpu", "ema_halflife_samples": 50.0}}
IMG = {"network": {"channels": 8, "channel_mult": [1, 2], "attn_resolutions": [4], "dropout": 0.2, "norm_groups": 4},
       "train": {"samples": 96, "batch_size": 8, "device": "cpu", "ema_halflife_samples": 50.0}}


class Interrupt(Exception):
    pass


def _interrupt_after(model, calls: int) -> None:
    """Make ``model``'s objective raise on call ``calls + 1`` (a kill in the middle of a step)."""
    loss = model.loss
    count = {"n": 0}

    def wrapped(net, x, g):
        count["n"] += 1
        if count["n"] > calls:
            raise Interrupt
        return loss(net, x, g)

    model.loss = wrapped


def _state(model) -> dict[str, np.ndarray]:
    arrays, meta = model.get_state()
    arrays["losses"] = np.asarray(model.losses_)
    return arrays


def _assert_identical(a, b) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not np.array_equal(sa[k], sb[k])]
    assert not differ, f"differ after resume: {differ[:5]}"


@pytest.mark.parametrize("family, options, shape, every, stop", [
    ("edm", VEC, (120, 2), 96, 11),      # checkpoints every 3 steps; killed in step 12 of 20
    ("ddpm", VEC, (120, 2), 64, 2),       # killed before the first checkpoint: starts over
    ("otcfm", VEC, (120, 2), 32, 19),     # killed in the last step
    ("edm", IMG, (24, 1, 8, 8), 24, 7),   # U-Net with dropout (global-RNG stream restored)
    ("flow", FLOW, (120, 2), 96, 9),      # a zuko flow (exact likelihood, no objective noise)
    ("edm", SONG, (12, 3, 8, 8), 16, 3),  # EDM's augmentation drawn from the training stream
])
def test_resumed_fit_equals_uninterrupted_fit(tmp_path, family, options, shape, every, stop) -> None:
    X = np.random.default_rng(0).normal(size=shape)
    if len(shape) == 4:
        X = np.tanh(X)
    reference = make_model(family, **options).fit(X, rng=np.random.default_rng(1))

    killed = make_model(family, **options)
    killed.enable_training_checkpoints(tmp_path / "ckpt", every)
    _interrupt_after(killed, stop)
    with pytest.raises(Interrupt):
        killed.fit(X, rng=np.random.default_rng(1))

    resumed = make_model(family, **options)
    resumed.enable_training_checkpoints(tmp_path / "ckpt", every)
    resumed.fit(X, rng=np.random.default_rng(1))
    _assert_identical(reference, resumed)
    assert len(resumed.losses_) == len(reference.losses_)

    # the last checkpoint is written after the final step: a second resume trains nothing
    again = make_model(family, **options)
    again.enable_training_checkpoints(tmp_path / "ckpt", every)
    _interrupt_after(again, 0)
    again.fit(X, rng=np.random.default_rng(1))
    _assert_identical(reference, again)


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path) -> None:
    X = np.random.default_rng(0).normal(size=(64, 2))
    model = make_model("edm", **VEC)
    model.enable_training_checkpoints(tmp_path, 128)
    model.fit(X, rng=np.random.default_rng(1))
    umask = os.umask(0)
    os.umask(umask)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all(n.endswith((".json", ".safetensors")) for n in names)
    assert len([n for n in names if n.endswith(".json")]) == 2  # only the newest `keep` = 2 are kept
    doc = json.loads((tmp_path / "step-000000020.json").read_text())
    assert doc["step"] == 20 and doc["seen"] == 640
    assert doc["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]
    for p in tmp_path.iterdir():
        assert not p.read_bytes().startswith(b"\x80"), f"{p.name} looks like a pickle"
        assert (p.stat().st_mode & 0o777) == 0o666 & ~umask  # like the rest of a run folder, not 0600


def test_incomplete_checkpoint_is_ignored(tmp_path) -> None:
    X = np.random.default_rng(0).normal(size=(64, 2))
    reference = make_model("edm", **VEC).fit(X, rng=np.random.default_rng(1))
    killed = make_model("edm", **VEC)
    killed.enable_training_checkpoints(tmp_path, 96)
    _interrupt_after(killed, 8)
    with pytest.raises(Interrupt):
        killed.fit(X, rng=np.random.default_rng(1))
    newest = max(tmp_path.glob("step-*.json"))
    assert newest.name == "step-000000006.json"
    # a kill between the tensor file and its JSON leaves a tensor file without JSON (and a temp
    # file): neither counts, the newest complete checkpoint does
    (tmp_path / "step-000000009.safetensors").write_bytes(b"partial")
    (tmp_path / ".step-000000009.json.tmp").write_bytes(b"{")
    ck = TrainCheckpointing(tmp_path, 96)
    assert load_latest(ck)[1]["step"] == 6
    # a JSON whose tensor file is truncated is skipped with a warning, not trusted
    (tmp_path / "step-000000006.safetensors").write_bytes(b"")
    assert load_latest(ck)[1]["step"] == 3
    resumed = make_model("edm", **VEC)
    resumed.enable_training_checkpoints(tmp_path, 96)
    resumed.fit(X, rng=np.random.default_rng(1))
    _assert_identical(reference, resumed)


@pytest.mark.parametrize("change", ["data", "options", "budget"])
def test_checkpoint_of_another_fit_is_refused(tmp_path, change) -> None:
    X = np.random.default_rng(0).normal(size=(64, 2))
    first = make_model("edm", **VEC)
    first.enable_training_checkpoints(tmp_path, 96)
    _interrupt_after(first, 5)
    with pytest.raises(Interrupt):
        first.fit(X, rng=np.random.default_rng(1))
    options = json.loads(json.dumps(VEC))
    if change == "options":
        options["P_mean"] = -1.0
    if change == "budget":
        options["train"]["samples"] = 960
    other = make_model("edm", **options)
    other.enable_training_checkpoints(tmp_path, 96)
    X2 = X.copy()
    if change == "data":
        X2[0, 0] += 0.5
    with pytest.raises(ConfigError, match="different fit"):
        other.fit(X2, rng=np.random.default_rng(1))


def test_checkpoint_options_are_validated(tmp_path) -> None:
    with pytest.raises(ConfigError, match="every_samples"):
        make_model("edm", **VEC).enable_training_checkpoints(tmp_path, 0)


def test_training_leaves_the_global_rng_alone() -> None:
    X = np.random.default_rng(0).normal(size=(24, 1, 8, 8))
    before = torch.get_rng_state()
    make_model("edm", **IMG).fit(np.tanh(X), rng=np.random.default_rng(1))
    assert torch.equal(before, torch.get_rng_state())


def test_progress_is_logged_when_stderr_is_not_a_terminal(caplog) -> None:
    X = np.random.default_rng(0).normal(size=(64, 2))
    with caplog.at_level("INFO", logger="genloop.models.neural.trainer"):
        make_model("edm", **VEC).fit(X, rng=np.random.default_rng(1))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training: step")]
    assert lines and lines[-1].startswith("training: step 20/20, 640/640 samples, loss ")
    assert "samples/s" in lines[-1]


KILL_WORKER = """
import sys, numpy as np, json
from genloop.models import make_model
opts = json.loads(sys.argv[2])
X = np.random.default_rng(0).normal(size=(120, 2))
model = make_model("edm", **opts)
model.enable_training_checkpoints(sys.argv[1], 64)
model.fit(X, rng=np.random.default_rng(1))
print("done", flush=True)
"""


@pytest.mark.slow
def test_kill_minus_9_at_random_moments_then_resume_is_exact(tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    opts = json.loads(json.dumps(VEC))
    opts["train"]["samples"] = 6400  # 200 steps, a checkpoint every 2 steps: kills land in writes too
    X = np.random.default_rng(0).normal(size=(120, 2))
    reference = make_model("edm", **opts).fit(X, rng=np.random.default_rng(1))
    delays = np.random.default_rng(7).uniform(0.0, 0.3, size=3)
    interrupted_at = []
    for i, kills in enumerate(([delays[0], delays[1]], [delays[2]])):
        folder = tmp_path / f"ckpt{i}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for delay in kills:  # killed (twice for the first folder), then resumed to the end here
            before = {p.name for p in folder.glob("step-*.json")}
            p = subprocess.Popen([sys.executable, "-c", KILL_WORKER, str(folder), json.dumps(opts)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while p.poll() is None and time.monotonic() < deadline:  # wait until it is training
                if {q.name for q in folder.glob("step-*.json")} - before:
                    break
                time.sleep(0.005)
            time.sleep(delay)  # then kill at a random moment (mid-step or mid-write)
            p.send_signal(signal.SIGKILL)
            p.communicate()
        found = load_latest(TrainCheckpointing(folder, 64))
        interrupted_at.append(found[1]["step"] if found else 0)
        resumed = make_model("edm", **opts)
        resumed.enable_training_checkpoints(folder, 64)
        resumed.fit(X, rng=np.random.default_rng(1))
        _assert_identical(reference, resumed)
    assert any(0 < s < 200 for s in interrupted_at), interrupted_at  # some kill landed inside the training


@pytest.mark.parametrize("carry", [["weights", "ema", "optimizer"], ["ema_as_weights"]])
def test_resumed_warm_start_equals_uninterrupted_warm_start(tmp_path, carry) -> None:
    X0 = np.random.default_rng(0).normal(size=(64, 2))
    X1 = np.random.default_rng(5).normal(size=(64, 2)) + 1.0
    opts = json.loads(json.dumps(VEC))
    opts["train"]["carry_over"] = carry
    prev = make_model("edm", **opts).fit(X0, rng=np.random.default_rng(1))
    reference = make_model("edm", **opts).fit(X1, rng=np.random.default_rng(2), init=prev)
    killed = make_model("edm", **opts)
    killed.enable_training_checkpoints(tmp_path, 96)
    _interrupt_after(killed, 13)
    with pytest.raises(Interrupt):
        killed.fit(X1, rng=np.random.default_rng(2), init=prev)
    resumed = make_model("edm", **opts)
    resumed.enable_training_checkpoints(tmp_path, 96)
    resumed.fit(X1, rng=np.random.default_rng(2), init=prev)
    _assert_identical(reference, resumed)
    assert resumed.samples_seen_ == reference.samples_seen_ == 2 * 640
