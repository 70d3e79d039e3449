"""CLEAR-MOT counting per joint (docs/POSETRACK_METRICS.md §5), as poseval runs py-motmetrics.

It owns the event counter (`MOTAccumulator`: matches, switches, misses, false positives and the paired
distances, with py-motmetrics' update rules), how one evaluated frame feeds the 15 per-joint counters
(`update_joints`; objects are the GT persons with that joint, hypotheses the predicted persons with it,
pairs farther than the PCKh threshold are forbidden), poseval's dummy update for a frame without
predictions or without GT, and the MOTA / MOTP / precision / recall formulas over the summed counts.
"""

import math
from typing import Dict, List

import numpy as np
from scipy.optimize import linear_sum_assignment

from .poses import Poses

__all__ = ["MOTAccumulator", "MOT_COUNTS", "update_joints", "update_empty", "clear_mot_metrics"]

MOT_COUNTS = ("misses", "switches", "false_positives", "objects", "matches")


class MOTAccumulator:
    """Per-joint, per-video CLEAR-MOT event counter with py-motmetrics' update semantics.

    Each frame: (1) keep last pairings that are still allowed (finite distance), (2) min-cost assignment of
    the rest with maximum cardinality (NaN = may not pair), a pairing that differs from the object's previous
    one is a switch (no time limit), (3) unpaired objects are misses, unpaired hypotheses false positives."""

    def __init__(self):
        self.pairing: Dict[int, int] = {}
        self.misses = self.switches = self.false_positives = self.objects = self.matches = 0
        self.total_distance = 0.0  # sum of the paired (matched or switched) distances, for MOTP

    def update(self, oids: np.ndarray, hids: np.ndarray, dist: np.ndarray) -> None:
        """oids (No,), hids (Nh,), dist (No, Nh) with NaN for forbidden pairs."""
        n_o, n_h = len(oids), len(hids)
        self.objects += n_o
        if n_o == 0 or n_h == 0:
            self.misses += n_o
            self.false_positives += n_h
            return
        dist = np.array(dist, dtype=np.float64).reshape(n_o, n_h)
        o_done = [False] * n_o
        h_done = [False] * n_h
        oids = [int(o) for o in oids]
        hids = [int(h) for h in hids]
        if len(set(hids)) == n_h:  # the usual case (prediction ids are unique per frame)
            h_index = {h: j for j, h in enumerate(hids)}
        else:  # motmetrics pairs with the first still-free hypothesis carrying that id
            h_index = None
        n_done = 0
        for i, o in enumerate(oids):
            h_prev = self.pairing.get(o)
            if h_prev is None:
                continue
            if h_index is not None:
                j = h_index.get(h_prev)
                j = None if j is None or h_done[j] else j
            else:
                j = next((j for j, h in enumerate(hids) if h == h_prev and not h_done[j]), None)
            if j is not None and math.isfinite(dist[i, j]):
                o_done[i] = h_done[j] = True
                self.matches += 1
                self.total_distance += float(dist[i, j])
                n_done += 1
        if n_done < min(n_o, n_h):
            if n_done:
                dist[np.array(o_done), :] = np.nan
                dist[:, np.array(h_done)] = np.nan
            valid = np.isfinite(dist)
            if valid.any():
                # Forbidden pairs get a cost so high that any solution using one is worse than one without.
                large = 2 * min(dist.shape) * (np.abs(dist[valid]).max() + 1) + 1
                rows, cols = linear_sum_assignment(np.where(valid, dist, large))
                for i, j in zip(rows.tolist(), cols.tolist()):
                    if not valid[i, j]:
                        continue
                    o, h = oids[i], hids[j]
                    if o in self.pairing and self.pairing[o] != h:
                        self.switches += 1
                    else:
                        self.matches += 1
                    self.pairing[o] = h
                    self.total_distance += float(dist[i, j])
                    o_done[i] = h_done[j] = True
        self.misses += n_o - sum(o_done)
        self.false_positives += n_h - sum(h_done)


_DUMMY = (np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.full((1, 1), np.nan))


def update_empty(accs: List[MOTAccumulator]) -> None:
    """poseval's update for a frame without predictions or without GT people: one dummy object and one
    dummy hypothesis that may not pair (one miss and one false positive per joint)."""
    for acc in accs:
        acc.update(*_DUMMY)


def update_joints(
    accs: List[MOTAccumulator], gt: Poses, pred: Poses, dist: np.ndarray, thresh: float
) -> None:
    """One frame for each joint's counter. dist: (P, G, K) normalised distances (inf where either joint is
    absent); pairs with dist > thresh may not pair."""
    for k, acc in enumerate(accs):
        gi = np.nonzero(gt.present[:, k])[0]
        pi = np.nonzero(pred.present[:, k])[0]
        dk = dist[pi][:, gi, k].T  # (objects, hypotheses)
        dk = np.where(dk <= thresh, dk, np.nan)
        acc.update(gt.track_ids[gi], pred.track_ids[pi], dk)


def clear_mot_metrics(
    counts: Dict[str, np.ndarray], total_distance: np.ndarray
) -> Dict[str, np.ndarray]:
    """{"mota", "motp", "mot_precision", "mot_recall"} (K,) in percent from the per-joint sums of the
    counters' fields (`MOT_COUNTS`) and paired distances; NaN where a denominator is 0."""
    objects = counts["objects"].astype(np.float64)
    paired = (counts["matches"] + counts["switches"]).astype(np.float64)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["mota"] = 100.0 * (
            1.0
            - (counts["misses"] + counts["switches"] + counts["false_positives"])
            / np.where(objects > 0, objects, np.nan)
        )
        out["motp"] = 100.0 * (1.0 - total_distance / np.where(paired > 0, paired, np.nan))
        denom = paired + counts["false_positives"]
        out["mot_precision"] = 100.0 * paired / np.where(denom > 0, denom, np.nan)
        out["mot_recall"] = 100.0 * paired / np.where(objects > 0, objects, np.nan)
    return out
