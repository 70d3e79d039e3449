"""Previews of mapped clips, to check by eye that a clip's augmentations are the same on all its frames
(tools/visualize_data.py).

Owns rendering one mapped clip as a strip (all F frames side by side, the key frame's GT skeletons drawn on
every frame: full strength and a yellow border on the key frame, dimmed on the others, so a joint that lands
on the wrong limb in a neighbour frame reveals a transform mismatch) and writing the strips of a few clips
of a registered dataset. Mapping is the clip mapper's; drawing is detectron2's `Visualizer`.
"""

import os
from typing import List, Optional

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer

from ..utils.atomic import atomic_path
from .build import get_test_clip_dicts
from .dataset_mapper import PoseTrackClipDatasetMapper

__all__ = ["render_clip", "write_clip_previews"]


def render_clip(clip: dict, metadata, image_format: str = "RGB") -> np.ndarray:
    """A mapped clip (`images` (F, 3, H, W) uint8, optional key-frame `instances`) -> (H, F*W, 3) RGB uint8 strip."""
    images = clip["images"].permute(0, 2, 3, 1).numpy()
    if image_format == "BGR":
        images = images[..., ::-1]
    F = images.shape[0]
    kpts = (
        clip["instances"].gt_keypoints.tensor.numpy()
        if "instances" in clip
        else np.zeros((0, 0, 3))
    )
    panels = []
    for f in range(F):
        vis = Visualizer(np.ascontiguousarray(images[f]), metadata=metadata, scale=1.0)
        for person in kpts:
            vis.draw_and_connect_keypoints(person)
        out = vis.output.get_image()
        if f != F // 2:
            out = ((out.astype(np.float32) + images[f]) / 2).astype(
                np.uint8
            )  # dimmed: the skeleton is the key frame's
        else:
            cv2.rectangle(out, (0, 0), (out.shape[1] - 1, out.shape[0] - 1), (255, 230, 0), 3)
        panels.append(out)
    return np.concatenate(panels, axis=1)


def write_clip_previews(
    cfg,
    dataset_name: str,
    output_dir: str,
    num: int = 4,
    test: bool = False,
    seed: Optional[int] = 0,
) -> List[dict]:
    """Map `num` clips of `dataset_name` and write their strips as PNGs under `output_dir`.

    Training mode (default) maps `num` random annotated key frames with the training augmentations (seeded by
    `seed`); `test` maps the first `num` test clips (resize only). Returns one dict per written PNG:
    `path`, `frames` (F), `size` (H, W) of the mapped frames, `persons` (key-frame GT count).
    """
    metadata = MetadataCatalog.get(dataset_name)
    if test:
        dicts = get_test_clip_dicts(dataset_name, cfg.INPUT.PAVENET.TEST_FRAMES)
    else:
        dicts = [d for d in DatasetCatalog.get(dataset_name) if d.get("annotations")]
    if seed is not None:
        np.random.seed(seed)  # the mapper draws its augmentations from numpy's global RNG
    mapper = PoseTrackClipDatasetMapper(cfg, is_train=not test, dataset_name=dataset_name)
    os.makedirs(output_dir, exist_ok=True)
    order = range(min(num, len(dicts))) if test else np.random.permutation(len(dicts))[:num]
    written = []
    for i in order:
        clip = mapper(dicts[i])
        if clip is None:  # training: no person kept a visible joint after max_redraws draws
            continue
        strip = render_clip(clip, metadata, cfg.INPUT.FORMAT)
        path = os.path.join(
            output_dir, f"{clip['video_id']}_{clip['frame_index']:06d}.png".replace("/", "_")
        )
        with atomic_path(path) as tmp:
            if not cv2.imwrite(tmp, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write {path}")
        written.append(
            {
                "path": path,
                "frames": int(clip["images"].shape[0]),
                "size": tuple(int(s) for s in clip["images"].shape[2:]),
                "persons": len(clip["instances"]) if "instances" in clip else 0,
            }
        )
    return written
