"""The deformable-attention sampling core alone, per backend, at the shapes the benchmark's model uses.

The stream, encode and decode timings mix the sampling core (the only part that differs between the
"pytorch" and "kernel" backends) with the work both share: backbone, linear layers, normalisation. Timing
the core on its own, for the two calls that dominate it, shows how much of a backend's stream the core
is, and so how far the stream ratio between backends can fall:

* "encoder": one spatial-encoder attention over one frame's S tokens (Q = S queries);
* "pose_decoder": one pose-aware attention of NUM_QUERIES persons x K keypoints over the F cached
  frames of a window (per-frame value maps, as the streaming decode passes them).

Inputs are random (the cost does not depend on them): value maps (1, S, H, D), locations uniform in
[0, 1], weights softmaxed. "points" counts the bilinear samples of one call, Q x H x (F x) L x P: the
result reports nanoseconds per sampled point, each sample reading 4 x D values.
"""

from typing import Callable, Dict, Tuple

import torch

from pavenet.modeling.encoded_frames import EncodedFrames
from pavenet.modeling.ms_deform_attn import MSDeformAttn, PoseAwareAttention
from pavenet.modeling.msda_core import ms_deform_attn_core, multi_frame_deform_attn

__all__ = ["core_calls"]


def _first(model: torch.nn.Module, cls):
    for m in model.modules():
        if isinstance(m, cls):
            return m
    raise ValueError(f"the benchmark's model has no {cls.__name__} module")


def core_calls(
    model: torch.nn.Module, enc: EncodedFrames, num_frames: int, num_queries: int, seed: int = 0
) -> Tuple[Dict[str, Tuple[Callable[[str], torch.Tensor], int]], Dict[str, int]]:
    """({"encoder" | "pose_decoder": (call(impl) -> output, sampled points per call)}, the shape) on random
    inputs shaped like `model`'s attentions on `enc` (one encoded frame: its spatial_shapes and S tokens).
    The shape dict: tokens S, heads H, levels L, encoder points P, keypoints K, frames F, queries Q."""
    g = torch.Generator().manual_seed(seed)
    device = enc.memory.device
    shapes = enc.spatial_shapes
    s = enc.memory.shape[1]

    def rand(*size):
        return torch.rand(*size, generator=g).to(device)

    encoder = _first(model, MSDeformAttn)
    h, lvl, p = encoder.num_heads, encoder.num_levels, encoder.num_points
    d = encoder.embed_dim // h
    if lvl != len(shapes):
        raise ValueError(f"the encoder attends over {lvl} levels but the frame has {len(shapes)}")
    value = torch.randn(1, s, h, d, generator=g).to(device)
    locs = rand(1, s, h, lvl, p, 2)
    weights = rand(1, s, h, lvl * p).softmax(-1).view(1, s, h, lvl, p)
    start = enc.level_start_index

    pose = _first(model, PoseAwareAttention)
    f, k, q = num_frames, pose.num_points, num_queries
    values = [torch.randn(1, s, h, d, generator=g).to(device) for _ in range(f)]
    pose_locs = rand(1, q, h, f, lvl, k, 2)
    pose_logits = torch.randn(1, q, h, f, lvl, k, generator=g).to(device)
    calls = {
        "encoder": (
            lambda impl: ms_deform_attn_core(value, shapes, locs, weights, impl, start),
            s * h * lvl * p,
        ),
        "pose_decoder": (
            lambda impl: multi_frame_deform_attn(values, shapes, pose_locs, pose_logits, impl),
            q * h * f * lvl * k,
        ),
    }
    return calls, dict(tokens=s, heads=h, levels=lvl, points=p, keypoints=k, frames=f, queries=q)
