"""Deployment: the streaming split of PAVE-Net as two ONNX graphs, and an ONNX Runtime backend for the
streaming predictor (docs/DEPLOY.md). `onnx` / `onnxruntime` are imported only when used."""

from .from_config import export_from_config
from .graph_check import GraphMismatchError
from .onnx import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    SAMPLINGS,
    export_onnx,
)
from .ort_backend import OrtClipModel
from .quantize import DECODER_INT8_FILE, ENCODER_INT8_FILE, quantize_graphs

__all__ = [
    "ENCODER_FILE",
    "DECODER_FILE",
    "ENCODER_INT8_FILE",
    "DECODER_INT8_FILE",
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "SAMPLINGS",
    "export_onnx",
    "export_from_config",
    "quantize_graphs",
    "OrtClipModel",
    "GraphMismatchError",
    "BACKENDS",
    "ORT_BACKENDS",
    "build_predictor",
]

# ONNX Runtime backends: name -> the precision of the graphs they load from the export folder.
ORT_BACKENDS = {"onnxruntime": "fp32", "onnxruntime-int8": "int8"}
BACKENDS = ("pytorch",) + tuple(ORT_BACKENDS)


def build_predictor(
    cfg,
    backend: str = "pytorch",
    onnx_dir=None,
    threads: int = 0,
    on_mismatch: str = "error",
    compile_encoder: bool = False,
):
    """A `ClipPredictor` on the chosen backend: "pytorch" (build the model, load MODEL.WEIGHTS; with
    compile_encoder its encoder through torch.compile), "onnxruntime" (the fp32 graphs in `onnx_dir`,
    exported from the same config and weights) or "onnxruntime-int8" (the int8 graphs there).
    on_mismatch: see `OrtClipModel`."""
    from ..inference.predictor import ClipPredictor

    if compile_encoder and backend != "pytorch":
        raise ValueError(f"compile_encoder applies to the pytorch backend, not {backend!r}")
    if backend == "pytorch":
        return ClipPredictor(cfg, compile_encoder=compile_encoder)
    if backend in ORT_BACKENDS:
        return ClipPredictor(
            cfg,
            backend=OrtClipModel(
                onnx_dir,
                cfg,
                threads=threads,
                on_mismatch=on_mismatch,
                precision=ORT_BACKENDS[backend],
            ),
        )
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
