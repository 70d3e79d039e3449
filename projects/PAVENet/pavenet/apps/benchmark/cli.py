"""The command line of tools/benchmark.py: the inference and training cost of PAVE-Net, in one process.

See tools/benchmark.py for the usage."""

import argparse
import logging

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
