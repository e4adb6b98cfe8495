"""The work of one generation of each paper recipe (examples/paper_*.yaml), counted from its
config, and its CPU time extrapolated from a CPU reproduction config.

Per generation at λ (n real images, m = ⌊λn⌋ synthetic ones, scheme replace) genloop:

* trains ``train.finetune_samples`` images: ≈ 3 forward passes each (forward + backward);
* draws m synthetic images and ``loop.n_eval`` evaluation images, ``NFE`` network
  evaluations each (EDM's Heun sampler: 2·num_steps − 1; DDIM: sample_steps; OT-CFM's
  adaptive dopri5: not known before it runs, given here as a parameter, ``--otcfm-nfe``);

so its work is W = F · (3 · train_images + NFE · (m + n_eval)) with F the forward FLOPs of one
image (counted with ``torch.utils.flop_counter`` on one batch-1 forward pass). The CPU time is
W divided by the FLOP rate measured on the digits config (``--cpu-train-rate`` training images
per CPU-second of the small U-Net on 8×8 digits, measured with ``genloop run`` and
``/usr/bin/time``); a GPU's time needs a GPU's measured rate (``benchmarks/gpu_check.py``).

    .venv/bin/python benchmarks/paper_generation_cost.py --cpu-train-rate 600
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["paper_edm_cifar10", "paper_edm_ffhq64", "paper_otcfm_cifar10", "paper_ddpm_cifar10"]


def forward_flops(network: dict[str, Any], event_shape: tuple[int, ...]) -> float:
    """FLOPs of one forward pass of the network for one image (batch 1)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from genloop.models.neural.networks import NetworkConfig, build_network

    torch.set_num_threads(1)
    net = build_network(NetworkConfig(**network), event_shape).eval()
    x = torch.zeros((1, *event_shape))
    t = torch.full((1,), 0.5)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, t)
    return float(counter.get_total_flops())


def nfe(model: dict[str, Any], otcfm_nfe: int) -> int:
    """Network evaluations per sample of a config's sampler."""
    if model["name"] == "edm":
        return 2 * int(model.get("num_steps", 18)) - 1
    if model["name"] == "ddpm":
        return int(model.get("sample_steps", model.get("T", 1000)))
    return otcfm_nfe


def event_shape(data: dict[str, Any]) -> tuple[int, ...]:
    if data["name"] == "cifar10":
        return (3, 32, 32)
    if data["name"] == "image_folder":
        return (3, int(data["resolution"]), int(data["resolution"]))
    if data["name"] == "digits_images":
        return (1, 8, 8)
    if data["name"] == "mnist":
        return (1, 28, 28)
    raise ValueError(data["name"])


def main() -> None:
    import yaml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-train-rate", type=float, default=600.0,
                   help="training images per CPU-second of the digits config (measured; default 600)")
    p.add_argument("--otcfm-nfe", type=int, default=100, help="assumed dopri5 evaluations per OT-CFM sample")
    p.add_argument("--lam", type=float, default=1.0, help="λ of the generation (default 1; inf counts m = n)")
    args = p.parse_args()

    digits = yaml.safe_load((ROOT / "examples/reproduce/digits_edm.yaml").read_text())
    f_digits = forward_flops(digits["model"]["network"], (1, 8, 8))
    cpu_flops = args.cpu_train_rate * 3 * f_digits  # FLOP/s of one CPU core in training
    print(f"digits small U-Net: {f_digits / 1e6:.2f} MFLOP per forward pass; measured {args.cpu_train_rate:g} "
          f"training images/CPU-s -> {cpu_flops / 1e9:.2f} GFLOP/s per core")
    print("| config | forward GFLOP/image | images trained | samples drawn (m + n_eval) | NFE/sample | "
          "work (PFLOP) | CPU-core days at the digits rate |")
    print("|---|---|---|---|---|---|---|")
    for name in PAPER:
        cfg = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
        model, loop = cfg["model"], cfg["loop"]
        n = int(cfg["data"]["n"])
        m = n if math.isinf(args.lam) else math.floor(args.lam * n)
        drawn = m + int(loop.get("n_eval") or n)
        trained = int(model["train"]["finetune_samples"])
        f = forward_flops(model["network"], event_shape(cfg["data"]))
        k = nfe(model, args.otcfm_nfe)
        work = f * (3 * trained + k * drawn)
        days = work / cpu_flops / 86400
        print(f"| {name} | {f / 1e9:.2f} | {trained:,} | {drawn:,} | {k}{' (assumed)' if model['name'] == 'otcfm' else ''} "
              f"| {work / 1e15:.1f} | {days:.1f} |")


if __name__ == "__main__":
    main()
