"""GPU check: one CIFAR-10-shaped generation of the paper's image experiments, end to end.

On a machine with CUDA this runs the generation loop for generation 0 and one retraining
generation (λ = 1) with a network of the paper's size and random weights (EDM's DDPM++,
55.7 M parameters, by default), on 32×32 random images (or a folder of images), with a small
training budget, ``--n-eval`` samples per generation and FID on Inception features (random
Inception weights when the real file is absent, so the cost is right even if the number is
meaningless). It prints training images/s, sampling images/s, peak GPU memory and the time
per generation, and with ``--json`` writes them to a file. Without CUDA it says so and exits 0.

    .venv/bin/python benchmarks/gpu_check.py                              # EDM, 10 k samples
    .venv/bin/python benchmarks/gpu_check.py --family otcfm --n-eval 2000
    .venv/bin/python benchmarks/gpu_check.py --images data/cifar-png --json gpu.json
    .venv/bin/python benchmarks/gpu_check.py --paper-generation            # one paper generation, timed
    .venv/bin/python benchmarks/gpu_check.py --paper-generation --smoke    # the same at toy size (CPU)

``--paper-generation`` times one generation of the paper's image runs at full size: the
previous generation's network (``--checkpoint``, a genloop generation folder or a public EDM
checkpoint; random weights when none is given) draws 50 k synthetic images, is fine-tuned for
0.05 M images on 50 k real + 50 k synthetic (λ = 1), and is evaluated with FID and
precision / recall / density / coverage (k = 3) on Inception features of 50 k samples against
the 50 k real images (``loop.eval_samples: reuse``: the evaluation samples are the head of the
next synthetic set, as in the paper's recipes). Sizes follow ``--n``, ``--n-eval`` and
``--train-samples`` when given; ``--smoke`` shrinks everything so that it runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES: dict[str, dict[str, Any]] = {
    "edm": {"network": {"kind": "songunet", "preset": "edm-cifar10-uncond-vp"}, "num_steps": 18},
    "otcfm": {"network": {"kind": "adm", "preset": "otcfm-cifar10"}, "solver": "dopri5", "rtol": 1e-5, "atol": 1e-5},
    "ddpm": {"network": {"kind": "ddpm", "preset": "ddpm-cifar10"}, "sample_steps": 100, "skip": "quadratic"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=sorted(FAMILIES), default="edm")
    p.add_argument("--n", type=int, default=10_000, help="real training images (default 10000)")
    p.add_argument("--n-eval", type=int, default=10_000, help="samples per generation for FID (default 10000)")
    p.add_argument("--train-samples", type=int, default=20_480, help="images seen per generation (default 20480)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--sample-batch-size", type=int, default=1000)
    p.add_argument("--images", help="a folder of images to use instead of random ones (resized to 32x32)")
    p.add_argument("--inception", help="FID Inception weights file (default: the usual lookup, else random weights)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network for training and sampling")
    p.add_argument("--sample-precision", choices=["float32", "bfloat16"], default="float32",
                   help="network evaluations when sampling (train.sample_precision)")
    p.add_argument("--json", help="write the measurements to this file")
    p.add_argument("--smoke", action="store_true",
                   help="a toy-size run that also works on a CPU (checks the script, measures nothing useful)")
    p.add_argument("--paper-generation", action="store_true",
                   help="one full-size generation of the paper (50 k images, 0.05 M fine-tune, FID + P/R/D/C)")
    p.add_argument("--checkpoint", help="--paper-generation: the previous generation's network (default: random weights)")
    args = p.parse_args(argv)
    given = {a for a in ("n", "n_eval", "train_samples") if getattr(args, a) != p.get_default(a)}
    if args.paper_generation:
        for name, value in (("n", 50_000), ("n_eval", 50_000), ("train_samples", 50_000)):
            if name not in given:
                setattr(args, name, value)
    if args.smoke:
        args.n, args.n_eval, args.train_samples, args.batch_size, args.sample_batch_size = 64, 32, 64, 16, 64
    if args.checkpoint and not args.paper_generation:
        p.error("--checkpoint goes with --paper-generation")
    return args


def _family_options(args: argparse.Namespace) -> dict[str, Any]:
    """The family's options (FAMILIES), shrunk to a toy network and sampler with ``--smoke``."""
    opts = dict(FAMILIES[args.family])
    if args.smoke:
        opts["network"] = {**opts["network"], "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
                           "attn_resolutions": [16]}
        opts.update({"edm": {"num_steps": 2}, "ddpm": {"sample_steps": 2}, "otcfm": {"solver": "euler", "steps": 2}}[args.family])
    return opts


