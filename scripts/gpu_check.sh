#!/usr/bin/env bash
# GPU check of the deformable-attention kernel and the GPU cost of PAVE-Net (docs/BENCHMARKS.md).
# On a CUDA machine after `make setup`:
#   bash scripts/gpu_check.sh GOLDEN_DIR OFFICIAL_KEYS_TXT [OUT_DIR]
# 1. rebuilds torch-ms-deform-attn with its CUDA kernel if the installed build lacks it;
# 2. tools/gpu_check.py: kernel == PyTorch (and == the official outputs) on the golden case, on the GPU;
# 3. tools/benchmark.py at 800x1333: inference per backend and an AMP training step (1 clip), R50 F=3.
# Writes OUT_DIR/{gpu_check,bench_800x1333}.json (default output/gpu_check).
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
echo "gpu_check: results in $OUT/gpu_check.json and $OUT/bench_800x1333.json"
