#!/usr/bin/env python
"""Export PAVE-Net's streaming split to ONNX: DIR/encoder.onnx (one frame -> its encoding) and
DIR/decoder.onnx (the F encodings of a clip -> the key frame's top-k persons). docs/DEPLOY.md.

  python tools/deploy/export_model.py --config-file configs/posetrack18/pavenet_r50_3f_pt18.yaml \
      --output exported/ --opts MODEL.WEIGHTS model.pth

The graphs take any frame size; --height/--width only set the example frame used for tracing. Each file
appears only when complete. Run them with `tools/demo.py --backend onnxruntime --onnx-dir DIR`.

With --int8 FRAMES it also writes DIR/encoder.int8.onnx and DIR/decoder.int8.onnx (convolutions
calibrated on FRAMES: a video, an image folder or a glob; linear layers quantised dynamically), for
`--backend onnxruntime-int8`.
"""

import argparse
import json
import logging
import os
import sys

from detectron2.utils.logger import setup_logger

from pavenet.config import load_pavenet_config
from pavenet.export import SAMPLINGS, export_from_config


def get_parser():
    p = argparse.ArgumentParser(description="Export PAVE-Net to encoder.onnx + decoder.onnx")
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--output", required=True, help="directory for encoder.onnx and decoder.onnx")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument(
        "--height",
        type=int,
        help="example frame height for tracing (default: from INPUT.MIN_SIZE_TEST)",
    )
    p.add_argument("--width", type=int, help="example frame width for tracing")
    p.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default=SAMPLINGS[0],
        help="how the deformable sampling is written with standard ONNX ops (docs/DEPLOY.md)",
    )
    p.add_argument(
        "--int8",
        metavar="FRAMES",
        help="also write int8 graphs, calibrated on these frames (a video, an image folder or a glob)",
    )
    p.add_argument(
        "--int8-frames",
        type=int,
        default=16,
        help="at most this many calibration frames, spread evenly",
    )
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return p


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    setup_logger(name="pavenet")
    if (args.height is None) != (args.width is None):
        raise ValueError("give both --height and --width, or neither")
    cfg = load_pavenet_config(args.config_file, args.opts + ["MODEL.DEVICE", "cpu"])
    cfg.freeze()
    if args.int8 and not os.path.exists(args.int8) and not any(c in args.int8 for c in "*?["):
        raise FileNotFoundError(f"--int8: calibration frames not found: {args.int8}")
    paths = export_from_config(
        cfg,
        args.output,
        args.height,
        args.width,
        args.sampling,
        int8=args.int8,
        int8_frames=args.int8_frames,
    )
    logging.getLogger("pavenet").info("Exported %s", json.dumps(paths))
    return paths


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad input: a clear one-line error, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
