"""How many seeds and generations the verdict rule needs to call a known collapse and a known
stable λ, and how often the theory-aware prediction check confirms a true prediction and
refutes a false one, measured on Monte Carlo of the real loop (docs/theory.md, "Verdict power").

The loop: the registered ``gaussian`` model (MLE) on n = 100 (``--n``) draws of N(0, 1), replace scheme.
Theory: λ = ∞ collapses (E[σ_t²] = (1 − 1/n)^t σ_0², the mean a random walk); a finite λ
contracts at m/(n+m) per generation to a stationary law. Recorded per generation: ``w2``, the
exact W₂ distance between the fitted Gaussian and the truth, W₂² = μ² + (σ − 1)² (the quantity
the ``gaussian_w2`` metric records), and ``std_ratio`` = σ_t (the fitted sd over the true one; no
evaluation noise). For each (seeds k, generations G) the experiment is repeated ``--reps`` times
with disjoint seeds.

``--table verdict`` (the theory-free rule, :func:`genloop.results.verdicts`, λ ∈ {0, 0.5, ∞}):
the fraction of experiments whose verdict is "collapsing" / "drifting" (λ = ∞) and "stable" /
"uncertain" (λ = 0.5).

``--table check`` (:func:`genloop.report.prediction.prediction_checks`, λ ∈ {0, 0.5, 1, ∞}):
per λ, the fraction of experiments in which the theory-free verdict is right (λ = ∞:
collapsing or drifting; finite λ: stable), in which the check *confirms the true prediction*
(value test on std_ratio plus change test on w2; and the change test alone, as for a family
whose theory gives only a rate, where a stable λ can at best be "consistent"), refutes the
true prediction (its false-alarm rate), and in which it *refutes* — or wrongly confirms — *a
false one*: λ = ∞ fed the λ = 1
prediction (stable, E[σ_T²]/σ_0² of λ = 1), a finite λ fed the λ = ∞ prediction (collapse,
E[log σ_T/σ_0] of λ = ∞).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/verdict_power.py --reps 40
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/verdict_power.py --table check --reps 100 \\
        --seeds 3 5 8 --generations 10 40
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from genloop.loop import run_loop
from genloop.models import make_model
from genloop.report.prediction import Prediction, gaussian_pivot, gaussian_value, prediction_checks
from genloop.results import verdicts

N = 100


def _w2(model) -> float:  # noqa: ANN001 - a fitted gaussian model
    mu, sd = float(model.mean_[0]), math.sqrt(float(model.covariance_[0, 0]))
    return math.sqrt(mu * mu + (sd - 1.0) ** 2)


def table(seeds: list[int], generations: int, lams: tuple[float, ...], n: int = N) -> pd.DataFrame:
    """The tidy table of one experiment: every seed and λ, metrics ``w2`` and ``std_ratio``."""
    rows = []
    for seed in seeds:
        real = np.random.default_rng(10_000 + seed).standard_normal((n, 1))
        for lam in lams:
            for rec in run_loop(make_model("gaussian"), real, lam=lam, generations=generations, seed=seed):
                sd = math.sqrt(float(rec.model.covariance_[0, 0]))
                for metric, value in (("w2", _w2(rec.model)), ("std_ratio", sd)):
                    rows.append({"cell": "", "lam": lam, "seed": seed, "generation": rec.generation,
                                 "metric": metric, "value": value})
    return pd.DataFrame(rows)


def experiment(seeds: list[int], generations: int, n: int = N) -> dict[float, str]:
    return {v.lam: v.verdict for v in verdicts(table(seeds, generations, (0.0, 0.5, math.inf), n), "w2")}


def true_prediction(lam: float, generations: int, *, value: bool, n: int = N, exact_pivot: bool = True) -> Prediction:
    """The theory's prediction at λ for this loop (with the exact std_ratio value when ``value``; its
    interval from the exact law's pivot when ``exact_pivot``, else Student's t)."""
    if lam == 0:
        return Prediction(lam=lam, kind="reference")
    kind = "collapse" if math.isinf(lam) else "stable"
    m = n if math.isinf(lam) else math.floor(lam * n)
    rate = None if math.isinf(lam) else m / (n + m)
    if not value:
        return Prediction(lam=lam, kind=kind, rate=rate)
    transform, v, alt = gaussian_value(lam, n=n, generations=generations, estimator="mle")  # type: ignore[misc]
    pivot = gaussian_pivot(lam, n=n, generations=generations, estimator="mle", transform=transform, value=v)
    return Prediction(lam=lam, kind=kind, rate=rate, metric="std_ratio", transform=transform, value=v,
                      alternative=alt, pivot=pivot if exact_pivot else None)


def false_prediction(lam: float, generations: int, n: int = N, exact_pivot: bool = True) -> Prediction:
    """λ = ∞ fed λ = 1's prediction, a finite λ fed λ = ∞'s (the λ stays the run's)."""
    other = true_prediction(1.0 if math.isinf(lam) else math.inf, generations, value=True, n=n,
                            exact_pivot=exact_pivot)
    return Prediction(lam=lam, kind=other.kind, rate=other.rate, metric=other.metric, transform=other.transform,
                      value=other.value, alternative=other.alternative, pivot=other.pivot)


def check_calls(seeds: list[int], generations: int, lams: tuple[float, ...], n: int = N,
                exact_pivot: bool = True) -> dict[float, dict[str, bool]]:
    """Per λ: whether the verdict is right, the check confirms the truth (value+change; change
    only) and refutes the false prediction (value+change; change only)."""
    data = table(seeds, generations, (0.0, *lams), n)
    truth = {lam: true_prediction(lam, generations, value=True, n=n, exact_pivot=exact_pivot) for lam in (0.0, *lams)}
    rate_only = {lam: true_prediction(lam, generations, value=False, n=n) for lam in (0.0, *lams)}
    wrong = {0.0: truth[0.0], **{lam: false_prediction(lam, generations, n, exact_pivot) for lam in lams}}
    wrong_rate = {lam: Prediction(lam=lam, kind=p.kind, rate=p.rate) for lam, p in wrong.items()}
    outcome = {name: {c.lam: c.outcome for c in prediction_checks(data, preds, "w2")}
               for name, preds in (("true", truth), ("true_rate", rate_only), ("false", wrong),
                                   ("false_rate", wrong_rate))}
    verdict = {v.lam: v.verdict for v in verdicts(data, "w2")}
    return {lam: {"verdict right": verdict[lam] in (("collapsing", "drifting") if math.isinf(lam) else ("stable",)),
                  "confirms": outcome["true"][lam] == "confirmed",
                  "change only: confirmed or consistent": outcome["true_rate"][lam] in ("confirmed", "consistent"),
                  "true refuted": outcome["true"][lam] == "refuted",
                  "refutes false": outcome["false"][lam] == "refuted",
                  "confirms false": outcome["false"][lam] == "confirmed",
                  "refutes false (change only)": outcome["false_rate"][lam] == "refuted"}
            for lam in lams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=("verdict", "check"), default="verdict")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 8, 16])
    parser.add_argument("--generations", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--lams", type=float, nargs="+", default=[0.5, 1.0, math.inf])
    parser.add_argument("--n", type=int, default=N, help="real samples per generation")
    parser.add_argument("--t-interval", action="store_true",
                        help="value test with Student's t instead of the exact law's pivot (the old rule)")
    args = parser.parse_args()
    if args.table == "check":
        keys = ("verdict right", "confirms", "true refuted", "refutes false", "confirms false",
                "change only: confirmed or consistent", "refutes false (change only)")
        print("| seeds | generations | λ | " + " | ".join(keys) + " |")
        print("|---|---|---|" + "---|" * len(keys))
        for k in args.seeds:
            for G in args.generations:
                calls = [check_calls(list(range(r * k, (r + 1) * k)), G, tuple(args.lams), args.n, not args.t_interval)
                         for r in range(args.reps)]
                for lam in args.lams:
                    frac = [sum(c[lam][key] for c in calls) / args.reps for key in keys]
                    label = "∞" if math.isinf(lam) else f"{lam:g}"
                    print(f"| {k} | {G} | {label} | " + " | ".join(f"{f:.2f}" for f in frac) + " |", flush=True)
        return
    print("| seeds | generations | λ = ∞ called collapsing | λ = ∞ drifting | λ = 0.5 called stable | λ = 0.5 uncertain |")
    print("|---|---|---|---|---|---|")
    for k in args.seeds:
        for G in args.generations:
            calls = [experiment(list(range(r * k, (r + 1) * k)), G, args.n) for r in range(args.reps)]
            frac = {name: sum(c[lam] == name for c in calls) / args.reps
                    for lam, name in ((math.inf, "collapsing"), (0.5, "stable"))}
            drift = sum(c[math.inf] == "drifting" for c in calls) / args.reps
            unc = sum(c[0.5] == "uncertain" for c in calls) / args.reps
            print(f"| {k} | {G} | {frac['collapsing']:.2f} | {drift:.2f} | {frac['stable']:.2f} | {unc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
