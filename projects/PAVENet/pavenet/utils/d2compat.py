"""Where detectron2 v0.6 and upstream `main` differ, and what PAVE-Net does about it, in one place.

Both versions report `detectron2.__version__ == "0.6"`, so a difference is detected by behaviour, never
read from the version. Everything else in the package uses only API that both versions share.

- `launch` with several processes and no CUDA: v0.6's workers assert CUDA, main starts gloo (CPU) workers.
  `pavenet.utils.cli_numbers.check_num_gpus` (`launch_runs_without_cuda`) stops `--num-gpus N` on v0.6
  with a clear error before any worker starts.
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

__all__ = ["restore_pillow_linear"]


def restore_pillow_linear() -> None:
    """Pillow >= 10 removed `Image.LINEAR`, an alias of BILINEAR that detectron2 v0.6 uses as a default
    argument at import time. Puts the alias back (the same filter) when it is missing."""
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
