"""`PAVENetCheckpointer`: detectron2's checkpointer with safe loading, atomic saving and clear errors.

Loading: torch >= 2.6 loads with `weights_only=True` by default and fvcore calls `torch.load` without the
flag. Our own checkpoints (training snapshots and converted official weights) hold tensors and plain
values only, so they load safely; `.pkl` model-zoo files are read with an unpickler that admits numpy
arrays and plain containers only (detectron2's own `.pkl` reader is a plain `pickle.load`, which runs
whatever a crafted file names). Anything else gets an error that names the file and the fix, instead of
safety being turned off globally.

Saving: fvcore writes `model_*.pth` and `last_checkpoint` in place, so a process killed while saving
leaves a truncated checkpoint under its final name, and `--resume` then fails on it. Here both are
written to a temporary file in the same folder, fsynced and renamed over the final name: a kill at any
moment leaves the previous checkpoint and a `last_checkpoint` that names an intact file.

Resuming: a `last_checkpoint` that names a missing or unreadable file is an error naming both files and
the intact checkpoints that could be used instead; we do not silently fall back to an older one (which
would repeat training the user may not expect). Only the `--resume` / `resume_or_load` path uses
`last_checkpoint`.
"""
import glob
import os
from urllib.parse import urlparse

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .conversion.checkpoint_io import (
    CheckpointReadError,
    UnsafeCheckpointError,
    load_numpy_pickle,
    load_official_checkpoint,
)
from .utils.atomic import atomic_open

__all__ = ["PAVENetCheckpointer", "CheckpointReadError", "UnsafeCheckpointError", "WeightsNotFoundError"]

CONVERTER = "tools/convert_official_ckpt.py"


class WeightsNotFoundError(CheckpointReadError):
    """MODEL.WEIGHTS names a local file that does not exist."""


def _local_path(path: str):
    """`path` without a detectron2 URL query (`?matching_heuristics=True`); None for remote URLs."""
    if "://" in path:
        return None
    return urlparse(path)._replace(query="").geturl()


def weights_not_found_message(path: str) -> str:
    return (
        f"MODEL.WEIGHTS = {path!r}: no such file. Official PAVE-Net / PETR weights are converted into it with "
        f"`python {CONVERTER} --src <official .pth> --dst {path}` (docs/MODEL_ZOO.md); a model trained here "
        "is OUTPUT_DIR/model_final.pth; MODEL.WEIGHTS '' starts from random weights."
    )


class PAVENetCheckpointer(DetectionCheckpointer):
    # --- loading ---------------------------------------------------------------------------------------
    def load(self, path, *args, **kwargs):
        local = _local_path(path) if path else None
        if local is not None and not os.path.isfile(local):
            # fvcore would stop on a bare `AssertionError: Checkpoint ... not found!`
            raise WeightsNotFoundError(weights_not_found_message(path))
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            return _model_zoo_pickle(load_numpy_pickle(filename))
        if filename.endswith(".pyth"):  # pycls format; torch >= 2.6 reads it with weights_only=True
            return super()._load_file(filename)
        try:
            loaded = load_official_checkpoint(filename, allow_pickle=False)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f"{filename} is not a tensors-only checkpoint, so it is not loaded with "
                f"torch.load(weights_only=True). For official mmdetection/mmcv weights run {CONVERTER}, which "
                "writes a tensors-only file; for a file you trust, re-save its state_dict as {'model': state_dict}."
            ) from e
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded

    def resume_or_load(self, path, *, resume=True):
        if resume and self.has_checkpoint():
            last = self.get_checkpoint_file()
            if not os.path.isfile(last):
                raise CheckpointReadError(self._bad_resume_message(last, "does not exist"))
            try:
                return self.load(last)
            except CheckpointReadError as e:
                raise CheckpointReadError(self._bad_resume_message(last, f"cannot be loaded ({e})")) from e
        return self.load(path, checkpointables=[])

    def _bad_resume_message(self, last, problem):
        tag = os.path.join(self.save_dir, "last_checkpoint")
        others = sorted(os.path.basename(p) for p in glob.glob(os.path.join(self.save_dir, "model_*.pth")))
        others = [p for p in others if p != os.path.basename(last)]
        return (
            f"cannot resume: {tag} names {last}, which {problem}. To resume from an intact checkpoint, write "
            f"its file name into {tag} (in this folder: {', '.join(others) or 'none'}); to start over, run "
            "without --resume."
        )

    # --- saving ----------------------------------------------------------------------------------------
    def save(self, name, **kwargs):
        """`Checkpointer.save` (same file name, content and log line), written atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        if "://" in self.save_dir:  # a remote PathManager folder: no local rename to rely on
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        assert os.path.basename(save_file) == basename, basename
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_open(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        if "://" in self.save_dir:
            return super().tag_last_checkpoint(last_filename_basename)
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)


def _model_zoo_pickle(data):
    """detectron2's reading of a `.pkl` dict (v0.6 and main): the detectron2 model-zoo format as it is,
    otherwise Caffe2 / Detectron1 blobs renamed by detectron2's name-matching heuristics."""
    if "model" in data and "__author__" in data:
        return data
    if "blobs" in data:  # detection models have "blobs", ImageNet backbones do not
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
