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

import cv2
import numpy as np

import pavenet  # noqa: F401  (registers datasets)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from pavenet.config import ConfigError, load_pavenet_config
from pavenet.data.build import get_test_clip_dicts
from pavenet.data.dataset_mapper import PoseTrackClipDatasetMapper
from pavenet.data.datasets.posetrack import register_posetrack


def setup(args):
    cfg = load_pavenet_config(args.config_file, args.opts)
    cfg.freeze()
    return cfg


def render_clip(clip: dict, metadata, image_format: str = "RGB") -> np.ndarray:
    """(H, F*W, 3) RGB uint8 strip of the clip's frames with the key-frame GT keypoints drawn."""
    images = clip["images"].permute(0, 2, 3, 1).numpy()
    if image_format == "BGR":
        images = images[..., ::-1]
    F = images.shape[0]
    kpts = clip["instances"].gt_keypoints.tensor.numpy() if "instances" in clip else np.zeros((0, 0, 3))
    panels = []
    for f in range(F):
        vis = Visualizer(np.ascontiguousarray(images[f]), metadata=metadata, scale=1.0)
        for person in kpts:
            vis.draw_and_connect_keypoints(person)
        out = vis.output.get_image()
        if f != F // 2:
            out = ((out.astype(np.float32) + images[f]) / 2).astype(np.uint8)  # dimmed: the skeleton is the key frame's
        else:
            cv2.rectangle(out, (0, 0), (out.shape[1] - 1, out.shape[0] - 1), (255, 230, 0), 3)
        panels.append(out)
    return np.concatenate(panels, axis=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", metavar="FILE")
    p.add_argument("--dataset", default="posetrack_synthetic_train", help="registered dataset name")
    p.add_argument("--num", type=int, default=4, help="number of clips to render")
    p.add_argument("--output", default="output/visualize_data", help="output folder for PNGs")
    p.add_argument("--test", action="store_true", help="test-mode mapper (resize only) instead of training augmentations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--annotations", default="", help="register --dataset from this per-sequence folder / COCO-style JSON")
    p.add_argument("--image-root", default="", help="folder the JSON file_names are relative to (with --annotations)")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args()
    cfg = setup(args)
    if args.annotations:
        register_posetrack(args.dataset, args.annotations, args.image_root or os.path.dirname(args.annotations))
    np.random.seed(args.seed)
    metadata = MetadataCatalog.get(args.dataset)
    if args.test:
        dicts = get_test_clip_dicts(args.dataset, cfg.INPUT.PAVENET.TEST_FRAMES)
    else:
        dicts = [d for d in DatasetCatalog.get(args.dataset) if d.get("annotations")]
    mapper = PoseTrackClipDatasetMapper(cfg, is_train=not args.test, dataset_name=args.dataset)
    os.makedirs(args.output, exist_ok=True)
    order = np.random.permutation(len(dicts))[: args.num] if not args.test else range(min(args.num, len(dicts)))
    for i in order:
        clip = mapper(dicts[i])
        if clip is None:
            continue
        strip = render_clip(clip, metadata, cfg.INPUT.FORMAT)
        name = f"{clip['video_id']}_{clip['frame_index']:06d}.png".replace("/", "_")
        path = os.path.join(args.output, name)
        cv2.imwrite(path, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        n = len(clip["instances"]) if "instances" in clip else 0
        print(f"{path}: {clip['images'].shape[0]} frames {tuple(clip['images'].shape[2:])}, {n} persons")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:  # a bad --config-file / override: one line naming it, no traceback
        raise SystemExit(f"error: {e}")
