"""Benchmark: seconds per generation (fit + sample) of every neural model family, and network
evaluations per sample of each of its samplers.

Covers every registered family built on ``TorchGenerativeModel`` (flow, cfm, otcfm, ddpm, edm,
and any added later) on two data sets: 2-D two moons (n = 2000) and the 8×8 digits images
(n = 1797, in [-1, 1]). One generation = fit on the training set with a budget in samples
seen, then draw ``--n-sample`` samples. The sampler table re-samples the fitted model with
each sampler variant of its family (``SAMPLERS``) and reports ``last_nfe_`` (network
evaluations per sample) and the time.

    .venv/bin/python benchmarks/bench_neural_models.py                  # quick: 10 k samples seen, 200 drawn
    .venv/bin/python benchmarks/bench_neural_models.py --samples 200000 --n-sample 2000
    .venv/bin/python benchmarks/bench_neural_models.py --models otcfm edm --data moons --json out.json
    .venv/bin/python benchmarks/bench_neural_models.py --paper --batch-size 16   # the paper's networks

``--paper`` instead measures the full-size networks of the paper (every preset of
``genloop.models.neural.paper_networks``): parameters, training steps (forward + backward +
Adam) in images/s, and the time to write and read one in-generation training checkpoint
(weights, EMA, Adam) of that size.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch

from genloop.data import make_data
from genloop.models import MODELS, available_models, make_model
from genloop.models.neural.base import TorchGenerativeModel

#: Small networks per data set (every neural family takes ``network`` and ``train``, except
#: the flow, which has its own architecture options).
NETWORKS: dict[str, dict[str, Any]] = {
    "moons": {"hidden": 64, "depth": 3},
    "digits": {"channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4]},
}
FLOW: dict[str, dict[str, Any]] = {
    "moons": {"transforms": 4, "hidden_features": [32, 32]},
    "digits": {"kind": "maf", "transforms": 4, "hidden_features": [256, 256]},
}
#: Sampler variants per family (the first is the family's default); families not listed are
#: benchmarked with their defaults only.
SAMPLERS: dict[str, list[dict[str, Any]]] = {
    "cfm": [{"solver": "dopri5"}, {"solver": "euler", "steps": 100}, {"solver": "midpoint", "steps": 50}],
    "otcfm": [{"solver": "dopri5"}, {"solver": "euler", "steps": 100}, {"solver": "midpoint", "steps": 50}],
    "ddpm": [{"sampler": "ddim", "sample_steps": 100}, {"sampler": "ancestral"}],
    "edm": [{"num_steps": 18}, {"num_steps": 40}],
}


def neural_names() -> list[str]:
    """Registered families built on :class:`TorchGenerativeModel`."""
    names = available_models()
    return [n for n in names if isinstance(MODELS.get(n), type) and issubclass(MODELS.get(n), TorchGenerativeModel)]


def load(data: str, rng: np.random.Generator) -> np.ndarray:
    if data == "moons":
        return make_data("two_moons", noise=0.05).sample(2000, rng=rng)
    return make_data("digits_images").load()


def options(name: str, data: str, samples: int, batch_size: int, device: str) -> dict[str, Any]:
    train = {"samples": samples, "batch_size": batch_size, "device": device}
    if name == "flow":
        return {**FLOW[data], "train": train}
    return {"network": NETWORKS[data], "train": train}


def bench_one(name: str, data: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    X = load(data, np.random.default_rng(0))
    try:
        model = make_model(name, **options(name, data, args.samples, args.batch_size, args.device))
    except Exception as exc:  # noqa: BLE001 - report and go on with the other families
        return [{"model": name, "data": data, "error": f"{type(exc).__name__}: {exc}"}]
    t0 = time.perf_counter()
    model.fit(X, rng=np.random.default_rng(1))
    t_fit = time.perf_counter() - t0
    rows = []
    for variant in SAMPLERS.get(name, [{}]) or [{}]:
        for key, value in variant.items():
            setattr(model, key, value)  # sampler options are plain attributes of the fitted model
        t0 = time.perf_counter()
        model.sample(args.n_sample, rng=np.random.default_rng(2))
        t_sample = time.perf_counter() - t0
        rows.append(
            {
                "model": name,
                "data": data,
                "n_train": int(X.shape[0]),
                "sampler": ",".join(f"{k}={v}" for k, v in variant.items()) or "default",
                "fit_s": t_fit,
                "sample_s": t_sample,
                "gen_s": t_fit + t_sample,
                "nfe_per_sample": getattr(model, "last_nfe_", None),
                "steps": len(getattr(model, "losses_", [])),
            }
        )
    return rows


def bench_paper(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """Images/s of a training step and checkpoint write/read seconds for each paper network."""
    import copy
    import tempfile
    from pathlib import Path

    from genloop.models.neural.networks import NetworkConfig, build_network
    from genloop.models.neural.paper_networks import PRESETS
    from genloop.models.neural.train_checkpoint import (
        TrainCheckpointing,
        load_latest,
        optimizer_to_parts,
        save_train_checkpoint,
        tensor_state,
    )

    rows = []
    for name, p in PRESETS.items():
        net = build_network(NetworkConfig(kind=p.kind, preset=name), (p.channels, p.resolution, p.resolution)).to(device)
        ema = copy.deepcopy(net)
        opt = torch.optim.Adam([q for q in net.parameters() if q.requires_grad], lr=1e-4)
        x = torch.randn(args.batch_size, p.channels, p.resolution, p.resolution, device=device)
        t = torch.rand(args.batch_size, device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            net(x, t).square().mean().backward()
            opt.step()

        step()  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.paper_steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        per_s = args.paper_steps * args.batch_size / (time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            ck = TrainCheckpointing(Path(tmp), 1)
            t0 = time.perf_counter()
            tensors: dict[str, torch.Tensor] = {}
            tensor_state("net.", net.state_dict(), tensors)
            tensor_state("ema.", ema.state_dict(), tensors)
            opt_tensors, opt_meta = optimizer_to_parts(opt.state_dict())
            tensors.update(opt_tensors)
            save_train_checkpoint(ck, step=1, tensors=tensors, meta={"optimizer": opt_meta, "fingerprint": {}})
            t_write = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in Path(tmp).iterdir())
            t0 = time.perf_counter()
            found = load_latest(ck)
            assert found is not None
            sum(float(v.float().sum()) for v in found[0].values())  # touch every byte
            t_read = time.perf_counter() - t0
        rows.append({"preset": name, "parameters": sum(q.numel() for q in net.parameters()), "train_images_per_s": per_s,
                     "checkpoint_mib": size / 2**20, "checkpoint_write_s": t_write, "checkpoint_read_s": t_read})
        print(f"{name:28} {rows[-1]['parameters'] / 1e6:6.2f} M  {per_s:9.1f} img/s  checkpoint {size / 2**20:6.0f} MiB "
              f"write {t_write:6.2f} s  read {t_read:6.2f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="families (default: every neural family)")
    parser.add_argument("--data", nargs="*", default=["moons", "digits"], choices=["moons", "digits"])
    parser.add_argument("--samples", type=int, default=10_000, help="training budget in samples seen")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-sample", type=int, default=200, help="samples drawn per generation")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--paper", action="store_true", help="the paper's full-size networks instead (see above)")
    parser.add_argument("--paper-steps", type=int, default=3, help="timed training steps per paper network")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    names = args.models or neural_names()
    rows: list[dict[str, Any]] = []
    device = "cuda" if (args.device != "cpu" and torch.cuda.is_available()) else "cpu"
    if args.paper:
        print(f"device={device} threads={torch.get_num_threads()} batch {args.batch_size}")
        rows = bench_paper(args, device)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"device": device, "args": vars(args), "rows": rows}, fh, indent=1)
        return
    # warm-up: first-call costs (imports, kernel selection) stay out of the first timing
    make_model("cfm", network={"hidden": 8, "depth": 1}, train={"samples": 64, "batch_size": 32, "device": args.device}).fit(
        np.random.default_rng(0).normal(size=(32, 2)), rng=np.random.default_rng(0)
    )
    print(f"device={device} threads={torch.get_num_threads()} budget={args.samples} samples, batch {args.batch_size}")
    print(f"{'model':8} {'data':7} {'sampler':32} {'fit s':>8} {'sample s':>9} {'gen s':>8} {'NFE/sample':>10}")
    for data in args.data:
        for name in names:
            for row in bench_one(name, data, args):
                rows.append(row)
                if "error" in row:
                    print(f"{name:8} {data:7} ERROR {row['error']}")
                    continue
                nfe = "-" if row["nfe_per_sample"] is None else str(row["nfe_per_sample"])
                print(
                    f"{name:8} {data:7} {row['sampler']:32} {row['fit_s']:8.2f} {row['sample_s']:9.2f} "
                    f"{row['gen_s']:8.2f} {nfe:>10}",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device, "args": vars(args), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
