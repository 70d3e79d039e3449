"""Which implementation runs the deformable-attention sampling (`MODEL.PAVENET.MSDA_IMPL`).

* ``"pytorch"``: our pure-PyTorch `grid_sample` core (the reference; always available).
* ``"kernel"``: the compiled ``ms_deform_attn`` op of the PyPI package ``torch-ms-deform-attn``
  (CPU, and CUDA when it was built against CUDA torch with the toolkit and a GPU visible). Same
  arguments plus ``level_start_index``; 2-4x faster than the grid_sample loop on CPU.
* ``"auto"`` (default): the kernel when ``torch_ms_deform_attn`` imports, else PyTorch.

`resolve_msda_impl` is the one place that turns the config value into a backend; `set_msda_impl`
hands the result to every attention module of a model (they read it in `ms_deform_attn_core`).
"""

import functools
import logging
from typing import Callable, Optional

from torch import nn

__all__ = [
    "MSDA_IMPLS",
    "KERNEL_PACKAGE",
    "KERNEL_INSTALL",
    "kernel_op",
    "kernel_available",
    "resolve_msda_impl",
    "set_msda_impl",
]

MSDA_IMPLS = ("auto", "pytorch", "kernel")
KERNEL_PACKAGE = "torch-ms-deform-attn==0.1.1"
KERNEL_INSTALL = f"python -m pip install --no-build-isolation {KERNEL_PACKAGE}"

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _import_kernel():
    """(op, None) or (None, reason). Cached: a failed import is not retried per call."""
    try:
        from torch_ms_deform_attn import ms_deform_attn
    except (
        Exception
    ) as e:  # ImportError, or an OSError / undefined symbol of a build for another torch
        return None, f"{type(e).__name__}: {e}"
    return ms_deform_attn, None


def kernel_op() -> Optional[Callable]:
    """The package's ``ms_deform_attn(value, shapes, level_start, locations, weights)`` or None."""
    return _import_kernel()[0]


def kernel_available() -> bool:
    return kernel_op() is not None


def resolve_msda_impl(impl: str) -> str:
    """MODEL.PAVENET.MSDA_IMPL ("auto" | "pytorch" | "kernel") -> the backend to use ("pytorch" | "kernel")."""
    if impl not in MSDA_IMPLS:
        raise ValueError(f"MODEL.PAVENET.MSDA_IMPL must be one of {MSDA_IMPLS}, got {impl!r}")
    if impl == "pytorch":
        return "pytorch"
    if kernel_available():
        return "kernel"
    if impl == "kernel":
        raise ImportError(
            f"MODEL.PAVENET.MSDA_IMPL='kernel' needs the package {KERNEL_PACKAGE!r}, which does not import "
            f"({_import_kernel()[1]}). Install it after torch with `{KERNEL_INSTALL}` (docs/INSTALL.md), "
            "or set MODEL.PAVENET.MSDA_IMPL to 'auto' or 'pytorch'."
        )
    return "pytorch"


def set_msda_impl(model: nn.Module, impl: str, log: bool = True) -> str:
    """Resolve `impl` and set it on every deformable attention of `model`; returns the backend used."""
    backend = resolve_msda_impl(impl)
    count = 0
    for m in model.modules():
        if hasattr(m, "msda_impl"):
            m.msda_impl = backend
            count += 1
    if log:
        why = (
            ""
            if impl == backend
            else f" (MSDA_IMPL={impl!r}"
            + (", torch_ms_deform_attn not importable)" if backend == "pytorch" else ")")
        )
        logger.info("Deformable attention: %s backend in %d modules%s", backend, count, why)
    return backend
