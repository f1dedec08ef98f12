#!/usr/bin/env bash
# GPU checks for one lent machine (run from the repo root; logs go to ${OUT:-/tmp/out}). Pick a part:
#   bash bench/gpu.sh bench   bench/gpu.py part by part, each under its own timeout and log: training img/s
#                             (article + shipped model, fp32/bf16, NCHW/NHWC), evaluation of 10,000 and 50,000
#                             samples, one GPU generation actor (PNG 0/6, 60,000 samples), torch.compile, NCCL
#                             DDP over every GPU present (about 5 minutes on an H200, most of it compiling)
#   bash bench/gpu.sh nccl    `ganray train` under Ray Train with one GPU worker (NCCL), fp32 and bf16
#   bash bench/gpu.sh tune    bench/tune_asha.py with 8 trials sharing the GPU (tune.gpus_per_trial=0.125)
# Expects ganray's dependencies importable: bench/gpu_wheels.sh (run where pip reaches a registry) puts
# the ones a bare GPU image lacks in .whl/; carry .whl and install them to /tmp/site on PYTHONPATH first.
set -uo pipefail
part=${1:-bench}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RAY_TRAIN_V2_ENABLED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, ray, torch_fidelity; print('torch', torch.__version__, 'ray', ray.__version__, 'cuda', torch.cuda.is_available())"
case $part in
bench)
  # One part per process, so a part that runs long loses its own figures only (each logs its rows as it goes).
  for spec in "train 200" "evaluate 90" "generate 150 --gen-samples 60000" "compile 200" "ddp 200"; do
    set -- $spec
    timeout "$2" python3 bench/gpu.py --only "$1" "${@:3}" > "$OUT/gpu-$1.log" 2>&1; echo "bench/gpu.py $1 exit $?"
    grep -E "^part=|holds|MISSED|skipped" "$OUT/gpu-$1.log"
    cp bench/results.json "$OUT/results-$1.json" 2>/dev/null
  done
  ;;
nccl)
  common=(--set ray.use_gpu=true --set ray.num_workers=1 --set ray.cpus_per_worker=4 --set storage.runs_dir=/tmp/runs
          --set storage.cache_dir=/tmp/cache --set train.steps=2400 --set eval.every=1200)
  for amp in none bf16; do
    timeout 150 python3 -m ganray.cli train "${common[@]}" --set train.amp=$amp --set storage.run_name=gpu-$amp \
      > "$OUT/train-$amp.log" 2>&1; echo "train amp=$amp exit $?"
    grep -E "nccl|NCCL|backend" "$OUT/train-$amp.log" | head -3
    python3 - "$amp" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(f"/tmp/runs/gpu-{sys.argv[1]}/metrics.jsonl")]
rates = [l["img_per_s"] for l in lines][1:]
fid = [(l["step"], round(l["fid_domain"], 2)) for l in lines if "fid_domain" in l]
ev = [round(l["eval_seconds"], 2) for l in lines if "eval_seconds" in l]
print(f"amp={sys.argv[1]}: median img/s {statistics.median(rates):.0f}, fid_domain {fid}, eval s {ev}")
PY
  done
  ;;
tune)
  timeout 330 python3 bench/tune_asha.py --trials 8 --root /tmp/bench-tune \
    --set ray.use_gpu=true --set tune.gpus_per_trial=0.125 --set ray.cpus_per_worker=1 \
    --set train.steps=1200 --set eval.every=200 --set eval.num_samples=2000 --set storage.cache_dir=/tmp/cache \
    > "$OUT/tune_asha.log" 2>&1; echo "tune bench exit $?"
  grep -A8 "^sweep " "$OUT/tune_asha.log"
  cp /tmp/bench-tune/fifo/results.md "$OUT/fifo-results.md" 2>/dev/null
  cp /tmp/bench-tune/asha/results.md "$OUT/asha-results.md" 2>/dev/null
  ;;
*) echo "unknown part $part; use bench, nccl or tune" >&2; exit 2 ;;
esac
cp bench/results.json "$OUT/" 2>/dev/null
true
