"""Matching geometry of one evaluated frame (docs/POSETRACK_METRICS.md §3 steps 3-4, §4.1-§4.3).

It owns everything that decides which predicted joint is a hit: dropping persons without points,
ignore regions (joints strictly inside a polygon are deleted, then persons left without joints), the
PCKh distances normalised by 0.6 x the GT head-box diagonal with the inclusive 0.5 threshold, and
poseval's greedy, score-free person assignment. AP (`ap.py`) and MOTA (`mota.py`) consume its outputs.
"""

from typing import List, Tuple

import numpy as np

from .poses import Poses

__all__ = [
    "DIST_THRESH",
    "HEAD_SIZE_FACTOR",
    "points_strictly_inside",
    "prepare_frame",
    "pckh_distances",
    "assign_people",
]

DIST_THRESH = 0.5  # PCKh threshold, inclusive (d <= 0.5)
HEAD_SIZE_FACTOR = 0.6  # head size = 0.6 x GT head-box diagonal


def points_strictly_inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(M, 2) points, (V, 2) polygon -> (M,) bool, True iff strictly inside (the edge is outside).

    Even-odd ray crossing, like shapely's `Polygon.contains` on a point. Polygons with fewer than 3
    vertices contain nothing (shapely would refuse to build them)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if poly.shape[0] < 3 or points.shape[0] == 0:
        return np.zeros(points.shape[0], dtype=bool)
    px, py = points[:, 0:1], points[:, 1:2]
    ax, ay = poly[None, :, 0], poly[None, :, 1]
    nxt = np.roll(poly, -1, axis=0)
    bx, by = nxt[None, :, 0], nxt[None, :, 1]
    straddle = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
    inside = (np.count_nonzero(straddle & (px < x_cross), axis=1) % 2) == 1
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    on_edge = (
        (cross == 0)
        & (px >= np.minimum(ax, bx))
        & (px <= np.maximum(ax, bx))
        & (py >= np.minimum(ay, by))
        & (py <= np.maximum(ay, by))
    )
    return inside & ~on_edge.any(axis=1)


def _remove_ignored(poses: Poses, polys: List[np.ndarray]) -> Poses:
    """Delete joints strictly inside any polygon, then every person left without joints (even one that had
    none to begin with, as poseval does)."""
    if len(poses) == 0:
        return poses
    pts = poses.xy.reshape(-1, 2)
    inside = np.zeros(pts.shape[0], dtype=bool)
    for poly in polys:
        inside |= points_strictly_inside(pts, poly)
    present = poses.present & ~inside.reshape(poses.present.shape)
    out = Poses(poses.xy, present, poses.scores, poses.track_ids, poses.head, poses.has_points)
    return out.take(present.any(axis=1))


def prepare_frame(gt: Poses, pred: Poses, polys: List[np.ndarray]) -> Tuple[Poses, Poses]:
    """docs/POSETRACK_METRICS.md §3 steps 4-5 for one frame that is evaluated (its GT had people)."""
    gt = gt.take(gt.has_points)
    pred = pred.take(pred.has_points)
    if polys:
        gt = _remove_ignored(gt, polys)
        pred = _remove_ignored(pred, polys)
    return gt, pred


def pckh_distances(gt: Poses, pred: Poses) -> np.ndarray:
    """(P, G, 15) normalised distances ||pred - gt|| / (0.6 x GT head diagonal); inf where either joint is
    absent. A zero-size head box gives inf/NaN, which never matches (as in poseval)."""
    head = gt.head
    head_size = HEAD_SIZE_FACTOR * np.hypot(
        head[:, 2] - head[:, 0], head[:, 3] - head[:, 1]
    )  # (G,)
    diff = pred.xy[:, None] - gt.xy[None]  # (P, G, 15, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.sqrt((diff**2).sum(-1)) / head_size[None, :, None]
    both = pred.present[:, None, :] & gt.present[None, :, :]
    return np.where(both, d, np.inf)


def assign_people(match: np.ndarray, gt_present: np.ndarray) -> np.ndarray:
    """poseval's greedy, score-free person assignment.

    match: (P, G, 15) bool; gt_present: (G, 15) bool. Returns (P,) the GT index assigned to each
    prediction, -1 if none. Each prediction keeps only its best GT (first index on ties); each GT then takes
    the prediction with the largest remaining PCKh (first on ties); a 0 PCKh leaves the GT unmatched, and a
    prediction that lost its preferred GT is not re-assigned."""
    n_pred, n_gt = match.shape[:2]
    pck = match.sum(axis=2).astype(np.float64)  # (P, G)
    n_ann = gt_present.sum(axis=1)  # joints annotated in the GT, not joints in common
    pck = np.where(n_ann[None, :] > 0, pck / np.maximum(n_ann, 1)[None, :], pck)
    best = np.argmax(pck, axis=1)
    keep = np.zeros_like(pck, dtype=bool)
    keep[np.arange(n_pred), best] = True
    pck = np.where(keep, pck, 0.0)
    pred_for_gt = np.argmax(pck, axis=0)  # (G,)
    matched = pck.max(axis=0) > 0
    assigned = np.full(n_pred, -1, dtype=np.int64)
    assigned[pred_for_gt[matched]] = np.nonzero(matched)[0]
    return assigned
