"""Benchmark: the shared trainer and the EDM sampler against the bare network, in one process.

Two ratios, each measured with the same network, batch, device and precision:

* **trainer / bare loop** (images/s): :func:`genloop.models.neural.trainer.train` (minibatch
  order, learning-rate ramp, EMA, loss bookkeeping) against a bare loop of forward, EDM loss,
  backward and Adam on training data already on the device;
* **sampler / bare inference** (network evaluations/s): ``EDM.sample`` (Heun, 2N - 1
  evaluations per image) against calling the network alone on batches of the same size.

Runs alternate (trainer, bare, trainer, bare, …) and each rate is the best of ``--repeats``,
so a shared machine disturbs both sides alike. On CUDA the default network is EDM's DDPM++
(``edm-cifar10-uncond-vp``, 55.7 M parameters) in bf16 autocast; on a CPU a toy-size U-Net
(``--toy``, the default there) in float32.

    .venv/bin/python benchmarks/bench_trainer_gpu.py              # toy on CPU, full size on CUDA
    .venv/bin/python benchmarks/bench_trainer_gpu.py --quick      # fewer steps
    .venv/bin/python benchmarks/bench_trainer_gpu.py --json out.json

It only uses the public training API, so it also measures an older checkout of genloop when
run with ``PYTHONPATH`` pointing at that checkout's ``src``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genloop.models import make_model
from genloop.models.neural.trainer import TrainConfig, train

TOY_NETWORK: dict[str, Any] = {"kind": "songunet", "preset": "edm-cifar10-uncond-vp", "channels": 16,
                               "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [8]}
FULL_NETWORK: dict[str, Any] = {"kind": "songunet", "preset": "edm-cifar10-uncond-vp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--toy", action="store_true", help="toy-size network (default on a CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 8 toy, 256 full)")
    p.add_argument("--steps", type=int, default=None, help="training steps per measurement (default 30 toy, 100 full)")
    p.add_argument("--sample-batch", type=int, default=None, help="sampling batch (default 16 toy, 1000 full)")
    p.add_argument("--num-steps", type=int, default=None, help="EDM sampler steps (default 3 toy, 18 full)")
    p.add_argument("--sample-precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="network evaluations when sampling (default: bfloat16 on CUDA, float32 on a CPU)")
    p.add_argument("--sample-compile", action="store_true", help="torch.compile the sampling network (CUDA)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    p.add_argument("--json", help="write the measurements to this file")
    args = p.parse_args(argv)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    args.device = str(dev)
    args.toy = args.toy or dev.type == "cpu"
    full = not args.toy
    if args.sample_precision == "auto":
        args.sample_precision = "float32" if args.toy else "bfloat16"
    args.batch_size = args.batch_size or (256 if full else 8)
    args.steps = args.steps or (100 if full else 30)
    args.sample_batch = args.sample_batch or (1000 if full else 16)
    args.num_steps = args.num_steps or (18 if full else 3)
    if args.quick:
        args.steps = max(5, args.steps // 3)
        args.repeats = 2
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(args: argparse.Namespace):  # noqa: ANN202 - an EDM model
    network = TOY_NETWORK if args.toy else FULL_NETWORK
    return make_model("edm", network=network, num_steps=args.num_steps, sample_batch_size=args.sample_batch,
                      train={"samples": args.steps * args.batch_size, "batch_size": args.batch_size, "lr": 2e-4,
                             "warmup_samples": 0, "ema_halflife_samples": 500_000, "ema_rampup_ratio": 0.05,
                             "device": args.device, "amp": True, "log_every": 0,
                             "sample_precision": args.sample_precision, "sample_compile": args.sample_compile})


def _data(n: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.as_tensor(np.tanh(rng.normal(size=(n, 3, 32, 32))), dtype=torch.float32)


def time_trainer(model: Any, data: torch.Tensor, args: argparse.Namespace) -> float:
    """Images/s of the shared trainer (EMA on, as the EDM recipes train)."""
    device = torch.device(args.device)
    net = model.build_net(tuple(data.shape[1:]), torch.Generator().manual_seed(0))
    cfg: TrainConfig = model.train
    _sync(device)
    t0 = time.perf_counter()
    train(net, model.loss, data, cfg, generator=torch.Generator().manual_seed(1), progress=False)
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def time_bare_loop(model: Any, data: torch.Tensor, args: argparse.Namespace) -> float:
    """Images/s of forward, EDM loss, backward and Adam alone, data on the device."""
    device = torch.device(args.device)
    net = model.build_net(tuple(data.shape[1:]), torch.Generator().manual_seed(0)).to(device).train()
    cfg: TrainConfig = model.train
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    g = torch.Generator(device=device).manual_seed(2)
    _sync(device)
    t0 = time.perf_counter()
    x_all = data.to(device)
    use_amp = cfg.amp and device.type == "cuda"
    for _ in range(args.steps):
        idx = torch.randint(0, x_all.shape[0], (args.batch_size,), generator=g, device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = model.loss(net, x_all[idx], g).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def _fitted(model: Any, net: torch.nn.Module, event_shape: tuple[int, ...]) -> Any:
    """``model`` made fitted with ``net`` (random weights) without training."""
    model.net_ = net.eval()
    model.ema_ = None
    model.optimizer_state_ = None
    model.shift_, model.scale_ = np.zeros((1, 1, 1)), np.ones((1, 1, 1))
    model.samples_seen_, model.losses_, model.event_shape_ = 0, [], event_shape
    return model


def time_sampler(model: Any, n: int) -> float:
    """Network evaluations/s of ``model.sample`` (evaluations per image × images / s)."""
    device = torch.device(model.train.device)
    _sync(device)
    t0 = time.perf_counter()
    model.sample(n, rng=np.random.default_rng(3))
    _sync(device)
    return n * model.last_nfe_ / (time.perf_counter() - t0)


def time_bare_inference(net: torch.nn.Module, n: int, batch: int, nfe: int, event_shape: tuple[int, ...],
                        device: torch.device, precision: str = "float32") -> float:
    """Network evaluations/s of the network alone on batches of ``batch``, in ``precision``
    (bfloat16: the same autocast as the sampler's)."""
    g = torch.Generator(device=device).manual_seed(4)
    sizes = [min(batch, n - s) for s in range(0, n, batch)]
    x = torch.randn((batch, *event_shape), generator=g, device=device)
    c = torch.zeros(batch, device=device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        for m in sizes:
            for _ in range(nfe):
                net(x[:m], c[:m])
    _sync(device)
    return n * nfe / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = torch.device(args.device)
    model = _model(args)
    data = _data(max(4 * args.batch_size, 64))
    event_shape = tuple(int(s) for s in data.shape[1:])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    # warm-up (allocator, kernels, autotuning) outside the timings
    warm = argparse.Namespace(**{**vars(args), "steps": 2})
    time_trainer(_model(warm), data, warm)
    time_bare_loop(_model(warm), data, warm)
    trainer_rates, bare_rates = [], []
    for _ in range(args.repeats):
        trainer_rates.append(time_trainer(model, data, args))
        bare_rates.append(time_bare_loop(model, data, args))
    net = model.build_net(event_shape, torch.Generator().manual_seed(0)).to(device)
    fitted = _fitted(model, net, event_shape)
    n_sample = 2 * args.sample_batch
    fitted.sample(min(n_sample, args.sample_batch), rng=np.random.default_rng(0))  # warm-up
    nfe = int(fitted.last_nfe_)
    sampler_rates, infer_rates = [], []
    for _ in range(args.repeats):
        sampler_rates.append(time_sampler(fitted, n_sample))
        infer_rates.append(time_bare_inference(net, n_sample, args.sample_batch, nfe, event_shape, device,
                                               args.sample_precision))
    params = sum(p.numel() for p in net.parameters())
    out = {
        "device": name, "parameters": params, "batch_size": args.batch_size, "steps": args.steps,
        "precision": "bf16 autocast" if device.type == "cuda" else "float32",
        "trainer_images_per_s": max(trainer_rates), "bare_loop_images_per_s": max(bare_rates),
        "trainer_ratio": max(trainer_rates) / max(bare_rates),
        "sampler_evals_per_s": max(sampler_rates), "bare_inference_evals_per_s": max(infer_rates),
        "sampler_ratio": max(sampler_rates) / max(infer_rates), "nfe_per_image": nfe,
        "sample_batch": args.sample_batch, "sample_precision": args.sample_precision,
        "sample_compile": args.sample_compile,
    }
    print(f"{name}: EDM songunet, {params / 1e6:.2f} M parameters, batch {args.batch_size}, {out['precision']}")
    print(f"  trainer   {out['trainer_images_per_s']:10.1f} images/s   bare loop      {out['bare_loop_images_per_s']:10.1f}"
          f"   ratio {out['trainer_ratio']:.3f}")
    print(f"  sampler   {out['sampler_evals_per_s']:10.1f} evals/s    bare inference {out['bare_inference_evals_per_s']:10.1f}"
          f"   ratio {out['sampler_ratio']:.3f}  ({nfe} evaluations per image, batch {args.sample_batch}, {args.sample_precision})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
