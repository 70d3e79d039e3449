"""Demo outputs that never look complete when they are not: write to a temporary name, rename at the end.

A crash, Ctrl-C or bad frame half-way through leaves no file at the final path (and removes the
temporary one), so a later run or a user never mistakes a truncated video / JSON for a result.
"""
import os
from typing import Tuple

import cv2
import numpy as np

from ..utils.atomic import atomic_dir, atomic_path

__all__ = ["atomic_path", "atomic_dir", "VideoWriter", "VIDEO_EXTENSIONS"]  # atomic_* re-exported for the demo

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi")
# OpenCV picks the container from the extension; these codecs ship with the opencv-python wheels.
_FOURCC = {".mp4": "mp4v", ".mkv": "x264", ".avi": "MJPG"}


class VideoWriter:
    """Lazily opened OpenCV writer (the frame size is known at the first frame)."""

    def __init__(self, path: str, fps: float):
        ext = os.path.splitext(path)[1].lower()
        if ext not in _FOURCC:
            raise ValueError(f"unsupported video extension {ext!r} for {path}; use one of {VIDEO_EXTENSIONS}")
        self.path = path
        self.fps = fps if fps and fps > 0 else 30.0
        self.fourcc = _FOURCC[ext]
        self._writer = None
        self.num_frames = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame_bgr.shape[:2]
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened() and self.fourcc == "x264":  # no x264 in this OpenCV build
                self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot open a video writer for {self.path} (codec {self.fourcc})")
        self._writer.write(frame_bgr)
        self.num_frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def video_frame_count(path: str) -> Tuple[int, Tuple[int, int]]:
    """Decode a video and return (number of frames, (H, W)) — used by tests and sanity checks."""
    cap = cv2.VideoCapture(path)
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        size = frame.shape[:2]
    cap.release()
    return n, size
