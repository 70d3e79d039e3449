"""GFLOPs per frame with fvcore: one frame's encoding and one window's decoding, traced separately
(streaming does one of each per frame, the window mode F encodings and one decoding). Ops fvcore cannot
count (e.g. elementwise ones) are listed, not counted."""

import numpy as np
import torch

from pavenet.inference.predictor import ClipPredictor

__all__ = ["count_gflops"]


def _sdpa_flop_jit(inputs, outputs):
    """MACs of scaled_dot_product_attention (fvcore has no handle): q @ k^T plus attn @ v."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    rows = int(np.prod(q[:-1]))
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def count_gflops(predictor: ClipPredictor, frame: np.ndarray) -> dict:
    """fvcore GFLOPs of encoding one BGR `frame` and decoding one window (unsupported ops tolerated)."""
    from fvcore.nn import FlopCountAnalysis

    model = predictor.model
    F = predictor.num_frames
    image = predictor.prepare(frame)
    images, image_size = model.preprocess_frames(image[None].to(predictor.device))
    feats = model.encode_frames(images)
    window = type(feats).cat(
        [feats] * F
    )  # with each frame's cached decoder value maps, as streaming has them
    out_size = frame.shape[:2]

    class Encode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            f = self.model.encode_frames(x)
            return (
                f.memory,
                f.valid_ratios,
                *f.values,
            )  # the value maps are part of a frame's encoding

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, memory, padding_mask, valid_ratios, *values):
            f = type(window)(
                memory,
                padding_mask,
                window.spatial_shapes,
                window.level_start_index,
                valid_ratios,
                list(values),
            )
            out = self.model.decode_clip(f, image_size=image_size, output_size=out_size)
            return out.pred_keypoints, out.scores

    res = {}
    unsupported = {}
    for name, mod, inputs in (
        ("encode", Encode(), (images,)),
        (
            "decode",
            Decode(),
            (window.memory, window.padding_mask, window.valid_ratios, *window.values),
        ),
    ):
        fca = FlopCountAnalysis(mod.eval(), inputs)
        fca.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        res[name] = fca.total() / 1e9
        for op, n in fca.unsupported_ops().items():
            unsupported[op] = unsupported.get(op, 0) + n
    return {
        "gflops_encode_per_frame": res["encode"],
        "gflops_decode_per_window": res["decode"],
        "gflops_per_frame": res["encode"]
        + res["decode"],  # streaming: one encode + one decode per frame
        "gflops_per_frame_window": F * res["encode"] + res["decode"],
        # Not counted (fvcore counts multiply-adds of conv/linear/matmul/grid_sample/...; elementwise ops no).
        "fvcore_uncounted_ops": sorted(unsupported),
    }
