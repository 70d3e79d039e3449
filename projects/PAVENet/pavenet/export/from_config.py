"""`export_from_config`: a config's model (with MODEL.WEIGHTS) exported as the two ONNX graphs, and, on request,
their int8 versions; the step behind tools/deploy/export_model.py."""

from typing import Optional

from .onnx import SAMPLINGS, default_export_size, export_onnx
from .quantize import calibration_images, quantize_graphs

__all__ = ["export_from_config"]


def export_from_config(
    cfg,
    output_dir: str,
    height: Optional[int] = None,
    width: Optional[int] = None,
    sampling: str = SAMPLINGS[0],
    int8: Optional[str] = None,
    int8_frames: int = 16,
):
    """Build the model of `cfg`, load MODEL.WEIGHTS (if set) and export it (tools/deploy/export_model.py).
    int8: also write the int8 graphs, calibrated on up to `int8_frames` frames of this video / image
    folder / glob (`quantize.quantize_graphs`); their paths are added as "encoder_int8", "decoder_int8"."""
    from ..inference.predictor import ClipPredictor

    predictor = ClipPredictor(cfg)
    # Frames are read (and checked) before the export: a bad calibration path fails early.
    images = calibration_images(int8, predictor.prepare, int8_frames) if int8 else None
    if height is None or width is None:
        height, width = default_export_size(cfg)
    paths = export_onnx(predictor.model, cfg, output_dir, height, width, sampling)
    if images is not None:
        paths.update({f"{k}_int8": v for k, v in quantize_graphs(output_dir, images, int8).items()})
    return paths
