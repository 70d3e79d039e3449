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

import math
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

__all__ = ["EXPORT_SAMPLERS", "levelwise_grid_sample_sum"]


def levelwise_grid_sample_sum(
    level_values: List[torch.Tensor],
    shapes: List[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
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
        s = F.grid_sample(
            v, g, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*H, D, Q, P)
        part = (s * weights[:, lvl]).sum(-1)  # (N*H, D, Q)
        out = part if out is None else out + part
    return out.view(n, h * d, q).transpose(1, 2).contiguous()


# Name -> sampler with the signature of `msda_core._grid_sample_sum`; "stacked" is the reference core.
EXPORT_SAMPLERS: Dict[str, Callable] = {"levels": levelwise_grid_sample_sum}


class _DeformConv(torch.autograd.Function):
    """torchvision's deform_conv2d in PyTorch, ONNX `DeformConv` (opset 19) in the exported graph."""

    @staticmethod
    def forward(ctx, x, weight, offset, mask, offset_groups: int, channels: int, points: int):
        from torchvision.ops import deform_conv2d

        return deform_conv2d(x, offset, weight, mask=mask)

    @staticmethod
    def symbolic(g, x, weight, offset, mask, offset_groups: int, channels: int, points: int):
        kh, kw = 1, points
        bias = g.op("Constant", value_t=torch.zeros(channels))
        return g.op(
            "DeformConv",
            x,
            weight,
            offset,
            bias,
            mask,
            group_i=channels,
            offset_group_i=offset_groups,
            kernel_shape_i=[kh, kw],
            strides_i=[1, 1],
            pads_i=[0, 0, 0, 0],
            dilations_i=[1, 1],
        )


def deform_conv_sum(
    level_values: List[torch.Tensor],
    shapes: List[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The same sums as ONNX DeformConv, one per level: a depthwise 1 x P deformable convolution whose
    offset groups are the heads, whose modulation mask is the attention weights and whose weights are
    ones. DeformConv computes each sample's corners and weights once per head (GridSample: once per
    channel). Its outputs form a grid of the (padded) map's size: the map is zero-padded on the right
    until the grid holds Q outputs (the zeros are what zero padding samples anyway), query q sits at
    grid cell (q // w', q % w') and its offsets are taken relative to that cell. Worth it where Q is at
    least a level's size (the spatial encoder: Q = S); the decoders keep `levelwise_grid_sample_sum`.

    Same arguments and result as `levelwise_grid_sample_sum`."""
    n, _, h, d = level_values[0].shape
    _, q, _, _, p, _ = sampling_locations.shape
    c = h * d
    weight = torch.ones(c, 1, 1, p, dtype=level_values[0].dtype, device=level_values[0].device)
    qidx = torch.arange(q, device=sampling_locations.device)
    kx = torch.arange(p, dtype=sampling_locations.dtype, device=sampling_locations.device)
    out = None
    for lvl, (hh, ww) in enumerate(shapes):
        v = level_values[lvl].flatten(2).transpose(1, 2).reshape(n, c, hh, ww)  # (N, H*D, h, w)
        # A grid of h' x w' >= Q cells, h' >= h, w' >= w - P + 1, near square (small coordinates keep the
        # offsets' rounding small); the map zero-padded to h' x (w' + P - 1).
        side = int(
            math.ceil(math.sqrt(int(q)))
        )  # a constant of the exported graph: any Q still fits (w' grows)
        grid_h = torch.maximum(torch.as_tensor(hh), torch.as_tensor(side))
        grid_w = torch.maximum(
            torch.as_tensor(ww) - p + 1, (torch.as_tensor(q) + grid_h - 1) // grid_h
        )
        v = torch.cat([v, v.new_zeros(1, 1, 1, 1).expand(n, c, hh, grid_w + p - 1 - ww)], 3)
        v = torch.cat([v, v.new_zeros(1, 1, 1, 1).expand(n, c, grid_h - hh, grid_w + p - 1)], 2)
        cells = grid_h * grid_w
        # Pixel coordinates (align_corners=False) of every sample, relative to its query's grid cell.
        loc = sampling_locations[:, :, :, lvl]  # (N, Q, H, P, 2) x, y in [0, 1]
        px = loc[..., 0] * ww - 0.5 - ((qidx % grid_w)[None, :, None, None] + kx)
        py = loc[..., 1] * hh - 0.5 - (qidx // grid_w)[None, :, None, None]
        offsets = torch.stack([py, px], -1).reshape(n, q, h * p * 2)  # (y, x) per head and point
        mask = attention_weights[:, :, :, lvl].reshape(n, q, h * p)
        pad = cells - q  # grid cells without a query: zero offsets, zero weight
        offsets = torch.cat([offsets, offsets.new_zeros(1, 1, 1).expand(n, pad, h * p * 2)], 1)
        mask = torch.cat([mask, mask.new_zeros(1, 1, 1).expand(n, pad, h * p)], 1)
        offsets = offsets.transpose(1, 2).reshape(n, h * p * 2, grid_h, grid_w)
        mask = mask.transpose(1, 2).reshape(n, h * p, grid_h, grid_w)
        s = _DeformConv.apply(v, weight, offsets, mask, int(h), int(c), int(p))  # (N, H*D, h', w')
        part = s.flatten(2)[:, :, :q]  # (N, H*D, Q)
        out = part if out is None else out + part
    return out.transpose(1, 2).contiguous()


EXPORT_SAMPLERS["deformconv"] = deform_conv_sum
