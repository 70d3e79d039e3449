"""The CUDA-to-CPU fallback: detectron2's default MODEL.DEVICE is "cuda"; on a machine without CUDA the
tools run on the CPU instead of failing (training, evaluation, the demo, the benchmark)."""

from typing import Optional

import torch

__all__ = ["cuda_unavailable", "fall_back_to_cpu"]


def cuda_unavailable(device: str) -> bool:
    """True when `device` asks for CUDA ("cuda", "cuda:1") and torch sees none."""
    return str(device).startswith("cuda") and not torch.cuda.is_available()


def fall_back_to_cpu(cfg) -> Optional[str]:
    """Set MODEL.DEVICE to "cpu" (cfg not frozen yet) when it asks for CUDA that is not available; return the
    warning for the caller to log (it may set its logger up later), or None when the device is kept."""
    requested = cfg.MODEL.DEVICE
    if not cuda_unavailable(requested):
        return None
    cfg.MODEL.DEVICE = "cpu"
    return f"CUDA is not available: MODEL.DEVICE {requested} -> cpu"
