"""Benchmark: the cost of running a grid on Ray instead of local processes.

The same 8-run grid (2 model families × 2 λ × 2 seeds, two moons, GMM / KDE, 20 generations)
runs under ``--executor local --jobs 2`` and ``--executor ray`` (a local Ray instance on this
machine's cores, started and stopped by the run, as ``genloop run`` does), one after the
other in one process; the script prints both wall times and their ratio, and checks that the
two result tables are identical. Ray's fixed cost (starting its processes, ~5–10 s here) is
part of what is measured: it is what a user pays on one machine.

    .venv/bin/python benchmarks/bench_ray_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from genloop.results import tidy
from genloop.sweep.experiment import plan_experiment, run_grid


def config(generations: int) -> dict:
    return {
        "data": {"name": "two_moons", "n": 1000, "noise": 0.05},
        "model": {"name": {"sweep": ["gmm", "kde"]}},
        "loop": {"generations": generations, "lambdas": [0.5, "inf"], "seeds": [0, 1]},
        "metrics": [{"name": "w2", "max_exact": 500}],
    }


def timed(doc: dict, executor: str, out: Path) -> float:
    start = time.perf_counter()
    run_grid(plan_experiment(doc), out, jobs=2, executor=executor)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 generations instead of 20")
    args = ap.parse_args()
    doc = config(5 if args.quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        local = timed(doc, "local", Path(tmp) / "local")
        ray = timed(doc, "ray", Path(tmp) / "ray")
        same = tidy(Path(tmp) / "local").equals(tidy(Path(tmp) / "ray"))
    print(f"8 runs: local --jobs 2 {local:.1f} s, ray {ray:.1f} s, ray / local = {ray / local:.2f}; "
          f"identical tables: {same}")


if __name__ == "__main__":
    main()
