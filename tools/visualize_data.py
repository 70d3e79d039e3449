#!/usr/bin/env python
"""Render mapped clips (all F frames side by side) with the key frame's GT skeletons, to check by eye that
augmentations (flip with the left/right swap, rotation, crop) are the same on every frame of a clip.

  python tools/visualize_data.py --dataset posetrack_synthetic_train --num 4 --output out/vis
  python tools/visualize_data.py --config-file CFG --dataset posetrack18_val --test --output out/vis
  python tools/visualize_data.py --dataset my_seq --annotations DIR_OR_JSON --image-root ROOT --output out/vis

The key frame (middle, yellow border) shows its GT; the other frames show the same key-frame skeleton
dimmed, so a joint that lands on the wrong limb in a neighbour frame reveals a transform mismatch.
"""

import argparse
import os

import pavenet  # noqa: F401  (registers datasets)
from pavenet.config import ConfigError, load_pavenet_config
from pavenet.data.datasets.posetrack import register_posetrack
from pavenet.data.posetrack_files import PoseTrackFormatError
from pavenet.data.preview import write_clip_previews


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", default="configs/Base-PAVENet.yaml", metavar="FILE")
    p.add_argument("--dataset", default="posetrack_synthetic_train", help="registered dataset name")
    p.add_argument("--num", type=int, default=4, help="number of clips to render")
    p.add_argument("--output", default="output/visualize_data", help="output folder for PNGs")
    p.add_argument(
        "--test",
        action="store_true",
        help="test-mode mapper (resize only) instead of training augmentations",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--annotations",
        default="",
        help="register --dataset from this per-sequence folder / COCO-style JSON",
    )
    p.add_argument(
        "--image-root",
        default="",
        help="folder the JSON file_names are relative to (with --annotations)",
    )
    p.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ..."
    )
    args = p.parse_args(argv)
    cfg = load_pavenet_config(args.config_file, args.opts)
    cfg.freeze()
    if args.annotations:
        register_posetrack(
            args.dataset, args.annotations, args.image_root or os.path.dirname(args.annotations)
        )
    for r in write_clip_previews(
        cfg, args.dataset, args.output, num=args.num, test=args.test, seed=args.seed
    ):
        print(f"{r['path']}: {r['frames']} frames {r['size']}, {r['persons']} persons")


if __name__ == "__main__":
    try:
        main()
    except (
        ConfigError,
        PoseTrackFormatError,
    ) as e:  # a bad config or dataset file: one line naming it
        raise SystemExit(f"error: {e}")
