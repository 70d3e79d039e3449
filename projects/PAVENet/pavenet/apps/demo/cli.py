"""The command line of tools/demo.py: the PAVE-Net video demo (overlays with a colour per track id, PoseTrack18 JSON
with track ids, COCO results).

See tools/demo.py for the usage."""

import argparse
import json
import logging

from detectron2.utils.logger import setup_logger

from pavenet.apps.demo.runner import VideoPoseDemo, demo_config, plan_outputs, run_demo
from pavenet.export import BACKENDS, build_predictor
from pavenet.inference.frames import open_frame_source


def get_parser():
    parser = argparse.ArgumentParser(
        description="PAVE-Net demo: multi-person video pose with track ids"
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video-input", help="a video file")
    src.add_argument(
        "--input",
        nargs="+",
        help="frames of one video: image files, a folder, or a glob ('dir/*.jpg')",
    )
    src.add_argument("--webcam", action="store_true", help="take frames from webcam 0")
    parser.add_argument(
        "--output",
        help="a video file (.mp4/.mkv/.avi) or a directory; with no output at all, show a window",
    )
    parser.add_argument(
        "--save-frames",
        action="store_true",
        help="with a directory --output: also save overlay frames",
    )
    parser.add_argument(
        "--save-json", help="PoseTrack18 JSON with track_id (a .json file or a directory)"
    )
    parser.add_argument("--save-coco", help="COCO keypoint results JSON (with track_id)")
    parser.add_argument(
        "--gt-json", help="PoseTrack18 GT JSON of this sequence: copy its image ids/file names"
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.3,
        help="minimum person score (sets MODEL.PAVENET.TEST.SCORE_THRESH)",
    )
    parser.add_argument(
        "--keypoint-threshold", type=float, default=0.0, help="hide joints scoring below this"
    )
    parser.add_argument(
        "--mode",
        choices=["stream", "window"],
        default="stream",
        help="stream: encode each frame once (cached); window: full forward per window",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="pytorch",
        help="pytorch: the model; onnxruntime / onnxruntime-int8: the fp32 / int8 graphs in "
        "--onnx-dir (exported from the same config and weights)",
    )
    parser.add_argument(
        "--onnx-dir", help="with an onnxruntime backend: the folder of tools/deploy/export_model.py"
    )
    parser.add_argument(
        "--compile-encoder",
        action="store_true",
        help="pytorch backend: the per-frame encoder through torch.compile with frozen weights "
        "(faster per frame; the first frame compiles for minutes)",
    )
    parser.add_argument(
        "--allow-graph-mismatch",
        action="store_true",
        help="run graphs exported from other weights or config keys with a warning, not an error",
    )
    parser.add_argument(
        "--track-patience", type=int, default=2, help="windows a missing person keeps its id"
    )
    parser.add_argument(
        "--track-match-thresh", type=float, default=0.3, help="minimum OKS to continue a track"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config KEY VALUE pairs"
    )
    return parser


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    setup_logger(name="pavenet")
    logger = logging.getLogger("pavenet")
    logger.info("Arguments: %s", args)
    if args.backend != "pytorch" and not args.onnx_dir:
        raise SystemExit(
            f"--backend {args.backend} needs --onnx-dir (written by tools/deploy/export_model.py)"
        )
    # Inputs and outputs first: a missing / unreadable / empty input or an unwritable output fails before
    # the model is built.
    source = open_frame_source(args.video_input, args.input, args.webcam)
    plan_outputs(
        source.name, args.output, args.save_frames, args.save_json, args.save_coco, args.gt_json
    )
    cfg = demo_config(args.config_file, args.opts, args.confidence_threshold)
    predictor = build_predictor(
        cfg,
        args.backend,
        args.onnx_dir,
        on_mismatch="warn" if args.allow_graph_mismatch else "error",
        compile_encoder=args.compile_encoder,
    )
    demo = VideoPoseDemo(
        cfg,
        mode=args.mode,
        track_patience=args.track_patience,
        track_match_thresh=args.track_match_thresh,
        keypoint_thresh=args.keypoint_threshold,
        predictor=predictor,
    )
    summary = run_demo(
        demo,
        source,
        output=args.output,
        save_frames=args.save_frames,
        save_json=args.save_json,
        save_coco=args.save_coco,
        gt_json=args.gt_json,
        progress=not args.no_progress,
        show=not (args.output or args.save_json or args.save_coco),
    )
    logger.info("Done: %s", json.dumps(summary))
    return summary
