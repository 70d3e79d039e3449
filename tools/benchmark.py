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

import argparse
import logging
import sys

from pavenet.apps.benchmark import run_benchmark, write_report
from pavenet.apps.benchmark.train_golden import run_golden_train_benchmark


def get_parser():
    p = argparse.ArgumentParser(
        description="PAVE-Net streaming vs window latency, people count, GFLOPs"
    )
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--frames", type=int, default=6, help="length of the benchmark video")
    p.add_argument(
        "--repeats", type=int, default=3, help="best of this many interleaved runs per measurement"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-flops", action="store_true", help="skip the fvcore count")
    p.add_argument(
        "--backends",
        default="all",
        help="deformable-attention backends to time side by side: 'all' (pytorch, and kernel if "
        "installed) or a comma list of pytorch,kernel",
    )
    p.add_argument(
        "--backend",
        choices=["pytorch", "onnxruntime", "onnxruntime-int8"],
        default="pytorch",
        help="onnxruntime: also time the exported ONNX graphs in ONNX Runtime beside PyTorch; "
        "onnxruntime-int8: the fp32 and the int8 graphs",
    )
    p.add_argument(
        "--allow-graph-mismatch",
        action="store_true",
        help="--onnx-dir graphs from other weights or config keys: warn instead of failing",
    )
    p.add_argument(
        "--onnx-dir",
        help="with --backend onnxruntime: graphs exported from this config (default: "
        "export the benchmark's model to a temporary folder)",
    )
    p.add_argument(
        "--train-clips",
        type=int,
        default=0,
        help="also time a training step (forward, backward, optimizer) on this many clips (0: off)",
    )
    p.add_argument(
        "--cpu-memory",
        action="store_true",
        help="on CPU, also measure the training step's peak memory (profiler: ~20x one step's time)",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="the training step under SOLVER.AMP (bf16 on CPU, fp16 on CUDA)",
    )
    p.add_argument(
        "--golden-train",
        metavar="CASE_DIR",
        help="time the training step on this golden training case instead (forward / backward per backend)",
    )
    p.add_argument(
        "--official-keys",
        metavar="KEYS.txt",
        help="with --golden-train: the official checkpoint's keys",
    )
    p.add_argument("--json", help="write the results here")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return p


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.golden_train:
        if not args.official_keys:
            raise ValueError(
                "--golden-train needs --official-keys (the official checkpoint's state-dict key list)"
            )
        res = run_golden_train_benchmark(
            args.config_file,
            args.golden_train,
            args.official_keys,
            repeats=args.repeats,
            threads=args.threads,
            backends=args.backends,
            amp=args.amp,
            opts=args.opts,
        )
        write_report(res, args.json)
        return res
    res = run_benchmark(
        args.config_file,
        args.opts,
        height=args.height,
        width=args.width,
        frames=args.frames,
        repeats=args.repeats,
        threads=args.threads,
        flops=not args.no_flops,
        backends=args.backends,
        backend=args.backend,
        onnx_dir=args.onnx_dir,
        train_clips=args.train_clips,
        cpu_memory=args.cpu_memory,
        amp=args.amp,
        on_mismatch="warn" if args.allow_graph_mismatch else "error",
    )
    write_report(res, args.json)
    return res


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