def _train_options(args: argparse.Namespace, cuda: bool, **extra: Any) -> dict[str, Any]:
    """The training and sampling options both modes share, plus ``extra``."""
    return {"samples": args.train_samples, "batch_size": args.batch_size, "ema_halflife_samples": 500_000,
            "device": "cuda" if cuda else "cpu", "carry_over": ["ema_as_weights"], "compile": args.compile,
            "channels_last": True, "sample_precision": args.sample_precision, "sample_compile": args.compile, **extra}


def _real_images(args: argparse.Namespace) -> np.ndarray:
    if args.images:
        from genloop.data import make_data

        return make_data("image_folder", path=args.images, resolution=32, max_images=args.n).load()[: args.n]
    rng = np.random.default_rng(0)
    return np.tanh(rng.normal(size=(args.n, 3, 32, 32))).astype(np.float32)


def _inception_weights(args: argparse.Namespace, tmp: Path) -> tuple[str, bool]:
    """The Inception weights file, or a file of random weights (second item True)."""
    import torch

    from genloop.errors import ConfigError
    from genloop.metrics.features.inception import FIDInceptionV3, find_weights

    try:
        return str(find_weights(args.inception)), False
    except ConfigError:
        from genloop.models.neural.networks import init_parameters_

        net = FIDInceptionV3()
        g = torch.Generator().manual_seed(0)
        init_parameters_(net, g, others="normal")
        with torch.no_grad():  # He init keeps random ReLU features from vanishing over 90 layers
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
        path = tmp / "random-inception.pth"
        torch.save(net.state_dict(), path)
        return str(path), True


def _random_generation(model: Any, event_shape: tuple[int, ...], folder: Path) -> str:
    """Save ``model`` with freshly initialised (random) weights as a genloop generation folder."""
    import torch

    from genloop.models.io import save_model

    net = model.build_net(event_shape, torch.Generator().manual_seed(0))
    model.net_, model.ema_ = net.eval(), None
    model.ema_ = model.build_net(event_shape, torch.Generator().manual_seed(0)).eval()
    model.optimizer_state_ = None
    model.shift_, model.scale_ = np.zeros((1, 1, 1)), np.ones((1, 1, 1))
    model.samples_seen_, model.losses_, model.event_shape_ = 0, [], event_shape
    save_model(model, folder)
    return str(folder)


def paper_generation(args: argparse.Namespace) -> dict[str, Any]:
    """Time one paper generation (see the module docstring); returns the measurements."""
    import torch

    from genloop.loop.engine import run_loop
    from genloop.models import make_model

    cuda = torch.cuda.is_available()
    real = _real_images(args)
    with tempfile.TemporaryDirectory() as tmp:
        weights, random_inception = _inception_weights(args, Path(tmp))
        opts = _family_options(args)
        train = _train_options(args, cuda, finetune_samples=args.train_samples, lr=1e-4)
        init = args.checkpoint or _random_generation(make_model(args.family, **opts, train=train),
                                                     tuple(real.shape[1:]), Path(tmp) / "generation-0")
        model = make_model(args.family, **opts, sample_batch_size=args.sample_batch_size, init=init, train=train)
        feats = {"features": "inception", "weights_path": weights}
        metrics = [{"name": "fid", **feats, "allow_rank_deficient": args.smoke}, {"name": "prdc", **feats, "k": 3}]
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        records = []
        t0 = time.perf_counter()
        for rec in run_loop(model, real, lam=1.0, generations=1, seed=0, n_eval=args.n_eval, metrics=metrics,
                            train_generation_0=False, eval_samples="reuse"):
            records.append(rec)
            print(f"generation {rec.generation}: {rec.seconds:.1f} s (sample {rec.timings['sample']:.1f} s, fit "
                  f"{rec.timings['fit']:.1f} s, eval {rec.timings['eval']:.1f} s)  "
                  + "  ".join(f"{k} {v:.4g}" for k, v in rec.metrics.items() if not k.endswith("_se")), flush=True)
        total = time.perf_counter() - t0
    # one paper generation in the steady state of a run: draw the 50 k synthetic images (which
    # are also the evaluation samples), compute the metrics, fine-tune; generation 0's record
    # holds the draw and the metrics, generation 1's the fine-tune (its own evaluation draws
    # fresh samples: the last generation has no successor)
    seconds = records[0].seconds + records[1].timings["fit"]
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke run)",
        "family": args.family, "n_real": args.n, "n_eval": args.n_eval, "finetune_images": args.train_samples,
        "seconds_paper_generation": seconds, "seconds_total": total,
        "timings": {r.generation: r.timings for r in records},
        "metrics": {r.generation: r.metrics for r in records},
        "random_weights": args.checkpoint is None, "random_inception_weights": random_inception,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("gpu_check: needs a CUDA GPU; none is available here, so nothing was run.")
        return 0
    if args.paper_generation:
        out = paper_generation(args)
        print(f"{out['device']}: one paper generation of {args.family} in {out['seconds_paper_generation']:.1f} s "
              f"({args.n} real, {args.n} synthetic, {args.train_samples} images fine-tuned, FID + P/R/D/C on "
              f"{args.n_eval} samples" + ("; random network weights" if out["random_weights"] else "")
              + ("; random Inception weights" if out["random_inception_weights"] else "") + ")")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        return 0
    cuda = torch.cuda.is_available()
    from genloop.loop.engine import run_loop
    from genloop.models import make_model

    device = torch.cuda.get_device_name(0) if cuda else "cpu (smoke run)"
    real = _real_images(args)
    with tempfile.TemporaryDirectory() as tmp:
        weights, random_inception = _inception_weights(args, Path(tmp))
        opts = _family_options(args)
        model = make_model(
            args.family, **opts, sample_batch_size=args.sample_batch_size,
            train=_train_options(args, cuda, lr=2e-4, warmup_samples=0, ema_rampup_ratio=0.05),
        )
        params = None
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        records = []
        t_start = time.perf_counter()
        for rec in run_loop(model, real, lam=1.0, generations=1, seed=0, n_eval=args.n_eval,
                            metrics=[{"name": "fid", "features": "inception", "weights_path": weights,
                                     "allow_rank_deficient": args.smoke}]):
            if params is None:
                params = sum(p.numel() for p in rec.model.net_.parameters())
            records.append(rec)
            print(f"generation {rec.generation}: {rec.seconds:.1f} s (fit {rec.timings['fit']:.1f} s, "
                  f"sample {rec.timings['sample']:.1f} s, eval {rec.timings['eval']:.1f} s)  FID {rec.metrics['fid']:.2f}",
                  flush=True)
        total = time.perf_counter() - t_start
    last = records[-1]
    n_synth = last.n_synthetic
    out = {
        "device": device,
        "family": args.family,
        "parameters": params,
        "train_images_per_s": args.train_samples / last.timings["fit"],
        "sample_images_per_s": n_synth / last.timings["sample"] if last.timings["sample"] > 0 else None,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "seconds_per_generation": last.seconds,
        "seconds_total": total,
        "n_eval": args.n_eval,
        "fid": {r.generation: r.metrics["fid"] for r in records},
        "random_inception_weights": random_inception,
        "nfe_per_sample": getattr(last.model, "last_nfe_", None),
    }
    print(f"{device}: {args.family} with {params / 1e6:.1f} M parameters")
    print(f"  training   {out['train_images_per_s']:.0f} images/s (batch {args.batch_size})")
    if out["sample_images_per_s"] is not None:
        print(f"  sampling   {out['sample_images_per_s']:.0f} images/s ({out['nfe_per_sample']} network evaluations per image)")
    if cuda:
        print(f"  peak GPU memory {out['peak_gpu_memory_gib']:.2f} GiB")
    print(f"  one generation {out['seconds_per_generation']:.1f} s ({args.train_samples} images seen, "
          f"{n_synth} synthetic + {args.n_eval} evaluation samples)"
          + ("; FID with random Inception weights" if random_inception else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
