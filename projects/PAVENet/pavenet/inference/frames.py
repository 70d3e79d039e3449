"""Frame sources for the demo: a video file, a folder / glob / list of images, or a webcam.

Every source yields BGR uint8 frames (H, W, 3) one at a time (constant memory) and fails early, before
any model is built, with an error that names the input and what was expected: a missing or empty file,
a folder or an image given as a video, a video OpenCV cannot decode or with zero frames, a glob that
matches nothing, a non-image file among the frames, images of different sizes or smaller than
MIN_FRAME_SIDE (read from the image headers, so the whole folder is checked without decoding it); a frame
whose data is corrupt part-way is refused when it is decoded (`data.frame_check.read_frame`).
"""

import glob
import os
import re
from typing import Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.frame_check import check_frame_size, read_frame

__all__ = [
    "read_video_frames",
    "FrameSource",
    "VideoFileSource",
    "ImageListSource",
    "WebcamSource",
    "open_frame_source",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _natural_key(path: str):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", os.path.basename(path))] + [
        path
    ]


def read_video_frames(path: str) -> Iterator[np.ndarray]:
    """The decodable frames of a video file, BGR uint8 (H, W, 3), one at a time (none if OpenCV cannot
    open it: `VideoFileSource` checks that first)."""
    cap = cv2.VideoCapture(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
    finally:
        cap.release()


class FrameSource:
    """Iterable of BGR uint8 frames (H, W, 3).

    Attributes: `name` (a stem used for output names), `fps` (float), `num_frames` (int, or None when
    unknown: webcam), `frame_names` (per-frame relative names such as "000003.jpg", used by the JSON).
    """

    name: str = "video"
    fps: float = 30.0
    num_frames: Optional[int] = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def frame_name(self, index: int) -> str:
        return f"{index:06d}.jpg"


class VideoFileSource(FrameSource):
    def __init__(self, path: str):
        if os.path.isdir(path):
            raise ValueError(
                f"--video-input {path} is a folder; for a folder of frames use --input {path}"
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video file not found: {path}")
        if os.path.getsize(path) == 0:
            raise ValueError(
                f"video {path} is empty (0 bytes): expected a video file (e.g. .mp4, .avi, .mkv)"
            )
        if path.lower().endswith(IMAGE_EXTENSIONS):
            # OpenCV would play a single image as a one-frame video.
            raise ValueError(
                f"--video-input {path} is an image, not a video; for frames use --input"
            )
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise ValueError(
                    f"cannot open video {path}: OpenCV could not decode it (corrupt or unsupported codec)"
                )
            ok, frame = cap.read()
            if not ok or frame is None:
                raise ValueError(f"video {path} has zero decodable frames")
            check_frame_size(frame.shape[1], frame.shape[0], f"video {path}")
            self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.num_frames = (
                count if count > 0 else None
            )  # container counts can be missing; advisory only
        finally:
            cap.release()

    def __iter__(self):
        return read_video_frames(self.path)


class ImageListSource(FrameSource):
    """Frames from image files, in natural-sort order (frame2 before frame10) for folders and globs,
    in the given order for an explicit list."""

    def __init__(self, inputs: Union[str, Sequence[str]], fps: float = 30.0):
        paths: List[str]
        if isinstance(inputs, str):
            inputs = [inputs]
        inputs = list(inputs)
        if not inputs:
            raise ValueError("no input images given")
        if len(inputs) == 1 and os.path.isdir(inputs[0]):
            folder = inputs[0]
            paths = sorted(
                (
                    os.path.join(folder, f)
                    for f in os.listdir(folder)
                    if f.lower().endswith(IMAGE_EXTENSIONS)
                ),
                key=_natural_key,
            )
            if not paths:
                raise ValueError(
                    f"folder {folder} contains no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            self.name = os.path.basename(os.path.normpath(folder))
        elif len(inputs) == 1 and glob.has_magic(inputs[0]):
            paths = sorted(glob.glob(os.path.expanduser(inputs[0])), key=_natural_key)
            if not paths:
                raise FileNotFoundError(f"glob {inputs[0]!r} matches no file")
            self.name = os.path.basename(os.path.dirname(paths[0])) or "frames"
        else:
            paths = inputs
            self.name = os.path.basename(os.path.dirname(os.path.abspath(paths[0]))) or "frames"
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"input image not found: {p}")
            if not p.lower().endswith(IMAGE_EXTENSIONS):
                raise ValueError(
                    f"input {p} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)})"
                    + ("; for a video use --video-input" if p.lower().endswith(VIDEO_LIKE) else "")
                )
        _check_image_headers(paths)
        self.paths = paths
        self.num_frames = len(paths)
        self.fps = fps

    def frame_name(self, index: int) -> str:
        return os.path.basename(self.paths[index])

    def __iter__(self):
        size = None
        for p in self.paths:
            img = read_frame(p)  # refuses a frame the decoder patched over (corrupt data part-way)
            if size is None:
                size = img.shape[:2]
            elif img.shape[:2] != size:
                # One resize transform per video, and the windows need equally sized frames.
                raise ValueError(
                    f"image {p} has size {img.shape[:2]}, but the first frame has {size}"
                )
            yield img


VIDEO_LIKE = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


def _check_image_headers(paths: Sequence[str]) -> None:
    """Every path is a readable image of the first one's size (headers only: cheap for long videos).
    One resize transform serves a whole video and the windows stack equally sized frames."""
    first = None
    for p in paths:
        try:
            with Image.open(p) as im:
                size = im.size  # (W, H) as stored
                if im.getexif().get(0x0112) in (
                    5,
                    6,
                    7,
                    8,
                ):  # EXIF orientation: cv2.imread turns it upright
                    size = size[::-1]
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {p} (not an image or corrupt: {e})") from e
        check_frame_size(size[0], size[1], f"image {p}")
        if first is None:
            first = (p, size)
        elif size != first[1]:
            raise ValueError(
                f"image {p} is {size[0]}x{size[1]} (WxH) but the first frame {first[0]} is "
                f"{first[1][0]}x{first[1][1]}: "
                "all frames of one video must have one size"
            )


class WebcamSource(FrameSource):
    def __init__(self, device: int = 0, max_frames: Optional[int] = None):
        self.device = device
        self.name = f"webcam{device}"
        self.max_frames = max_frames
        self.num_frames = max_frames

    def __iter__(self):
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            raise ValueError(f"cannot open webcam {self.device}")
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
        try:
            n = 0
            while self.max_frames is None or n < self.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield frame
        finally:
            cap.release()


def open_frame_source(
    video_input: Optional[str] = None, inputs: Optional[Sequence[str]] = None, webcam: bool = False
) -> FrameSource:
    """Exactly one of `video_input`, `inputs` (images / a folder / a glob) or `webcam`."""
    given = [video_input is not None, bool(inputs), bool(webcam)]
    if sum(given) != 1:
        raise ValueError("give exactly one of --video-input, --input or --webcam")
    if video_input is not None:
        return VideoFileSource(video_input)
    if inputs:
        return ImageListSource(inputs)
    return WebcamSource(0)
