"""Outputs that never look complete when they are not: write to a temporary name next to the final
path, rename over it only when the write succeeded.

A crash, Ctrl-C or bad input half-way leaves no file at the final path (and removes the temporary one),
so nobody mistakes a truncated JSON, video or checkpoint for a result. Used by the evaluator's writers,
the demo's outputs and the checkpoint converter.
"""
import contextlib
import json
import os
import shutil
from typing import Iterator, Optional

__all__ = ["atomic_path", "atomic_dir", "atomic_write_json"]


def _temp_name(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.partial-{os.getpid()}{ext}"  # keep the extension: OpenCV picks the container by it


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary file path next to `path`; renamed to `path` only if the block succeeds."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise RuntimeError(f"nothing was written for {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields a temporary directory next to `path`; it replaces `path` only if the block succeeds."""
    tmp = os.path.normpath(path) + f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_json(path: str, obj, indent: Optional[int] = None) -> None:
    """`json.dump` to `path` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
