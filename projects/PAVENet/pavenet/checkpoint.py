"""`PAVENetCheckpointer`: detectron2's checkpointer with safe loading under torch's `weights_only`.

torch >= 2.6 loads with `weights_only=True` by default and fvcore calls `torch.load` without the flag.
Our own checkpoints (training snapshots and converted official weights) hold tensors and plain values
only, so they load safely; anything else gets an error that names the file and the fix, instead of
safety being turned off globally.
"""
from detectron2.checkpoint import DetectionCheckpointer

from .conversion.checkpoint_io import CheckpointReadError, UnsafeCheckpointError, load_official_checkpoint

__all__ = ["PAVENetCheckpointer", "CheckpointReadError", "UnsafeCheckpointError"]


class PAVENetCheckpointer(DetectionCheckpointer):
    def _load_file(self, filename):
        if filename.endswith((".pkl", ".pyth")):  # detectron2 / pycls model-zoo formats
            return super()._load_file(filename)
        try:
            loaded = load_official_checkpoint(filename, allow_pickle=False)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f"{filename} is not a tensors-only checkpoint, so it is not loaded with "
                "torch.load(weights_only=True). For official mmdetection/mmcv weights run "
                "tools/convert_official_ckpt.py, which writes a tensors-only file; for a file you trust, "
                "re-save its state_dict as {'model': state_dict}."
            ) from e
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded
