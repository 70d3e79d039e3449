"""Demo outputs that never look complete when they are not: write to a temporary name, rename at the end.

A crash, Ctrl-C or bad frame half-way through leaves no file at the final path (and removes the
temporary one), so a later run or a user never mistakes a truncated video / JSON for a result.
`check_output_path` refuses, before any work, an output whose folder cannot be created or written.
"""

import os
from typing import Tuple

import cv2
import numpy as np

from ...inference.frames import read_video_frames
from ...utils.atomic import atomic_dir, atomic_path

__all__ = [  # atomic_* re-exported for the demo
    "atomic_path",
    "atomic_dir",
    "check_output_path",
    "DemoOutputError",
    "VideoWriter",
    "VIDEO_EXTENSIONS",
]

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi")
# OpenCV picks the container from the extension; these codecs ship with the opencv-python wheels.
_FOURCC = {".mp4": "mp4v", ".mkv": "x264", ".avi": "MJPG"}


class DemoOutputError(ValueError):
    """An output the demo cannot write; the message names the option and the path."""


def check_output_path(path: str, option: str, is_dir: bool = False) -> None:
    """Raise DemoOutputError naming `option` and `path` when `path` (a file, or a folder with `is_dir`)
    cannot be created: it exists as the other kind, an existing ancestor is a file, or that ancestor is
    not writable. Creates nothing."""
    target = os.path.abspath(path)
    if is_dir and os.path.exists(target) and not os.path.isdir(target):
        raise DemoOutputError(
            f"{option} {path}: exists and is a file, expected a folder (or a video name "
            f"ending in {', '.join(VIDEO_EXTENSIONS)})"
        )
    if not is_dir and os.path.isdir(target):
        raise DemoOutputError(f"{option} {path}: is a folder, expected a file name")
    probe = target if is_dir else os.path.dirname(target)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise DemoOutputError(
            f"{option} {path}: cannot be created, {probe} is a file, not a folder"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DemoOutputError(f"{option} {path}: no permission to write in {probe}")


class VideoWriter:
    """Lazily opened OpenCV writer (the frame size is known at the first frame)."""

    def __init__(self, path: str, fps: float):
        ext = os.path.splitext(path)[1].lower()
        if ext not in _FOURCC:
            raise DemoOutputError(
                f"unsupported video extension {ext!r} for {path}; use one of {VIDEO_EXTENSIONS}"
            )
        self.path = path
        self.fps = fps if fps and fps > 0 else 30.0
        self.fourcc = _FOURCC[ext]
        self._writer = None
        self.num_frames = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame_bgr.shape[:2]
            self._writer = cv2.VideoWriter(
                self.path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h)
            )
            if (
                not self._writer.isOpened() and self.fourcc == "x264"
            ):  # no x264 in this OpenCV build
                self._writer = cv2.VideoWriter(
                    self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h)
                )
            if not self._writer.isOpened():
                raise DemoOutputError(
                    f"OpenCV cannot open a video writer for {self.path} (codec {self.fourcc})"
                )
        self._writer.write(frame_bgr)
        self.num_frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def video_frame_count(path: str) -> Tuple[int, Tuple[int, int]]:
    """Decode a video and return (number of frames, (H, W)) — used by tests and sanity checks."""
    n, size = 0, (0, 0)
    for frame in read_video_frames(path):
        n, size = n + 1, frame.shape[:2]
    return n, size
