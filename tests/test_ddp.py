"""DDP on CPU (gloo, 2 processes): one training run equals the single-process run for the same
global batch, and sharded sampling gives every rank the same full sample."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genloop.errors import ConfigError
from genloop.models.neural.distributed import World, gather_rows, shard_sizes, world
from genloop.models.neural.networks import NetworkConfig, build_network
from genloop.models.neural.trainer import TrainConfig, train

SETUP = """
import sys, numpy as np, torch
from safetensors.torch import save_file
from genloop.models import make_model
from genloop.models.neural.distributed import init_from_env, world
from genloop.models.neural.networks import NetworkConfig, build_network
from genloop.models.neural.trainer import TrainConfig, train

def problem():
    data = torch.randn(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg = NetworkConfig(channels=8, channel_mult=(1, 2), attn_resolutions=(4,), norm_groups=4)
    net = build_network(cfg, (1, 8, 8), generator=torch.Generator().manual_seed(1))
    def loss(net, x, g):  # no noise: DDP's step must equal the single-process step exactly
        return (net(x, torch.full((x.shape[0],), 0.5)) - x.flip(-1)).square().flatten(1).mean(1)
    tc = TrainConfig(samples=192, batch_size=16, lr=1e-2, device="cpu", ema_halflife_samples=64.0, grad_clip=1.0)
    return net, loss, data, tc
"""

WORKER = SETUP + """
w = init_from_env("gloo")
net, loss, data, tc = problem()
res = train(net, loss, data, tc, generator=torch.Generator().manual_seed(2), progress=False)
state = {f"net.{k}": v for k, v in res.net.state_dict().items()}
state.update({f"ema.{k}": v for k, v in res.ema.state_dict().items()})
state["losses"] = torch.tensor(res.losses, dtype=torch.float64)
save_file({k: v.contiguous() for k, v in state.items()}, sys.argv[1] + f"/train{w.rank}.safetensors")
X = np.tanh(np.random.default_rng(0).normal(size=(32, 1, 8, 8)))
# EDM's own network (its frozen augment-label layer must not trip DDP's unused-parameter check)
model = make_model("edm", network={"kind": "songunet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                   "attn_resolutions": [4]},
                   train={"samples": 64, "batch_size": 16, "device": "cpu"}, num_steps=3, sample_batch_size=4)
model.fit(X, rng=np.random.default_rng(1))
np.save(sys.argv[1] + f"/sample{w.rank}.npy", model.sample(11, rng=np.random.default_rng(3)))
"""


CKPT_WORKER = SETUP + """
from pathlib import Path
from genloop.models.neural.train_checkpoint import TrainCheckpointing
w = init_from_env("gloo")
out, mode = sys.argv[1], sys.argv[2]
net, loss, data, tc = problem()
calls = {"n": 0}
def interrupted(net, x, g):
    calls["n"] += 1
    if mode == "kill" and calls["n"] > 7:
        raise SystemExit(3)  # every rank stops in step 8 (after the checkpoint of step 6)
    return loss(net, x, g)
ck = None if mode == "full" else TrainCheckpointing(Path(out) / "ckpt", 32)
res = train(net, interrupted, data, tc, generator=torch.Generator().manual_seed(2), progress=False, checkpoint=ck)
save_file({k: v.contiguous() for k, v in res.net.state_dict().items()}, out + f"/{mode}{w.rank}.safetensors")
"""


def _launch(script: str, args: list[str], n: int = 2) -> list[int]:
    port = _free_port()
    procs = []
    for rank in range(n):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=180)
        codes.append(p.returncode)
        assert p.returncode in (0, 3), err[-3000:]
    return codes


@pytest.mark.slow
def test_ddp_training_resumes_from_its_checkpoint_exactly(tmp_path) -> None:
    assert _launch(CKPT_WORKER, [str(tmp_path), "full"]) == [0, 0]
    assert _launch(CKPT_WORKER, [str(tmp_path), "kill"]) == [3, 3]
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert "step-000000006.rank1.safetensors" in names and "step-000000006.json" in names  # rank 1's own streams
    assert _launch(CKPT_WORKER, [str(tmp_path), "resume"]) == [0, 0]
    for rank in range(2):
        full = load_file(str(tmp_path / f"full{rank}.safetensors"))
        resumed = load_file(str(tmp_path / f"resume{rank}.safetensors"))
        assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_with_gloo_matches_single_process(tmp_path) -> None:
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]

    ns: dict = {}
    exec(textwrap.dedent(SETUP), ns)  # the same problem, in this (single) process
    net, loss, data, tc = ns["problem"]()
    ref = train(net, loss, data, tc, generator=torch.Generator().manual_seed(2), progress=False)
    for rank in range(2):
        got = load_file(str(tmp_path / f"train{rank}.safetensors"))
        for prefix, module in (("net.", ref.net), ("ema.", ref.ema)):
            for k, v in module.state_dict().items():
                torch.testing.assert_close(got[prefix + k], v, rtol=1e-3, atol=1e-4)  # Adam amplifies rounding of tiny gradients
        np.testing.assert_allclose(got["losses"].numpy(), ref.losses, rtol=1e-5)
    # the weights moved: the comparison is not trivially between two initial networks
    init = ns["problem"]()[0]
    assert max((a - b).abs().max().item() for a, b in zip(init.parameters(), ref.net.parameters())) > 1e-3
    # sharded sampling: every rank ends with the same gathered sample of the requested size
    s0, s1 = np.load(tmp_path / "sample0.npy"), np.load(tmp_path / "sample1.npy")
    assert s0.shape == (11, 1, 8, 8) and np.array_equal(s0, s1)
    assert len({row.tobytes() for row in s0}) == 11  # no rank repeated another's noise


def test_single_process_world_is_the_identity() -> None:
    assert world() == World() and not world().distributed and world().is_main
    assert shard_sizes(11, 2) == [6, 5] and shard_sizes(3, 4) == [1, 1, 1, 0] and sum(shard_sizes(50_000, 8)) == 50_000
    t = torch.arange(6.0).reshape(3, 2)
    assert gather_rows(t, [3]) is t


def test_ddp_batch_must_divide_over_ranks(monkeypatch) -> None:
    import genloop.models.neural.trainer as trainer

    monkeypatch.setattr(trainer, "world", lambda: World(rank=0, size=3))
    net = build_network(NetworkConfig(hidden=8, depth=1), (2,), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        train(net, lambda n, x, g: x.sum(1), torch.zeros(8, 2), TrainConfig(samples=8, batch_size=8, device="cpu"),
              generator=torch.Generator().manual_seed(0))


def test_jobs_are_spread_over_gpus() -> None:
    from genloop.models.neural.distributed import gpu_for_job, pin_job_to_gpu

    assert [gpu_for_job(i, 4) for i in range(6)] == [0, 1, 2, 3, 0, 1]
    assert gpu_for_job(3, 0) is None
    env: dict[str, str] = {}
    assert pin_job_to_gpu(5, 2, environ=env) == 1 and env == {"CUDA_VISIBLE_DEVICES": "1"}
    env = {"CUDA_VISIBLE_DEVICES": "4,6,7"}  # a machine share given by the scheduler is respected
    assert pin_job_to_gpu(4, environ=env) == 6 and env["CUDA_VISIBLE_DEVICES"] == "6"
    env = {}
    assert pin_job_to_gpu(0, 0, environ=env) is None and env == {}
