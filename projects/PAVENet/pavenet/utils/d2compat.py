"""Where detectron2 v0.6 and upstream `main` differ, and what PAVE-Net does about it, in one place.

Both versions report `detectron2.__version__ == "0.6"`, so a difference is detected by behaviour, never
read from the version. Everything else in the package uses only API that both versions share.

- `launch` with several processes and no CUDA: v0.6's workers assert CUDA, main starts gloo (CPU) workers.
  `check_launch` stops `--num-gpus N` on v0.6 with a clear error before any worker starts.
- `Image.LINEAR` (removed in Pillow 10) is a default argument in v0.6's `data/transforms/transform.py`, so
  `import detectron2.data` fails there; main does not use it. `restore_pillow_linear`, run when `pavenet` is
  imported, puts the alias back (it named BILINEAR).
- `model_zoo` imports `pkg_resources` (removed in setuptools 81) in both: the package never imports
  `detectron2.model_zoo` (tested).
- `DetectionCheckpointer` calls `torch.load` without `weights_only` in both:
  `pavenet.checkpoint.PAVENetCheckpointer` loads with `weights_only=True`.
- `DefaultTrainer` checkpoints hold no optimizer / GradScaler state on v0.6 and a `_trainer` entry on main:
  `pavenet.engine.Trainer` writes and reads `_trainer` itself on both.

`make setup` installs a v0.6 patched for Pillow and setuptools (scripts/patch_detectron2.py); the shims
here are for a detectron2 the user built from source.
"""
import importlib
import inspect
from typing import Callable, Optional

__all__ = ["LaunchUnsupportedError", "launch_starts_cpu_workers", "check_launch", "restore_pillow_linear"]


class LaunchUnsupportedError(RuntimeError):
    """`--num-gpus N` cannot run on this machine with this detectron2."""


def launch_starts_cpu_workers(worker: Optional[Callable] = None) -> Optional[bool]:
    """Whether detectron2's `launch` workers can join a gloo (CPU) process group: True on main, False on
    v0.6 (its worker asserts CUDA and uses NCCL); None when the worker's source cannot be read. `worker`
    defaults to detectron2's `_distributed_worker`."""
    if worker is None:
        worker = importlib.import_module("detectron2.engine.launch")._distributed_worker
    try:
        source = inspect.getsource(worker)
    except (OSError, TypeError):
        return None
    return "gloo" in source.lower()


def check_launch(num_gpus: int, num_machines: int = 1, worker: Optional[Callable] = None) -> None:
    """Raises LaunchUnsupportedError, naming `--num-gpus`, when detectron2's `launch` would start workers
    that cannot run here: CPU workers on v0.6, or more CUDA workers than visible devices."""
    import torch

    if num_gpus < 1:
        raise LaunchUnsupportedError(f"--num-gpus must be >= 1, got {num_gpus}")
    if num_gpus * num_machines <= 1:
        return  # launch runs the main function in this process
    if torch.cuda.is_available():
        if num_gpus > torch.cuda.device_count():
            raise LaunchUnsupportedError(
                f"--num-gpus {num_gpus}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return
    if launch_starts_cpu_workers(worker) is False:
        raise LaunchUnsupportedError(
            f"--num-gpus {num_gpus} on a machine without CUDA: detectron2 v0.6's launch starts CUDA workers only. "
            "Train in one process (--num-gpus 1), or install detectron2 main, whose launch starts CPU (gloo) "
            "workers (docs/INSTALL.md, 'Using your own detectron2')."
        )


def restore_pillow_linear() -> None:
    """Pillow >= 10 removed `Image.LINEAR`, an alias of BILINEAR that detectron2 v0.6 uses as a default
    argument at import time. Puts the alias back (the same filter) when it is missing."""
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
