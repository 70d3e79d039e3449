"""The model inside a data-parallel wrapper, for code that reads or swaps its weights."""

import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

__all__ = ["unwrap_model"]


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (state_dict keys without "module."),
    or `model` itself."""
    return model.module if isinstance(model, (DistributedDataParallel, DataParallel)) else model
