"""Deployment: the streaming split of PAVE-Net as two ONNX graphs, and an ONNX Runtime backend for the
streaming predictor (docs/DEPLOY.md). `onnx` / `onnxruntime` are imported only when used."""
from .onnx import (DECODER_FILE, DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_FILE, ENCODER_INPUTS, ENCODER_OUTPUTS,
                   export_from_config, export_onnx)
from .ort_backend import OrtClipModel

__all__ = ["ENCODER_FILE", "DECODER_FILE", "ENCODER_INPUTS", "ENCODER_OUTPUTS", "DECODER_INPUTS", "DECODER_OUTPUTS",
           "export_onnx", "export_from_config", "OrtClipModel", "BACKENDS", "build_predictor"]

BACKENDS = ("pytorch", "onnxruntime")


def build_predictor(cfg, backend: str = "pytorch", onnx_dir=None, threads: int = 0):
    """A `ClipPredictor` on the chosen backend: "pytorch" (build the model, load MODEL.WEIGHTS) or
    "onnxruntime" (the graphs in `onnx_dir`, exported from the same config)."""
    from ..inference.predictor import ClipPredictor

    if backend == "pytorch":
        return ClipPredictor(cfg)
    if backend == "onnxruntime":
        return ClipPredictor(cfg, backend=OrtClipModel(onnx_dir, cfg, threads=threads))
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
