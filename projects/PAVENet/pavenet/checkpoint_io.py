"""Checkpoint file I/O for the whole package: safe reading of torch and pickle files, atomic writing.

This module owns how checkpoint files are read and written, and nothing about what they hold: the
training checkpointer (`pavenet.checkpoint`) reads our snapshots and converted weights through it and
writes snapshots with `atomic_torch_save`; the official-weight converter (`pavenet.conversion`) reads
mmcv files and writes its output through it. Neither of those is imported here.

Reading a torch file: ``torch.load(weights_only=True)``; then the same with numpy scalars / dtypes /
arrays allowed (data types only, no code; mmcv's ``meta`` holds numpy scalars); and a full unpickle only
when the caller says so (``allow_pickle=True`` / ``--allow-pickle`` for a file the user names), because
unpickling can run arbitrary code. detectron2 / Caffe2 model-zoo ``.pkl`` files (dicts of numpy arrays)
are read by ``load_numpy_pickle``, an unpickler that admits only numpy arrays / scalars / dtypes and
plain containers: a crafted pickle that names any other callable (``os.system``, ``builtins.open``, ...)
is refused before anything runs. Writing goes through ``utils.atomic.atomic_open``: a kill at any moment
leaves the old file or the new one under the final name, never a truncated one.
"""

import logging
import os
import pickle
import zipfile
from typing import Dict, Mapping

import torch

from .utils.atomic import atomic_open

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "load_numpy_pickle",
    "load_official_checkpoint",
    "atomic_torch_save",
    "save_converted_checkpoint",
]


class CheckpointReadError(RuntimeError, ValueError):
    """The file is missing, truncated or not a torch checkpoint. A ValueError too, so the tools' bad-input
    handlers (`except (FileNotFoundError, ValueError)`) print it as one line and exit with status 2."""


class UnsafeCheckpointError(CheckpointReadError):
    """The file needs a full (code-executing) unpickle, which the caller did not allow."""


def _numpy_safe_globals():
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency of torch here
        return []
    out = [np.dtype, np.ndarray]
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(mod_name, fromlist=["scalar", "_reconstruct"])
            out += [mod.scalar, mod._reconstruct]
            break
        except (ImportError, AttributeError):
            continue
    for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8):
        out.append(type(np.dtype(t)))
    return out


def _is_weights_only_refusal(err: BaseException) -> bool:
    msg = str(err)
    return (
        isinstance(err, pickle.UnpicklingError)
        or "weights_only" in msg.lower()
        or "Unsupported global" in msg
    )


def _looks_truncated(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK":  # torch >= 1.6 zip format: a cut file loses its central directory
        return not zipfile.is_zipfile(path)
    return False


def load_official_checkpoint(path: str, allow_pickle: bool = False) -> Dict:
    """Load an mmcv / torch checkpoint from ``path`` on CPU as safely as it allows.

    Returns the loaded object (a dict). Raises ``CheckpointReadError`` (missing / truncated /
    unreadable) or ``UnsafeCheckpointError`` (needs ``allow_pickle=True``), both naming the file.
    """
    if not os.path.isfile(path):
        raise CheckpointReadError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(f"{path} is empty (0 bytes): the download or copy did not finish")
    if _looks_truncated(path):
        raise CheckpointReadError(
            f"{path} is truncated or corrupted (zip central directory missing, {os.path.getsize(path)} bytes): "
            "download it again"
        )
    first_err = None
    for extra in ([], _numpy_safe_globals()):
        try:
            if extra:
                with torch.serialization.safe_globals(extra):
                    obj = torch.load(path, map_location="cpu", weights_only=True)
            else:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            return _check_dict(obj, path)
        except (EOFError, zipfile.BadZipFile) as e:
            raise CheckpointReadError(
                f"{path} is truncated or corrupted ({type(e).__name__}: {e})"
            ) from e
        except (pickle.UnpicklingError, RuntimeError, AttributeError, ValueError) as e:
            if (
                "truncated" in str(e)
                or "failed reading zip archive" in str(e)
                or "central directory" in str(e)
            ):
                raise CheckpointReadError(
                    f"{path} is truncated or corrupted: {str(e).splitlines()[0]}"
                ) from e
            if not _is_weights_only_refusal(e):
                raise CheckpointReadError(
                    f"could not read {path}: {type(e).__name__}: {str(e).splitlines()[0]}"
                ) from e
            first_err = first_err or e
    reason = str(first_err).strip().splitlines()
    reason = next(
        (ln for ln in reason if "Unsupported global" in ln or "GLOBAL" in ln),
        reason[0] if reason else "",
    )
    if not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it contains Python objects "
            f"other than tensors and plain data ({reason.strip()}). Unpickling it fully can run arbitrary "
            "code; if you trust this file, rerun with --allow-pickle (allow_pickle=True)."
        ) from first_err
    logger.warning("Loading %s with a full unpickle (allow_pickle=True): %s", path, reason.strip())
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (EOFError, pickle.UnpicklingError, RuntimeError) as e:
        raise CheckpointReadError(
            f"{path} is truncated or corrupted: {type(e).__name__}: {e}"
        ) from e
    return _check_dict(obj, path)


