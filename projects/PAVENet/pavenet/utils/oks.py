"""Pairwise object keypoint similarity between predicted poses (no visibility: every joint counts).

Shared by the OKS-NMS of the experimental official head and by the demo's tracker.
"""

from typing import Sequence

import numpy as np

from .boxes import keypoint_extent_boxes

__all__ = ["pairwise_pose_oks"]


def pairwise_pose_oks(
    a, b, sigmas: Sequence[float], *, scale_eps: float = 0.0, min_scale: float = 0.0
) -> np.ndarray:
    """OKS between every pose of `a` (n, K, 2) and every pose of `b` (m, K, 2) -> (n, m), float64.

    The object scale is the mean of the two poses' keypoint-extent box areas (symmetric), plus
    `scale_eps`, floored at `min_scale`; OKS = mean over joints of exp(-d^2 / (2 * scale * (2 sigma)^2)).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2  # (K,)

    def area(p):
        box = keypoint_extent_boxes(p)  # (n, 4)
        return (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])

    scale = np.maximum((area(a)[:, None] + area(b)[None, :]) / 2.0 + scale_eps, min_scale)  # (n, m)
    d2 = ((a[:, None] - b[None, :]) ** 2).sum(-1)  # (n, m, K)
    return np.exp(-d2 / (2.0 * scale[..., None] * var)).mean(-1)
