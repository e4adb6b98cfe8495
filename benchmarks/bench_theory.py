"""Wall time of ``genloop theory CONFIG`` on every example config (a fresh process each).

Each config runs as ``genloop theory`` does for a user: a new Python process (imports
included), two threads (``OMP_NUM_THREADS=2``, the CI machine's cores). Configs whose model the
theory does not cover report the time to the error message (exit code 2). The target is
< 10 s per config.

    .venv/bin/python benchmarks/bench_theory.py [--quick] [--repeats 1]

``--quick`` times only the configs the theory supports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def time_config(path: Path, repeats: int) -> tuple[float, int, str]:
    """(best wall seconds over ``repeats``, exit code, the line saying how long the theory took)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    best, rc, tail = float("inf"), 0, ""
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "genloop.cli", "theory", str(path)], capture_output=True,
                              text=True, env=env, cwd=ROOT)
        best = min(best, time.perf_counter() - start)
        rc = proc.returncode
        lines = (proc.stdout or proc.stderr).strip().splitlines()
        tail = lines[-1] if lines else ""
    return best, rc, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only configs whose model the theory supports")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import yaml

    from genloop.theory.report import THEORY_MODELS

    configs = sorted((ROOT / "examples").glob("*.yaml"))
    print(f"{'config':<28} {'model':<10} {'wall s':>7} {'rc':>3}  result")
    slow = 0
    for path in configs:
        model = (yaml.safe_load(path.read_text()) or {}).get("model", {}).get("name", "?")
        supported = model in THEORY_MODELS
        if args.quick and not supported:
            continue
        seconds, rc, tail = time_config(path, args.repeats)
        slow += int(supported and seconds > TARGET_S)
        print(f"{path.name:<28} {model:<10} {seconds:7.2f} {rc:>3}  {tail[:70]}", flush=True)
    print(f"\n{slow} supported config(s) over the {TARGET_S:.0f} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
