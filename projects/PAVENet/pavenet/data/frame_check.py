"""The checks on a video's frames that every frame source runs: a usable size, and a complete decode.

A JPEG whose header is valid but whose data is corrupt or cut short part-way decodes "successfully" in
OpenCV and PIL: libjpeg fills the rest of the picture with grey and only prints a line such as
"Corrupt JPEG data: premature end of data segment" on the process's stderr, naming no file. `read_frame`
catches that line (stderr is redirected at the file-descriptor level for the one decode) and refuses the
frame, naming the file; other output of that moment is passed on.
"""

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator, List

import cv2
import numpy as np

from ..utils.cli_numbers import MIN_FRAME_SIDE

__all__ = ["MIN_FRAME_SIDE", "check_frame_size", "read_frame"]

# What libjpeg (inside OpenCV) prints when it patches over bad data instead of failing.
_DECODER_DAMAGE = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "JPEG datastream contains no image",
    "Invalid JPEG file structure",
    "Bogus marker length",
    "Unsupported marker type",
)


def check_frame_size(width: int, height: int, where: str) -> None:
    """Refuse a frame smaller than MIN_FRAME_SIDE on a side (`where` names it: a file, a video)."""
    if min(width, height) < MIN_FRAME_SIDE:
        raise ValueError(
            f"{where} is {width}x{height} pixels (WxH): frames must be at least {MIN_FRAME_SIDE} "
            "pixels on each side"
        )


@contextmanager
def _stderr_lines() -> Iterator[List[str]]:
    """Collect what is written to file descriptor 2 (C libraries included) inside the block."""
    lines: List[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                tmp.seek(0)
                lines.extend(tmp.read().decode("utf-8", "replace").splitlines())
    finally:
        os.close(saved)


def read_frame(path: str) -> np.ndarray:
    """The image at `path` as BGR uint8 (H, W, 3), as `cv2.imread` reads it (EXIF orientation applied);
    ValueError naming the file when it cannot be decoded or the decoder patched over damaged data."""
    with _stderr_lines() as lines:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    damage = [ln for ln in lines if ln.startswith(_DECODER_DAMAGE)]
    other = [ln for ln in lines if ln not in damage]
    if other:  # not ours to swallow
        print("\n".join(other), file=sys.stderr)
    if img is None:
        raise ValueError(f"cannot read image {path} (not an image or corrupt)")
    if damage:
        raise ValueError(
            f"image {path} is corrupt: its data is damaged or cut short, and the decoder would fill "
            f"the rest with grey ({damage[0].strip()})"
        )
    check_frame_size(img.shape[1], img.shape[0], f"image {path}")
    return img
