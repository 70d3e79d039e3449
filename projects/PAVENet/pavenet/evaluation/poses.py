"""The data every stage of the PoseTrack evaluation shares, and nothing else.

It owns the in-memory form of poses (`Poses`: one frame's people in the model's 15-joint order,
`GTSequence`: one GT video), the constants poseval fixes for them (joint count, the fallback score,
the track-id limit, the marker for a person without a track id) and re-exports `PoseTrackFormatError`
(`data.posetrack_files`, shared with the dataset loader), the error every reader and check raises with
the offending file in its message. The readers
(`readers.py`) fill these containers, the matching (`matching.py`), AP (`ap.py`) and MOTA
(`mota.py`) stages consume them, `poseval.py` runs the pipeline.
"""

from dataclasses import dataclass
from typing import Iterable, List, Optional

import numpy as np

from ..data.keypoint_meta import POSETRACK_KEYPOINT_NAMES
from ..data.posetrack_files import PoseTrackFormatError

__all__ = [
    "NUM_JOINTS",
    "MIN_SCORE",
    "MAX_TRACK_ID",
    "NO_TRACK_ID",
    "PoseTrackFormatError",
    "Poses",
    "GTSequence",
    "predictions_from_arrays",
]

NUM_JOINTS = len(POSETRACK_KEYPOINT_NAMES)  # 15
MIN_SCORE = -9999.0  # poseval's fallback joint score when a prediction carries none
MAX_TRACK_ID = 10000  # poseval asserts track_id < 10000
NO_TRACK_ID = np.iinfo(
    np.int64
).min  # marks a person written without track_id (any int id is legal)


@dataclass
class Poses:
    """The people of one frame, in the 15-joint order.

    xy: (N, 15, 2) float64; present: (N, 15) bool (joint annotated / predicted);
    scores: (N, 15) float64 joint confidences (predictions; MIN_SCORE when missing);
    track_ids: (N,) int64, NO_TRACK_ID where the person has no track id;
    head: (N, 4) float64 GT head box x1, y1, x2, y2 (NaN when absent);
    has_points: (N,) bool, False for a 2017 person without `annopoints[0]["point"]` (dropped by cleanup).
    """

    xy: np.ndarray
    present: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    head: np.ndarray
    has_points: np.ndarray

    @staticmethod
    def empty() -> "Poses":
        return Poses.allocate(0)

    @staticmethod
    def allocate(n: int) -> "Poses":
        return Poses(
            xy=np.zeros((n, NUM_JOINTS, 2)),
            present=np.zeros((n, NUM_JOINTS), dtype=bool),
            scores=np.full((n, NUM_JOINTS), MIN_SCORE),
            track_ids=np.full((n,), NO_TRACK_ID, dtype=np.int64),
            head=np.full((n, 4), np.nan),
            has_points=np.ones((n,), dtype=bool),
        )

    def __len__(self) -> int:
        return self.xy.shape[0]

    def take(self, keep: np.ndarray) -> "Poses":
        return Poses(
            self.xy[keep],
            self.present[keep],
            self.scores[keep],
            self.track_ids[keep],
            self.head[keep],
            self.has_points[keep],
        )


@dataclass
class GTSequence:
    """One GT video: `frames[i]` are the people of frame i, `ignore[i]` its ignore polygons ((V, 2) arrays),
    `images[i]` the raw 2018-style image entry (used by the writer), `path` the source file (for messages)."""

    name: str
    frames: List[Poses]
    ignore: List[List[np.ndarray]]
    images: List[dict]
    path: str = ""

    def __len__(self) -> int:
        return len(self.frames)


def predictions_from_arrays(
    keypoints: np.ndarray, track_ids: Optional[Iterable[int]] = None
) -> Poses:
    """(N, 15, 3) x, y, score in the 15-joint order (+ optional (N,) track ids) -> Poses. Every joint is
    a prediction unless it is exactly (0, 0, 0), as in the written files."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    poses = Poses.allocate(kp.shape[0])
    poses.xy[:] = kp[..., :2]
    poses.scores[:] = kp[..., 2]
    poses.present[:] = ~((kp[..., 0] == 0) & (kp[..., 1] == 0) & (kp[..., 2] == 0))
    if track_ids is not None:
        poses.track_ids[:] = np.asarray(list(track_ids), dtype=np.int64)
    return poses
