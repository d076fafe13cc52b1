#!/usr/bin/env bash
# The speed table on a CUDA GPU: every pair, batch 1 and 8, float32 / bf16 (eager, with what the token
# selection costs), torch.compile, plus a training step. Not run in CI; prepared for a machine with a GPU.
#   bash scripts/bench_gpu.sh [OUT_DIR]          (OUT_DIR default: outputs/bench_gpu)
# Writes one markdown table per setting into OUT_DIR and the device description into OUT_DIR/device.txt.
set -euo pipefail
OUT=${1:-outputs/bench_gpu}
PY=${PYTHON:-python}
PAIRS=${PAIRS:-mixste,motionbert,motionagformer,mhformer,mixste-tpc}
mkdir -p "$OUT"
"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
PYEOF
for batch in 1 8; do
  for precision in float32 bf16; do
    "$PY" -m hotpose.bench speed --device cuda --pairs "$PAIRS" --batch "$batch" --precision "$precision" \
      --rounds 2 --calls 7 --warmup 3 --selection-cost --no-progress | tee "$OUT/speed_b${batch}_${precision}.md"
  done
done
# torch.compile of each model (first calls compile; the warm-up absorbs them)
"$PY" -m hotpose.bench speed --device cuda --pairs "$PAIRS" --batch 8 --precision bf16 --compile \
  --rounds 2 --calls 7 --warmup 3 --no-progress | tee "$OUT/speed_b8_bf16_compile.md"
# one training step (forward, loss, backward, AdamW), float32 and bf16 autocast
for precision in float32 bf16; do
  "$PY" -m hotpose.bench speed --device cuda --pairs mixste --batch 4 --mode train --precision "$precision" \
    --rounds 2 --calls 7 --warmup 3 --no-progress | tee "$OUT/train_b4_${precision}.md"
done
