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

Fit: detectron2 loads what fits and only warns about the rest ("Skip loading parameter ... due to
incompatible shapes", missing / unexpected keys), which is right for fine-tuning an ImageNet backbone
with a new head but turns a checkpoint of another architecture or joint count (a tiny-model snapshot
in the R50 config, a 17-joint checkpoint in a 15-joint model) into a silently half-random model. Our
`.pth` files (training snapshots, converted official weights) always hold the whole model, so with
`MODEL.PAVENET.WEIGHTS_MISMATCH "error"` (the default) any shape difference, missing or unexpected
tensor is a `WeightsMismatchError` naming the file, the tensors and what was expected. `"skip"` keeps
detectron2's behaviour, for fine-tuning with a different head on purpose. detectron2 model-zoo `.pkl`
files (ImageNet backbones, renamed by detectron2's matching heuristics) are partial by design and keep
detectron2's behaviour.

Weight average: a checkpoint of a run with `MODEL.PAVENET.EMA_DECAY > 0` holds the raw weights ("model")
and their moving average ("model_ema", engine/ema.py). A load that only reads weights (inference,
`--eval-only`, MODEL.WEIGHTS of a new run) takes the average, which is what the run evaluated; a resume,
which restores the trainer's state too, takes the raw weights and restores the average beside them.

Resuming: a `last_checkpoint` that names a missing or unreadable file is an error naming both files and
the intact checkpoints that could be used instead; we do not silently fall back to an older one (which
would repeat training the user may not expect). Only the `--resume` / `resume_or_load` path uses
`last_checkpoint`.
"""

import glob
import os
from urllib.parse import urlparse

from detectron2.checkpoint import DetectionCheckpointer

from .checkpoint_io import (
    CheckpointReadError,
    UnsafeCheckpointError,
    atomic_torch_save,
    load_numpy_pickle,
    load_official_checkpoint,
)
from .utils.atomic import atomic_open
from .utils.state_dict import state_dict_mismatch

__all__ = [
    "PAVENetCheckpointer",
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "WEIGHTS_MISMATCH_CHOICES",
]

CONVERTER = "tools/convert_official_ckpt.py"


WEIGHTS_MISMATCH_CHOICES = ("error", "skip")


class WeightsNotFoundError(CheckpointReadError):
    """MODEL.WEIGHTS names a local file that does not exist."""


class WeightsMismatchError(CheckpointReadError):
    """The checkpoint's tensors do not fit the model (another architecture, joint or frame count)."""


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
    """`DetectionCheckpointer` plus `weights_mismatch` ("error" | "skip", `MODEL.PAVENET.WEIGHTS_MISMATCH`):
    what to do when a checkpoint's tensors do not fit the model (see the module docstring)."""

    def __init__(self, model, save_dir: str = "", *, weights_mismatch: str = "error", **kwargs):
        if weights_mismatch not in WEIGHTS_MISMATCH_CHOICES:
            raise ValueError(
                f"MODEL.PAVENET.WEIGHTS_MISMATCH = {weights_mismatch!r}, expected one of "
                f"{WEIGHTS_MISMATCH_CHOICES}"
            )
        super().__init__(model, save_dir, **kwargs)
        self.weights_mismatch = weights_mismatch
        self._loading = ""
        self._weights_only = True

    # --- loading ---------------------------------------------------------------------------------------
    def load(self, path, *args, **kwargs):
        local = _local_path(path) if path else None
        if local is not None and not os.path.isfile(local):
            # fvcore would stop on a bare `AssertionError: Checkpoint ... not found!`
            raise WeightsNotFoundError(weights_not_found_message(path))
        self._loading = path or ""
        checkpointables = kwargs.get("checkpointables", args[0] if args else None)
        # A training checkpoint's weight average (engine/ema.py) replaces its raw weights when only weights
        # are loaded (inference, MODEL.WEIGHTS of a new run); a resume (which restores the trainer's state)
        # continues from the raw weights.
        self._weights_only = not (
            self.checkpointables if checkpointables is None else checkpointables
        )
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = ""

    def _load_model(self, checkpoint):
        if "model_ema" in checkpoint and self._weights_only:
            self.logger.info(
                f"Loading the weight average ('model_ema') of {self._loading or 'the checkpoint'}"
            )
            checkpoint["model"] = checkpoint.pop("model_ema")["weights"]
        # Checked before anything is copied, so a refused checkpoint leaves the model as it was.
        # Name-matching heuristics (model-zoo .pkl, or `?matching_heuristics=True` on upstream main) load
        # partial backbones on purpose: detectron2's behaviour.
        heuristics = (
            checkpoint.get("matching_heuristics", False)
            or "matching_heuristics=True" in self._loading
        )
        if self.weights_mismatch == "error" and not heuristics:
            problem = state_dict_mismatch(
                self.model.state_dict(), checkpoint["model"], _num_keypoints(self.model)
            )
            if problem:
                raise WeightsMismatchError(
                    f"{self._loading or 'checkpoint'} does not fit the model built from the config: {problem}. "
                    "Expected a checkpoint of this architecture (a snapshot trained with this config, or official "
                    f"weights converted by {CONVERTER} with it, docs/MODEL_ZOO.md). To start from it anyway with "
                    "the tensors that do not fit left at their initialisation (fine-tuning with another head), set "
                    "MODEL.PAVENET.WEIGHTS_MISMATCH skip."
                )
        return super()._load_model(checkpoint)

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
                raise CheckpointReadError(
                    self._bad_resume_message(last, f"cannot be loaded ({e})")
                ) from e
        return self.load(path, checkpointables=[])

    def _bad_resume_message(self, last, problem):
        tag = os.path.join(self.save_dir, "last_checkpoint")
        others = sorted(
            os.path.basename(p) for p in glob.glob(os.path.join(self.save_dir, "model_*.pth"))
        )
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
        atomic_torch_save(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        if "://" in self.save_dir:
            return super().tag_last_checkpoint(last_filename_basename)
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)


def _num_keypoints(model):
    return next(
        (
            int(m.num_keypoints)
            for m in model.modules()
            if isinstance(getattr(m, "num_keypoints", None), int)
        ),
        None,
    )


def _model_zoo_pickle(data):
    """detectron2's reading of a `.pkl` dict (v0.6 and main): the detectron2 model-zoo format as it is,
    otherwise Caffe2 / Detectron1 blobs renamed by detectron2's name-matching heuristics."""
    if "model" in data and "__author__" in data:
        return data
    if "blobs" in data:  # detection models have "blobs", ImageNet backbones do not
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
