#!/usr/bin/env python
"""Inference cost of PAVE-Net, in one process on the same input:

* per-frame latency of the streaming (cached per-frame encodings) vs the window (full forward per
  window, as the official demo) mode on one synthetic video, plus the split into per-frame encoding
  (backbone + neck + spatial encoder + the decoders' value maps) and per-window decoding (query
  selection + both decoders on the cached maps);
* per-frame latency (streaming) with 1 vs 20 people in the frame;
* GFLOPs per frame (fvcore; unsupported ops such as grid_sample are listed, not counted);
* the deformable-attention sampling core alone (one encoder attention over a frame, one pose-decoder
  attention over a window), per backend: ms per call and ns per sampled point;
* with --train-clips N: a training step (forward + backward + optimizer step on N clips; clips/s and
  peak memory), optionally under AMP (--amp).

With --golden-train CASE_DIR it times instead the training step on a golden training case (the official
model's seeded weights, clip and ground truth; `pavenet.apps.benchmark.train_golden`): forward and backward apart,
per backend, each backend's loss checked against the official one:

  python tools/benchmark.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml --threads 1 \
      --golden-train GOLDEN/train_r50_f3_seed2026 --official-keys KEYS.txt --json out/train_golden.json

Stream, encode, decode and the training step are timed for every deformable-attention backend
(--backends: PyTorch and the compiled kernel) on the same model, interleaved in one process; the
results are under "backends" with the ratios in "kernel_over_pytorch". With --backend onnxruntime the
same model is also exported to ONNX (or --onnx-dir is loaded) and its stream / encode / decode run in
ONNX Runtime on the same frames, interleaved with the others ("backends"/"onnxruntime",
"onnxruntime_over_pytorch", "onnxruntime_over_kernel"; ONNX Runtime gets as many intra-op threads as torch).
--backend onnxruntime-int8 adds the int8 graphs ("onnxruntime_int8"; exported ones are calibrated on the
benchmark's video).

  python tools/benchmark.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml \
      --height 384 --width 640 --train-clips 1 --json out/bench.json [--opts MODEL.DEVICE cuda]

The logic lives in `pavenet.apps.benchmark` (`run_benchmark`); this script parses the arguments.

Random weights unless MODEL.WEIGHTS is set: the cost does not depend on the weights (fixed query count
and top-k), so the numbers hold for trained models.
"""

import sys

from pavenet.apps.benchmark.cli import get_parser, main  # noqa: F401  (get_parser: the options, for tests and docs)

if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
