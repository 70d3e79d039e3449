"""`PAVENetCheckpointer`: detectron2's checkpointer with safe loading under torch's `weights_only`.

torch >= 2.6 loads with `weights_only=True` by default and fvcore calls `torch.load` without the flag.
Our own checkpoints (training snapshots and converted official weights) hold tensors and primitives only,
so they load safely; anything else gets an error that names the file and the fix, instead of turning
safety off globally.
"""
import pickle

import torch
from detectron2.checkpoint import DetectionCheckpointer


class UnsafeCheckpointError(RuntimeError):
    pass


class PAVENetCheckpointer(DetectionCheckpointer):
    def _load_file(self, filename):
        if filename.endswith((".pkl", ".pyth")):
            return super()._load_file(filename)
        try:
            with open(filename, "rb") as f:
                loaded = torch.load(f, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"checkpoint not found: {filename}") from None
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            if isinstance(e, RuntimeError) and "weights_only" not in str(e) and "Unsupported" not in str(e):
                raise RuntimeError(f"could not read checkpoint {filename}: {e}") from e
            raise UnsafeCheckpointError(
                f"{filename} is not a tensors-only checkpoint, so it cannot be loaded with "
                f"torch.load(weights_only=True) ({type(e).__name__}: {str(e).splitlines()[0]}). "
                "For official mmdetection/mmcv weights run tools/convert_official_ckpt.py, which writes a "
                "tensors-only file; for a file you trust, re-save its state_dict as {'model': state_dict}."
            ) from e
        if not isinstance(loaded, dict):
            raise RuntimeError(f"{filename}: expected a dict checkpoint, got {type(loaded).__name__}")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded
