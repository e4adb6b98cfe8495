"""Regenerate the stability probe's validation tables of docs/theory.md ("The stability probe").

``--part exact``: families with an exact rate. For each case the probe (its defaults: 3
generations; 8 replicates x 3 directions in parameter space, 8 x 2 in sample space) is run from several seeds and compared with the
exact rate: the Gaussian's m/(n+m) (docs/theory.md §2), the GMM learner's ρ(J_k) (k EM steps,
``tol: 0``, started at θ*; :mod:`genloop.theory.em`) and the fixed-bandwidth KDE's m/(n+m)
(module docstring of :mod:`genloop.theory.probe`). Prints mean rate, its spread over seeds,
the mean jackknife standard error, how often the 95 % interval holds the exact rate, and the
cost.

``--part neural``: neural families on two moons (the examples' configs, shrunk): the probe
from 3 generations (sample-space defaults: 8 replicates x 2 directions) next to what 10
generations of the real loop show: the W2 distance to held-out real data at generations 0 and 10 and the ratio
d_10/d_1 of the distance between two paired runs (same streams, one perturbed at generation
1) after 10 generations.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_validation.py --part exact
    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_validation.py --part neural
    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_validation.py --part neural \
        --families flow --lambdas 0.1,inf --retrain scratch --samples 16000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from genloop.data import make_data
from genloop.loop import run_loop
from genloop.loop.engine import LoopState
from genloop.models import make_model
from genloop.rng import stage_rng
from genloop.theory.probe import (
    MomentFeatures,
    SmoothField,
    _rate_with_interval,
    perturbed_copy,
    probe_stability,
)

NEURAL = {
    "flow": {"name": "flow", "transforms": 4, "hidden_features": [32, 32],
             "train": {"samples": 40000, "finetune_samples": 8000, "batch_size": 256, "lr": 0.002}},
    "otcfm": {"name": "otcfm", "network": {"hidden": 64, "depth": 3}, "solver": "midpoint", "steps": 20,
              "train": {"samples": 40000, "finetune_samples": 8000, "batch_size": 128, "lr": 0.002}},
    "ddpm": {"name": "ddpm", "network": {"hidden": 64, "depth": 3}, "beta_schedule": "cosine", "sample_steps": 20,
             "train": {"samples": 40000, "finetune_samples": 8000, "batch_size": 256, "lr": 0.002}},
}


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.concatenate([rng.normal(-1.5, 0.6, n // 2), rng.normal(1.0, 0.8, n - n // 2)])[:, None]


def _gmm_at_theta_star(density, theta: np.ndarray, k: int):
    lw, mu, L = (a.detach().numpy() for a in density.unpack(torch.as_tensor(theta)))
    cov = np.einsum("kij,klj->kil", L, L)
    model = make_model("gmm", n_components=density.K, tol=0.0, max_iter=k)
    prec_chol = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    model.set_state({"weights": np.exp(lw), "means": mu, "covariances": cov, "precisions_cholesky": prec_chol},
                    {"converged": True, "n_iter": 0, "lower_bound": 0.0})
    return model


def exact_cases() -> list[tuple[str, object, np.ndarray, float, object, float]]:
    """(name, model, real, λ, start, exact rate)."""
    from genloop.theory.em import em_learner_map, em_step_derivatives
    from genloop.theory.jacobian import GMMDensity

    rng = np.random.default_rng(5)
    cases = []
    g = rng.standard_normal((1000, 2)) @ np.array([[1.0, 0.5], [0.0, 2.0]])
    for lam in (0.5, 1.0, 3.0):
        m = math.floor(lam * 1000)
        cases.append(("gaussian d=2 n=1000", make_model("gaussian"), g, lam, None, m / (1000 + m)))
    x = _mixture(rng, 1000)
    density = GMMDensity(2, 1)
    theta = density.fit(x)
    deriv = em_step_derivatives(density, theta, x)
    for lam in (0.5, 2.0):
        m = math.floor(lam * 1000)
        Jk = em_learner_map(deriv, m / 1000, [2], m)[2].J
        cases.append(("gmm(2) 1-d n=1000 k=2", make_model("gmm", n_components=2, tol=0.0, max_iter=2), x, lam,
                      _gmm_at_theta_star(density, theta.numpy(), 2), float(np.max(np.abs(np.linalg.eigvals(Jk))))))
    moons = make_data("two_moons", noise=0.05).sample(300, rng=rng)
    for lam in (0.5, 2.0):
        m = math.floor(lam * 300)
        cases.append(("kde h=0.1 two moons n=300", make_model("kde", bandwidth=0.1), moons, lam, None, m / (300 + m)))
    return cases


def part_exact(seeds: int, match: str = "") -> None:
    print("| case | λ | exact | estimator | probe mean | sd over seeds | mean se | interval holds exact | fits | s/probe |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, model, real, lam, start, exact in exact_cases():
        if match not in name:
            continue
        rates, ses, hold, t0 = [], [], 0, time.perf_counter()
        for s in range(seeds):
            r = probe_stability(model, real, lam=lam, seed=s, start=start)  # type: ignore[arg-type]
            rates.append(r.rate)
            ses.append(r.se)
            hold += int(r.ci_low <= exact <= r.ci_high)  # type: ignore[operator]
        sec = (time.perf_counter() - t0) / seeds
        print(f"| {name} | {lam:g} | {exact:.3f} | {r.estimator} ({r.space}) | {np.mean(rates):.3f} | {np.std(rates, ddof=1):.3f} | "
              f"{np.mean(ses):.3f} | {hold}/{seeds} | {r.fits} | {sec:.2f} |", flush=True)


def _w2(x: np.ndarray, y: np.ndarray) -> float:
    import ot

    M = ot.dist(x, y)
    return float(math.sqrt(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), M)))


def part_neural(families: list[str], lambdas: list[float], generations: int, retrain: str = "finetune",
                samples: int | None = None) -> None:
    source = make_data("two_moons", noise=0.05)
    real = source.sample(500, rng=stage_rng(0, 0, "data"))
    heldout = source.sample(500, rng=stage_rng(1, 0, "data"))
    print(f"| family | retrain | λ | probe rate (3 generations) | 95% interval | predicted | RMS rate | probe fits | "
          f"probe s | W2 gen 0 → {generations} | paired d_{generations}/d_1 | observed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for fam in families:
        opts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in NEURAL[fam].items()}
        name = opts.pop("name")
        if samples is not None:  # training budget of every generation (for retrain: scratch)
            opts["train"]["samples"] = samples
        model = make_model(name, **opts)
        start = next(iter(run_loop(model, real, lam=0.0, generations=0, seed=0))).model
        for lam in lambdas:
            t0 = time.perf_counter()
            pr = probe_stability(model, real, lam=lam, seed=0, start=start, generations=3, n_samples=2000,
                                 retrain=retrain)
            psec = time.perf_counter() - t0
            # 10 generations of the real loop, and one perturbed twin under the same streams
            ref = list(run_loop(model, real, lam=lam, generations=generations, seed=0, retrain=retrain,  # type: ignore[arg-type]
                                resume=LoopState(0, start)))
            field = SmoothField.random(real, rng=np.random.default_rng(123))
            twin = list(run_loop(model, real, lam=lam, generations=generations, seed=0, retrain=retrain,  # type: ignore[arg-type]
                                 resume=LoopState(0, perturbed_copy(start, field, pr.delta))))
            feats = MomentFeatures.random(real, rng=np.random.default_rng(7))

            def mom(mdl, feats: MomentFeatures = feats) -> np.ndarray:
                return feats(np.asarray(mdl.sample(2000, rng=np.random.default_rng(11)), np.float64)).mean(0)

            d = [float(np.linalg.norm(mom(a.model) - mom(b.model))) for a, b in zip(ref, twin)]
            w2_0 = _w2(np.asarray(start.sample(500, rng=np.random.default_rng(3)), np.float64), heldout)
            w2_T = _w2(np.asarray(ref[-1].model.sample(500, rng=np.random.default_rng(3)), np.float64), heldout)
            contracts = d[-1] / d[0] < 0.5
            observed = ("stable: pulled back" if contracts else "not contracting") + f", W2 ×{w2_T / w2_0:.2f}"
            dmd = _rate_with_interval(pr.differences, 0.95, 1e-2, "rms")
            print(f"| {fam} | {retrain} | {lam:g} | {pr.rate:.3f} | [{pr.ci_low:.3f}, {pr.ci_high:.3f}] | "
                  f"{pr.verdict.split(':')[0]} | {dmd[0]:.3f} [{dmd[2]:.3f}, {dmd[3]:.3f}] | {pr.fits} | {psec:.0f} | "
                  f"{w2_0:.3f} → {w2_T:.3f} | "
                  f"{d[-1] / d[0]:.3f} | {observed} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["exact", "neural"], required=True)
    p.add_argument("--seeds", type=int, default=10, help="probes per exact case")
    p.add_argument("--match", default="", help="only the exact cases whose name contains this")
    p.add_argument("--families", default="flow,otcfm,ddpm")
    p.add_argument("--lambdas", default="0.5,inf")
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--retrain", choices=["finetune", "scratch"], default="finetune")
    p.add_argument("--samples", type=int, default=None, help="training samples per generation (scratch)")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.part == "exact":
        part_exact(a.seeds, a.match)
    else:
        part_neural(a.families.split(","), [float(v) for v in a.lambdas.split(",")], a.generations, a.retrain,
                    a.samples)


if __name__ == "__main__":
    main()
