#!/usr/bin/env bash
# GPU check of the deformable-attention kernel and the GPU cost of PAVE-Net (docs/BENCHMARKS.md).
# On a CUDA machine after `make setup`:
#   bash scripts/gpu_check.sh GOLDEN_DIR OFFICIAL_KEYS_TXT [OUT_DIR]
# 1. rebuilds torch-ms-deform-attn with its CUDA kernel if the installed build lacks it;
# 2. tools/gpu_check.py: kernel == PyTorch (and == the official outputs) on the golden case, on the GPU;
# 3. tools/benchmark.py at 800x1333: inference per backend and an AMP training step (1 clip), R50 F=3;
# 4. tools/benchmark.py --golden-train on the golden training case (GOLDEN_DIR/train_r50_f3_seed2026): the
#    training step's forward and backward per backend on the GPU, in float32 (TF32 off; each backend's total loss
#    must equal the official one within 1e-4) and under float16 AMP (losses must be finite).
# Writes OUT_DIR/{gpu_check,bench_800x1333,train_golden_fp32,train_golden_amp}.json (default output/gpu_check).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PAVENET_PYTHON_BIN:-$ROOT/.venv/bin/python}"
GOLDEN="${1:?usage: gpu_check.sh GOLDEN_DIR OFFICIAL_KEYS_TXT [OUT_DIR]}"
KEYS="${2:?usage: gpu_check.sh GOLDEN_DIR OFFICIAL_KEYS_TXT [OUT_DIR]}"
OUT="${3:-output/gpu_check}"
mkdir -p "$OUT"

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_check: torch.cuda.is_available() is False (a CUDA torch and a visible GPU are needed)" >&2; exit 2; }
if ! "$PY" -c 'import sys; from torch_ms_deform_attn import _C; sys.exit(0 if _C.with_cuda else 1)' 2>/dev/null; then
  echo "gpu_check: building torch-ms-deform-attn with CUDA (needs nvcc matching torch's CUDA; log: $OUT/msda_build.log)"
  FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps --force-reinstall --no-cache-dir \
    --no-binary=torch-ms-deform-attn torch-ms-deform-attn==0.1.1 >"$OUT/msda_build.log" 2>&1 \
    || { echo "gpu_check: the CUDA build failed, see $OUT/msda_build.log" >&2; exit 1; }
fi

"$PY" tools/gpu_check.py --golden-dir "$GOLDEN" --official-keys "$KEYS" --json "$OUT/gpu_check.json"
"$PY" tools/benchmark.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml --height 800 --width 1333 \
  --frames 6 --repeats 3 --train-clips 1 --amp --json "$OUT/bench_800x1333.json" \
  --opts MODEL.WEIGHTS "" MODEL.DEVICE cuda
TRAIN_CASE="$GOLDEN/train_r50_f3_seed2026"
if [ -f "$TRAIN_CASE/outputs.npz" ]; then
  for MODE in fp32 amp; do
    AMP_FLAG=""
    [ "$MODE" = amp ] && AMP_FLAG="--amp"
    "$PY" tools/benchmark.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml --repeats 5 $AMP_FLAG \
      --golden-train "$TRAIN_CASE" --official-keys "$KEYS" --json "$OUT/train_golden_$MODE.json" \
      --opts MODEL.DEVICE cuda
  done
else
  echo "gpu_check: no golden training case at $TRAIN_CASE, training-step check skipped" >&2
fi
echo "gpu_check: results in $OUT/gpu_check.json, $OUT/bench_800x1333.json and $OUT/train_golden_{fp32,amp}.json"
