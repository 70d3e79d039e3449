"""Export-time formulations of the deformable-attention sampling: the same sums as the PyTorch core
(`msda_core._grid_sample_sum`), arranged for ONNX Runtime's CPU operators rather than for PyTorch.

The reference core samples every level with `grid_sample`, stacks the L samples into one
(N*H, D, Q, L*P) tensor, weights it and sums over L*P. Exported, the stack is a Concat that copies every
sample once more, and the weighting and the sum run over the whole stack. "levels" weights and sums each
level's samples as they come, (N*H, D, Q, P) -> (N*H, D, Q), and adds the L partial sums: no copy of
the samples, one pass over them. Summation order differs (per level, then over levels): equal to ~1e-7.

The exporter selects one by name (`pavenet.export.export_onnx(..., sampling=...)`); the model's own
backends ("pytorch", "kernel") are untouched. Every formulation uses standard ONNX operators only.
"""
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["EXPORT_SAMPLERS", "levelwise_grid_sample_sum"]


def levelwise_grid_sample_sum(level_values: List[torch.Tensor], shapes: List[Tuple[int, int]],
                              sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """level_values: L maps (N, h*w, H, D); sampling_locations (N, Q, H, L, P, 2) in [0, 1];
    attention_weights (N, Q, H, L, P) -> (N, Q, H * D)."""
    n, _, h, d = level_values[0].shape
    _, q, _, _, p, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    # (N, Q, H, L, P) -> (N*H, L, 1, Q, P): one level's weights broadcast over the D channels.
    weights = attention_weights.permute(0, 2, 3, 1, 4).reshape(n * h, -1, 1, q, p)
    out = None
    for lvl, (hh, ww) in enumerate(shapes):
        v = level_values[lvl].flatten(2).transpose(1, 2).reshape(n * h, d, hh, ww)  # (N*H, D, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (N*H, Q, P, 2)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (N*H, D, Q, P)
        part = (s * weights[:, lvl]).sum(-1)  # (N*H, D, Q)
        out = part if out is None else out + part
    return out.view(n, h * d, q).transpose(1, 2).contiguous()


# Name -> sampler with the signature of `msda_core._grid_sample_sum`; "stacked" is the reference core.
EXPORT_SAMPLERS: Dict[str, Callable] = {"levels": levelwise_grid_sample_sum}
