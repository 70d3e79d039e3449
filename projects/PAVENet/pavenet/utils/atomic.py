"""Outputs that never look complete when they are not: write to a temporary name next to the final
path, rename over it only when the write succeeded.

A crash, Ctrl-C or bad input half-way leaves the previous result (or nothing) at the final path, never a
truncated one, so nobody mistakes a half-written JSON, video or checkpoint for a result. Used by the
evaluator's writers, the demo's outputs, the checkpoint converter and the training checkpointer.

An exception removes the temporary file; a SIGKILL or power loss can leave one behind
(`<name>.partial-<pid>...`), which is safe to delete.
"""

import contextlib
import json
import os
import shutil
from typing import IO, Iterator, Optional

__all__ = ["atomic_path", "atomic_open", "atomic_dir", "atomic_write_json"]


def _temp_name(path: str, keep_ext: bool) -> str:
    if (
        not keep_ext
    ):  # e.g. a temporary `model_0000099.pth.partial-7` is not taken for a `*.pth` checkpoint
        return f"{path}.partial-{os.getpid()}"
    root, ext = os.path.splitext(path)
    return (
        f"{root}.partial-{os.getpid()}{ext}"  # OpenCV and PIL pick the container by the extension
    )


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable (POSIX); not possible / not needed on Windows.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: str, keep_ext: bool) -> Iterator[str]:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _temp_name(path, keep_ext)
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise RuntimeError(f"nothing was written for {path}")
        os.replace(tmp, path)
        _fsync_dir(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_path(path: str) -> "contextlib.AbstractContextManager[str]":
    """Yields a temporary file path next to `path` (same extension); renamed to `path` only if the block
    succeeds. For writers that open the file themselves (OpenCV, PIL); prefer `atomic_open` otherwise."""
    return _atomic_file(path, keep_ext=True)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb") -> Iterator[IO]:
    """`open(path, mode)` for writing whose content appears at `path` only complete: written to a
    temporary file in the same folder, flushed and fsynced, then `os.replace`d over `path`."""
    if not any(c in mode for c in "wax"):
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with _atomic_file(path, keep_ext=False) as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields a temporary directory next to `path`; it replaces `path` only if the block succeeds.

    The old folder is renamed aside, the new one renamed in, and only then is the old one removed, so
    the old result is never deleted before the new one is in place. POSIX has no atomic swap of two
    folders: a kill between the two renames (microseconds) leaves the complete old folder as
    `<path>.old-<pid>` and the complete new one as `<path>.partial-<pid>`.
    """
    final = os.path.normpath(path)
    tmp = f"{final}.partial-{os.getpid()}"
    aside = f"{final}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(final):
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(final, aside)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(aside, final)  # put the old result back
                raise
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(os.path.dirname(os.path.abspath(final)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_json(path: str, obj, indent: Optional[int] = None) -> None:
    """`json.dump` to `path` atomically (flushed to disk before the rename)."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)
