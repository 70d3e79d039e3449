"""The per-frame encoder through `torch.compile` (inductor, weights frozen): an opt-in speed-up of the
PyTorch path for inference on CPU (`ClipPredictor(..., compile_encoder=True)`, `tools/demo.py
--compile-encoder`).

Measured on the R50 F=3 model at 384 x 640, 1 thread, CPU: encoding 0.87x the eager time (kernel
backend), outputs within 6e-6 of eager and keypoints within 5e-5 px. The first frame of each new frame
size compiles (minutes for R50 on a 2-core machine), so it pays off on long videos of one size.
"""

from typing import Callable

import torch

from ..modeling.encoded_frames import EncodedFrames

__all__ = ["compiled_encoder"]


def compiled_encoder(model: torch.nn.Module) -> Callable[[torch.Tensor], EncodedFrames]:
    """`model.encode_frames` (eval mode, no grad) compiled by inductor with freezing (the weights become
    constants of the compiled code, so later changes to them are not seen). images (N, 3, H, W)
    normalised -> EncodedFrames, as the eager call; one compilation per input size (dynamic=False)."""
    import torch._inductor.config as inductor_config

    def fields(images):
        e = model.encode_frames(images)
        return (
            e.memory,
            e.padding_mask,
            e.spatial_shapes,
            e.level_start_index,
            e.valid_ratios,
            tuple(e.values),
        )

    compiled = torch.compile(fields, backend="inductor", dynamic=False)

    def encode(images: torch.Tensor) -> EncodedFrames:
        if model.training or torch.is_grad_enabled():
            raise RuntimeError(
                "the compiled encoder is for inference: model.eval() under torch.no_grad()"
            )
        with inductor_config.patch(freezing=True):
            memory, mask, shapes, start, ratios, values = compiled(images)
        return EncodedFrames(memory, mask, shapes, start, ratios, list(values))

    return encode
