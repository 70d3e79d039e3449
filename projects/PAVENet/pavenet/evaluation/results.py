"""The results of a PoseTrack evaluation and how they are reported (docs/POSETRACK_METRICS.md §4.6).

It owns `PoseTrackResults` (per-joint AP, precision, recall and, with tracking, MOTA, MOTP and the
tracking precision / recall, in percent, in the 15-joint order), poseval's joint groups and their
"Mean" (the mean over the 15 joints, not over the 7 columns), the JSON schema of the CLI and the
evaluator (`to_json`) and the printed table (`format_table`).
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from ..data.keypoint_meta import POSETRACK_JOINT_GROUPS, POSETRACK_KEYPOINT_NAMES

__all__ = ["GROUP_NAMES", "TABLE_COLUMNS", "PoseTrackResults", "format_table"]

GROUP_NAMES: Tuple[str, ...] = tuple(POSETRACK_JOINT_GROUPS)  # Head, Shoulder, ..., Ankle
TABLE_COLUMNS: Tuple[str, ...] = GROUP_NAMES + ("Mean",)
_NAME_TO_15 = {n: i for i, n in enumerate(POSETRACK_KEYPOINT_NAMES)}
_GROUP_INDICES = {g: [_NAME_TO_15[n] for n in names] for g, names in POSETRACK_JOINT_GROUPS.items()}


@dataclass
class PoseTrackResults:
    """Per-joint metrics in percent, in the 15-joint order. `mota` is None when tracking was not evaluated."""

    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_gt: np.ndarray
    mota: Optional[np.ndarray] = None
    mot_counts: Optional[Dict[str, np.ndarray]] = None
    # poseval's other tracking columns (None without tracking): MOTP = 100 (1 - mean distance of the paired
    # joints), Prec = paired / (paired + FP), Rec = paired / objects, where "paired" counts matches and
    # switches (motmetrics' detections). MOTP follows motmetrics 1.0.2 (the one vendored with poseval).
    motp: Optional[np.ndarray] = None
    mot_precision: Optional[np.ndarray] = None
    mot_recall: Optional[np.ndarray] = None
    num_frames: int = 0
    num_sequences: int = 0

    @staticmethod
    def groups(values: np.ndarray) -> Dict[str, float]:
        """poseval's table columns: plain means over the joints of each group (a NaN joint makes the group
        NaN), and Mean/Total = the mean over the 15 joints ignoring NaNs. Mean != mean of the 7 columns."""
        out = {g: float(np.mean(values[idx])) for g, idx in _GROUP_INDICES.items()}
        finite = values[~np.isnan(values)]
        out["Mean"] = float(finite.mean()) if finite.size else float("nan")
        return out

    def summary(self) -> Dict[str, Dict[str, float]]:
        """{"AP": {Head, ..., Ankle, Mean}, "MOTA": {...}, "MOTP", "Prec", "Rec"} (tracking rows only when
        evaluated; Prec / Rec there are the tracking ones)."""
        out = {"AP": self.groups(self.ap)}
        for name, values in (
            ("MOTA", self.mota),
            ("MOTP", self.motp),
            ("Prec", self.mot_precision),
            ("Rec", self.mot_recall),
        ):
            if values is not None:
                out[name] = self.groups(values)
        return out

    def to_json(self) -> dict:
        """The CLI schema: {"ap": {"per_joint", "groups", "total"}, "mota": {...}} (percent; NaN -> null)."""

        def block(values):
            groups = self.groups(values)
            return {
                "per_joint": {n: _num(v) for n, v in zip(POSETRACK_KEYPOINT_NAMES, values)},
                "groups": {g: _num(groups[g]) for g in GROUP_NAMES},
                "total": _num(groups["Mean"]),
            }

        out = {"ap": block(self.ap)}
        for name, values in (
            ("mota", self.mota),
            ("motp", self.motp),
            ("mot_precision", self.mot_precision),
            ("mot_recall", self.mot_recall),
        ):
            if values is not None:
                out[name] = block(values)
        return out


def _num(v) -> Optional[float]:
    v = float(v)
    return None if math.isnan(v) else v


def format_table(results: PoseTrackResults) -> str:
    """A fixed-width table in the paper's column order (Head, Shoulder, ..., Ankle, Mean)."""
    width = 9
    lines = ["Metric".ljust(6) + "".join(c.rjust(width) for c in TABLE_COLUMNS)]
    for metric, groups in results.summary().items():
        lines.append(metric.ljust(6) + "".join(f"{groups[c]:{width}.2f}" for c in TABLE_COLUMNS))
    return "\n".join(lines)
