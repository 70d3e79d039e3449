"""Overlays through detectron2's Visualizer, one colour kept per track id and each person labelled with it.

`Visualizer.overlay_instances` (the same in v0.6 and main) draws what VideoVisualizer draws, but takes the
labels: "id 3 87%" (track id, score) instead of detectron2's class name. The colour comes from a fixed
palette keyed by `pred_track_ids`. Keypoints scoring below `keypoint_thresh` are hidden by zeroing their
score (the Visualizer's own 0.05 threshold is internal to it).
"""

from typing import Optional

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

from pavenet.data.keypoint_meta import posetrack_metadata
from pavenet.utils.boxes import keypoint_extent_boxes

__all__ = ["TrackVisualizer", "demo_metadata", "track_color", "track_labels"]

_PALETTE = colormap(rgb=True, maximum=1)  # (74, 3) distinct RGB colours in [0, 1]
_DEMO_METADATA = "pavenet_demo"


def track_color(track_id: int):
    """A fixed RGB colour in [0, 1] for a track id (the same id keeps its colour for the whole video)."""
    return tuple(float(c) for c in _PALETTE[int(track_id) % len(_PALETTE)])


def demo_metadata(cfg=None):
    """Metadata of DATASETS.TEST[0] when it has keypoint names and rules, else a registered
    `pavenet_demo` entry with the PoseTrack names and skeleton."""
    if cfg is not None and len(cfg.DATASETS.TEST):
        meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        if meta.get("keypoint_names") and meta.get("keypoint_connection_rules"):
            return meta
    meta = MetadataCatalog.get(_DEMO_METADATA)
    if not meta.get("keypoint_names"):
        meta.set(**posetrack_metadata())
    return meta


def track_labels(instances: Instances):
    """One label per person: "id <track id> <score>%" ("<score>%" without track ids)."""
    scores = instances.scores.tolist() if instances.has("scores") else [None] * len(instances)
    ids = (
        instances.pred_track_ids.tolist()
        if instances.has("pred_track_ids")
        else [None] * len(instances)
    )
    return [
        " ".join(([f"id {t}"] if t is not None else []) + ([f"{s:.0%}"] if s is not None else []))
        for t, s in zip(ids, scores)
    ]


class TrackVisualizer:
    """Draws a video's frames with a colour and a label per track id (`scale` enlarges the drawing)."""

    def __init__(
        self,
        metadata,
        keypoint_thresh: float = 0.0,
        instance_mode=ColorMode.IMAGE,
        scale: float = 1.0,
    ):
        self.metadata = metadata
        self.instance_mode = instance_mode
        self.scale = float(scale)
        self.keypoint_thresh = float(keypoint_thresh)

    def prepare(self, instances: Instances) -> Instances:
        """A drawable copy: boxes/classes present, COLOR per track id, hidden low-score keypoints."""
        out = Instances(instances.image_size)
        n = len(instances)
        kpts = instances.pred_keypoints.detach().cpu().float().clone()  # (k, K, 3): x, y, score
        # The model predicts every joint; show those above the threshold at full drawing confidence.
        visible = kpts[..., 2] >= self.keypoint_thresh
        kpts[..., 2] = visible.float()
        out.pred_keypoints = kpts
        out.scores = instances.scores.detach().cpu() if instances.has("scores") else torch.ones(n)
        if instances.has("pred_boxes"):
            out.pred_boxes = Boxes(instances.pred_boxes.tensor.detach().cpu())
        else:
            out.pred_boxes = Boxes(keypoint_extent_boxes(kpts[..., :2]))
        out.pred_classes = torch.zeros(n, dtype=torch.int64)
        if instances.has("pred_track_ids"):
            out.COLOR = [track_color(t) for t in instances.pred_track_ids.tolist()]
        return out

    def draw(self, frame_bgr: np.ndarray, instances: Optional[Instances]) -> np.ndarray:
        """BGR uint8 (H, W, 3) frame + key-frame Instances (original pixels) -> BGR uint8 overlay."""
        rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
        vis = Visualizer(rgb, self.metadata, scale=self.scale, instance_mode=self.instance_mode)
        if instances is None or len(instances) == 0:
            return np.ascontiguousarray(vis.output.get_image()[:, :, ::-1])
        drawn = self.prepare(instances)
        alpha = 0.3 if self.instance_mode == ColorMode.IMAGE_BW else 0.5  # as VideoVisualizer
        out = vis.overlay_instances(
            boxes=drawn.pred_boxes.tensor.numpy(),
            labels=track_labels(instances),
            keypoints=drawn.pred_keypoints,
            assigned_colors=drawn.COLOR if drawn.has("COLOR") else None,
            alpha=alpha,
        )
        return np.ascontiguousarray(out.get_image()[:, :, ::-1])
