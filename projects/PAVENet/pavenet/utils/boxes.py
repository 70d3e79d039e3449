"""The box of a pose: the extent of its joints (visible ones only, when a visibility mask is given).

One rule for every place that needs a person box from keypoints: the clip mapper's `gt_boxes`, the
synthetic dataset's annotation boxes, the COCO results writer, the visualizer, and the OKS scale. Works
on numpy arrays and torch tensors alike (same type out), so the data and the evaluation side share it.
"""

from typing import Optional

import numpy as np
import torch

__all__ = ["keypoint_extent_boxes"]


def keypoint_extent_boxes(xy, visible: Optional[object] = None):
    """(N, K, 2) joints -> (N, 4) XYXY boxes spanning each pose's joints.

    With `visible` (N, K) bool, only those joints count; a pose without a visible joint gets a zero box
    (callers drop such persons before). Returns a tensor for a tensor input, else a float64 array.
    """
    if torch.is_tensor(xy):
        if xy.shape[0] == 0 or xy.shape[1] == 0:
            return xy.new_zeros((xy.shape[0], 4))
        if visible is None:
            return torch.cat([xy.min(1).values, xy.max(1).values], 1)
        vis = torch.as_tensor(visible, dtype=torch.bool, device=xy.device)[..., None]
        lo = torch.where(vis, xy, xy.new_tensor(float("inf"))).min(1).values
        hi = torch.where(vis, xy, xy.new_tensor(float("-inf"))).max(1).values
        return torch.where(vis.any(1), torch.cat([lo, hi], 1), xy.new_zeros(()))
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape[0] == 0 or xy.shape[1] == 0:
        return np.zeros((xy.shape[0], 4))
    if visible is None:
        return np.concatenate([xy.min(1), xy.max(1)], 1)
    vis = np.asarray(visible, dtype=bool)[..., None]
    lo = np.where(vis, xy, np.inf).min(1)
    hi = np.where(vis, xy, -np.inf).max(1)
    return np.where(vis.any(1), np.concatenate([lo, hi], 1), 0.0)
