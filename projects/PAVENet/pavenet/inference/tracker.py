"""Track ids without an external tracker: match the persons of consecutive windows on shared frames.

Window t covers frames t-T..t+T (clamped at the borders); window t+d covers t+d-T..t+d+T, so the two
windows predict poses for the same F-d frames: index i+d of window t and index i of window t+d are the
same frame. The model outputs every frame's pose of every person (`pred_frame_keypoints` (k, F, K, 2)),
so two windows can be compared on the very frames they share, which is far more reliable than comparing
key-frame poses one frame apart. Similarity = OKS averaged over the shared frames; Hungarian matching
(scipy) on 1 - similarity; ids are carried forward, kept alive for `patience` windows while a person is
missing (e.g. briefly scored below the demo threshold), and never reused within a video.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from pavenet.data.keypoint_meta import POSETRACK_OKS_SIGMAS
from pavenet.utils.oks import pairwise_pose_oks

__all__ = ["PoseTracker", "pose_oks"]


def pose_oks(a: np.ndarray, b: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """OKS between every pose of `a` (n, K, 2) and every pose of `b` (m, K, 2) -> (n, m); scale floored
    at 1 px^2 so that degenerate (collapsed) poses do not divide by zero."""
    return pairwise_pose_oks(a, b, sigmas, min_scale=1.0)


@dataclass
class _Track:
    track_id: int
    frame_keypoints: np.ndarray  # (F, K, 2) poses of the window where the track was last seen
    last_window: int


class PoseTracker:
    """Assigns a track id to each person of each window, one window per `update` call, in order.

    Args:
        num_frames: F, the window length (frames t-T..t+T).
        oks_sigmas: per-joint OKS sigmas (K,); PoseTrack's 15 by default.
        match_thresh: minimum mean OKS for two windows' persons to be the same track.
        patience: windows a track survives without a match (0 = it must match in the next window).
    Use one tracker per video (or call `reset`): ids are unique within the tracker's lifetime.
    """

    def __init__(
        self,
        num_frames: int,
        oks_sigmas: Optional[Sequence[float]] = None,
        match_thresh: float = 0.3,
        patience: int = 2,
    ):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.num_frames = num_frames
        self.sigmas = np.asarray(
            POSETRACK_OKS_SIGMAS if oks_sigmas is None else oks_sigmas, dtype=np.float64
        )
        self.match_thresh = float(match_thresh)
        self.patience = int(patience)
        self.reset()

    def reset(self) -> None:
        self._tracks: List[_Track] = []
        self._next_id = 0
        self._window = -1

    def _similarity(self, track: _Track, poses: np.ndarray) -> np.ndarray:
        """Mean OKS of one track's last window vs the current window's persons `poses` (m, F, K, 2) -> (m,)."""
        d = self._window - track.last_window  # >= 1
        F = self.num_frames
        if d < F:
            # Shared frames: index d..F-1 of the track's window == index 0..F-1-d of the current one.
            old = track.frame_keypoints[d:]  # (F-d, K, 2)
            new = poses[:, : F - d]  # (m, F-d, K, 2)
            sims = [pose_oks(old[i][None], new[:, i], self.sigmas)[0] for i in range(F - d)]
            return np.mean(sims, axis=0)
        # No shared frame (long gap or F == 1): compare the closest frames, the track's last and our first.
        return pose_oks(track.frame_keypoints[-1][None], poses[:, 0], self.sigmas)[0]

    def update(self, frame_keypoints) -> np.ndarray:
        """Advance one window. `frame_keypoints`: (k, F, K, 2) poses of this window's persons on its F
        frames, in one pixel frame for the whole video. Returns int64 track ids (k,)."""
        poses = np.asarray(frame_keypoints, dtype=np.float64)
        if poses.ndim != 4 or poses.shape[1] != self.num_frames or poses.shape[3] != 2:
            raise ValueError(
                f"frame_keypoints must be (k, F={self.num_frames}, K, 2), got {tuple(poses.shape)}"
            )
        self._window += 1
        # Drop tracks that have been missing for more than `patience` windows.
        self._tracks = [
            t for t in self._tracks if self._window - t.last_window <= self.patience + 1
        ]
        k = len(poses)
        ids = np.full(k, -1, dtype=np.int64)
        if self._tracks and k:
            sim = np.stack([self._similarity(t, poses) for t in self._tracks])  # (n_tracks, k)
            rows, cols = linear_sum_assignment(-sim)
            for r, c in zip(rows, cols):
                if sim[r, c] >= self.match_thresh:
                    track = self._tracks[r]
                    ids[c] = track.track_id
                    track.frame_keypoints = poses[c]
                    track.last_window = self._window
        for c in np.nonzero(ids < 0)[0]:
            ids[c] = self._next_id
            self._tracks.append(_Track(self._next_id, poses[c], self._window))
            self._next_id += 1
        return ids

    def update_instances(self, instances):
        """Set `pred_track_ids` (k,) int64 on a detectron2 `Instances` holding `pred_frame_keypoints`."""
        import torch

        fk = instances.pred_frame_keypoints
        fk = fk.detach().cpu().numpy() if isinstance(fk, torch.Tensor) else np.asarray(fk)
        instances.pred_track_ids = torch.as_tensor(self.update(fk), dtype=torch.int64)
        return instances