# The globals a pickle of numpy arrays, numpy scalars and plain containers needs (protocols 0-5, Python 2
# pickles included). Each builds data from data; none runs anything else.
_NUMPY_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),  # ndarray.__reduce__ (numpy < 2 names)
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),  # numpy scalars, e.g. np.float32(1)
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # ndarray.__reduce_ex__ with protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes written with protocol < 3
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("__builtin__", "set"),  # Python 2 names (mapped to builtins by the unpickler)
    ("__builtin__", "frozenset"),
    ("__builtin__", "complex"),
    ("__builtin__", "bytearray"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _NUMPY_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return super().find_class(module, name)


def load_numpy_pickle(path: str) -> Dict:
    """Unpickle ``path`` (a detectron2 / Caffe2 model-zoo ``.pkl``) admitting only numpy arrays, numpy
    scalars / dtypes and plain containers. Returns the loaded dict. Raises ``CheckpointReadError``
    (missing / truncated / not a dict) or ``UnsafeCheckpointError`` (the pickle names any other
    Python object), both naming the file; nothing in a refused file is executed."""
    if not os.path.isfile(path):
        raise CheckpointReadError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()  # latin1: Python 2 numpy pickles
    except pickle.UnpicklingError as e:
        if "is not allowed" not in str(e):
            raise CheckpointReadError(f"{path} is not a readable pickle: {e}") from e
        raise UnsafeCheckpointError(
            f"{path} is not loaded: it is a pickle that calls Python code ({e}), and only numpy arrays and "
            "plain containers are admitted from .pkl files. Unpickling it could run arbitrary code. For "
            "official PAVE-Net / PETR weights run `python tools/convert_official_ckpt.py --src <official .pth> "
            "--dst <out>.pth`, which writes a tensors-only file; for a detectron2 model-zoo file, download it "
            "again from the model zoo."
        ) from e
    except (EOFError, ValueError, TypeError, IndexError, KeyError) as e:
        raise CheckpointReadError(
            f"{path} is truncated or not a pickle ({type(e).__name__}: {e})"
        ) from e
    return _check_dict(obj, path)


def _check_dict(obj, path: str) -> Dict:
    if not isinstance(obj, Mapping):
        raise CheckpointReadError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return dict(obj)


def save_converted_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str) -> None:
    """Write ``{"model": state_dict}`` (tensors only) to ``path`` atomically.

    The file is written next to ``path`` and renamed over it, so an interrupted run never leaves a
    half-written checkpoint that detectron2's ``MODEL.WEIGHTS`` would try to load.
    """
    tensors = {}
    for k, v in state_dict.items():
        if not torch.is_tensor(v):
            raise TypeError(f"{k}: expected a tensor, got {type(v).__name__}")
        v = v.detach().cpu().contiguous()
        # torch.save writes a view's whole storage: copy views of larger tensors (e.g. slices).
        if v.untyped_storage().nbytes() != v.numel() * v.element_size():
            v = v.clone()
        tensors[k] = v
    atomic_torch_save({"model": tensors}, path)


def atomic_torch_save(obj, path: str) -> None:
    """`torch.save(obj, path)` written to a temporary file next to `path`, fsynced, renamed over it."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
