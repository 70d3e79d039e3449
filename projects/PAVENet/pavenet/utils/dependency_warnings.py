"""Two dependency warnings that say nothing to a user of our tools, filtered narrowly (by message and by
the module that emits them), so that what the tools print starts with what concerns the user:

* fvcore's `torch.jit.script` of its losses at import: torch's FutureWarning that `torch.jit.script` is
  deprecated (emitted from `torch.jit._script`);
* torch's "No CUDA runtime is found, using CUDA_HOME=..." (logged by `torch.utils.cpp_extension` when
  detectron2 collects its environment on a machine with a CUDA toolkit but no GPU).

Everything else, our own warnings included, is left as it is. `pavenet/__init__.py` installs the filters
before it imports detectron2, so every entry point gets them.
"""

import logging
import warnings

__all__ = ["filter_dependency_warnings"]

_NO_CUDA_RUNTIME = "No CUDA runtime is found"


class _DropNoCudaRuntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NO_CUDA_RUNTIME)


_FILTER = _DropNoCudaRuntime()


def filter_dependency_warnings() -> None:
    """Install the two filters (idempotent)."""
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.jit\.script` is deprecated",
        category=FutureWarning,
        module=r"torch\.jit\._script",
    )
    logger = logging.getLogger("torch.utils.cpp_extension")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
