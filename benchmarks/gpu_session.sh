#!/usr/bin/env bash
# One prepared GPU session for issue-sized checks: every GPU figure the README quotes, in one
# script with a time limit per step, its results as JSON under $OUT (default ./gpu-out).
#
#   bash benchmarks/gpu_session.sh             # on the GPU machine: the ratios and P/R/D/C (one command)
#   PART=paper bash benchmarks/gpu_session.sh  # then one paper generation (a second command)
#   SMOKE=1 bash benchmarks/gpu_session.sh; SMOKE=1 PART=paper bash ...   # toy sizes: checks it on a CPU
#
# It expects genloop importable from src/ (PYTHONPATH=src; pydantic, POT and zuko installed or
# on PYTHONPATH) and prints: trainer / bare loop and sampler / bare inference (float32 and
# bfloat16 sampling), P/R/D/C at N = 50,000, d = 2048 against its all-pairs products, and one
# paper generation (benchmarks/gpu_check.py --paper-generation). Each part's limits fit one
# 10-minute device command (5 minutes, then 9); not yet run on a GPU.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
step() {  # step SECONDS NAME COMMAND...: run with a limit, keep going on failure
  local limit=$1 name=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? after $(( $(date +%s) - t0 )) s"; tail -n 6 "$OUT/$name.log"
}
if [ "${SMOKE:-0}" = 1 ]; then
  TOY="--toy --quick"; N=2000; D=64; GEN="--smoke"
else
  TOY=""; N=50000; D=2048; GEN="--paper-generation"
fi
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
if [ "${PART:-ratios}" = paper ]; then
  step 540 paper_generation $PY benchmarks/gpu_check.py --family edm $GEN --json "$OUT/paper_generation.json"
  exit 0
fi
step 120 trainer_fp32 $PY benchmarks/bench_trainer_gpu.py $TOY --json "$OUT/trainer_fp32.json"
step 90 trainer_bf16 $PY benchmarks/bench_trainer_gpu.py $TOY --sample-precision bfloat16 --json "$OUT/trainer_bf16.json"
step 90 prdc $PY - "$N" "$D" "$OUT/prdc.json" <<'PY'
import json, sys, time
import numpy as np, torch
from genloop.metrics.prdc import prdc
n, d, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dev = "cuda" if torch.cuda.is_available() else "cpu"
rng = np.random.default_rng(0)
real = rng.normal(size=(n, d)).astype(np.float32)
fake = (rng.normal(size=(n, d)) + 0.05).astype(np.float32)
def sync():
    if dev == "cuda":
        torch.cuda.synchronize()
prdc(generated=fake[:2000], real=real[:2000], device=dev)  # warm-up
res = {}
for dtype in ("auto", "bfloat16", "float32"):
    sync(); t0 = time.perf_counter()
    vals = prdc(generated=fake, real=real, device=dev, dtype=dtype)
    sync(); res[f"prdc_s_{dtype}"] = time.perf_counter() - t0
res["values"] = {k: v for k, v in vals.items() if not k.endswith("_se")}
# the all-pairs products an exact method computes: real x real, fake x fake, fake x real
R, F = torch.as_tensor(real, device=dev), torch.as_tensor(fake, device=dev)
for name, dt, tf32 in (("float32", torch.float32, False), ("tf32", torch.float32, True), ("bfloat16", torch.bfloat16, False)):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = R.to(dt), F.to(dt)
    for _ in range(2):
        sync(); t0 = time.perf_counter()
        for x, y in ((a, a), (b, b), (b, a)):
            for i in range(0, n, 8192):
                x[i:i + 8192] @ y.T
        sync(); res[f"products_s_{name}"] = time.perf_counter() - t0
res["ratio_auto_to_float32_products"] = res["prdc_s_auto"] / res["products_s_float32"]
print(json.dumps(res, indent=1)); open(out, "w").write(json.dumps(res, indent=1))
PY
