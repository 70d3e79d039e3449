"""The deformable-attention sampling core, without parameters: what every attention module calls.

* `ms_deform_attn_core`: bilinear sampling of L multi-scale value maps at (Q, H, L, P) locations, weighted
  and summed per head. Backends: "pytorch" (`grid_sample`, ``align_corners=False``, zero padding,
  grid = 2 * loc - 1: the arithmetic of mmcv's ``multi_scale_deformable_attn_pytorch`` that produced the
  golden vectors; also the traceable path of the ONNX export) and "kernel" (the compiled op of the
  ``torch-ms-deform-attn`` package, `msda_backend`). Values may be one tensor or a list of per-frame
  tensors (the streaming cache), used without concatenation.
* `multi_frame_deform_attn`: F frames as F x L extra levels with ONE stable softmax over frames x levels
  x points per head (docs/REFERENCE.md §5.1, §16 8c).
* `level_shapes`: the per-level (h, w), as ints, or as graph values while tracing.

The modules with the official parameter names live in `ms_deform_attn`.
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .msda_backend import kernel_op, resolve_msda_impl
from .msda_export import EXPORT_SAMPLERS

__all__ = ["Shapes", "level_shapes", "ms_deform_attn_core", "multi_frame_deform_attn"]

Shapes = Union[torch.Tensor, Sequence[Tuple[int, int]]]


def level_shapes(spatial_shapes: Shapes) -> List[Tuple[int, int]]:
    """(L, 2) (h, w) per level as Python ints. While tracing (ONNX export, pavenet.export) a tensor's
    rows stay 0-dim tensors instead: the level sizes are then graph values, not constants baked in, so
    the exported graphs take any image size."""
    if torch.is_tensor(spatial_shapes):
        if torch.jit.is_tracing():
            return [
                (spatial_shapes[i, 0], spatial_shapes[i, 1]) for i in range(len(spatial_shapes))
            ]
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(h, w) if torch.jit.is_tracing() else (int(h), int(w)) for h, w in spatial_shapes]


def _level_start_index(shapes: torch.Tensor) -> torch.Tensor:
    """(L, 2) long (h, w) -> (L,) long token offset of each level."""
    sizes = shapes.prod(1)
    return torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))


def ms_deform_attn_core(
    value: Union[torch.Tensor, Sequence[torch.Tensor]],
    spatial_shapes: Shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    impl: str = "pytorch",
    level_start_index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Weighted bilinear sampling of multi-level value maps.

    Args:
        value: (N, S, H, D), tokens level-major (row-major h, w inside a level), S = sum h_l * w_l; or
            (PyTorch backend only) a list of such tensors that hold consecutive groups of whole levels (e.g.
            one per frame): the same result, bit for bit, as their concatenation along S, without the copy.
        spatial_shapes: (L, 2) (h, w) per level.
        sampling_locations: (N, Q, H, L, P, 2) in [0, 1] (x, y) of each level's map.
        attention_weights: (N, Q, H, L, P), already normalised.
        impl: "pytorch" (grid_sample, the reference) or "kernel" (torch_ms_deform_attn; see
            `msda_backend.resolve_msda_impl`, which modules use to set their `msda_impl`).
        level_start_index: (L,) long, only read by the kernel for a single value tensor (computed from
            spatial_shapes if None).
    Returns:
        (N, Q, H * D). Under autocast both backends sample in float32 and return float32: bilinear
        weights and the sum over L * P points lose too much in bf16 / fp16.
    """
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    device_type = values[0].device.type
    if torch.is_autocast_enabled(device_type) and impl == "pytorch":
        with torch.autocast(device_type, enabled=False):
            return ms_deform_attn_core(
                [v.float() for v in values],
                spatial_shapes,
                sampling_locations.float(),
                attention_weights.float(),
            )
    if impl == "kernel":
        op = kernel_op()
        if op is None:
            resolve_msda_impl(
                "kernel"
            )  # raises the error naming the package and the install command
        if len(values) != 1:
            raise ValueError(
                "ms_deform_attn_core: the kernel takes one value tensor (multi_frame_deform_attn "
                "calls it once per frame)"
            )
        shapes = torch.as_tensor(spatial_shapes, dtype=torch.long, device=values[0].device)
        if level_start_index is None:
            level_start_index = _level_start_index(shapes)
        return op(values[0], shapes, level_start_index, sampling_locations, attention_weights)
    # The ONNX exporter may pick another arrangement of the same sums (msda_export).
    sampler = _grid_sample_sum if impl == "pytorch" else EXPORT_SAMPLERS.get(impl)
    if sampler is None:
        raise ValueError(
            f"ms_deform_attn_core: impl must be 'pytorch', 'kernel' or an export formulation "
            f"{sorted(EXPORT_SAMPLERS)}, got {impl!r}"
        )
    shapes = level_shapes(spatial_shapes)
    num_levels = sampling_locations.shape[3]
    if num_levels != len(shapes):
        raise ValueError(
            f"sampling locations have {num_levels} levels but spatial_shapes is {shapes}"
        )
    if (
        len(values) == 1
    ):  # one tensor (also the traced ONNX path: level sizes are graph values there)
        s = values[0].shape[1]
        if not torch.jit.is_tracing() and sum(hh * ww for hh, ww in shapes) != s:
            raise ValueError(
                f"value tensors of [{s}] tokens do not split into whole levels of spatial_shapes "
                f"{shapes}"
            )
        level_values = list(values[0].split([hh * ww for hh, ww in shapes], dim=1))
    else:
        level_values = []
        for v, (l0, l1) in zip(values, _level_groups(values, shapes)):
            level_values.extend(v.split([hh * ww for hh, ww in shapes[l0:l1]], dim=1))
    return sampler(level_values, shapes, sampling_locations, attention_weights)


def _level_groups(
    values: Sequence[torch.Tensor], shapes: List[Tuple[int, int]]
) -> List[Tuple[int, int]]:
    """Which levels [l0, l1) each value tensor holds (consecutive, whole levels, in order)."""
    groups, lvl = [], 0
    for v in values:
        start, tokens = lvl, 0
        while lvl < len(shapes) and tokens < v.shape[1]:
            tokens += shapes[lvl][0] * shapes[lvl][1]
            lvl += 1
        if tokens != v.shape[1]:
            raise ValueError(
                f"value tensors of {[x.shape[1] for x in values]} tokens do not split into whole "
                f"levels of spatial_shapes {shapes}"
            )
        groups.append((start, lvl))
    if lvl != len(shapes):
        raise ValueError(
            f"value has {sum(x.shape[1] for x in values)} tokens but spatial_shapes is {shapes}"
        )
    return groups


def _grid_sample_sum(
    level_values: List[torch.Tensor],
    shapes: List[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The PyTorch core: level_values L maps (N, h*w, H, D) -> (N, Q, H * D)."""
    n, _, h, d = level_values[0].shape
    _, q, _, num_levels, p, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    samples = []
    for lvl, (hh, ww) in enumerate(shapes):
        # (N, h*w, H, D) -> (N*H, D, h, w)
        v = level_values[lvl].flatten(2).transpose(1, 2).reshape(n * h, d, hh, ww)
        # (N, Q, H, P, 2) -> (N*H, Q, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        samples.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # (N*H, D, Q, L, P) -> (N*H, D, Q, L*P)
    stacked = torch.stack(samples, dim=-2).flatten(-2)
    w = attention_weights.transpose(1, 2).reshape(n * h, 1, q, num_levels * p)
    out = (stacked * w).sum(-1).view(n, h * d, q)
    return out.transpose(1, 2).contiguous()


def multi_frame_deform_attn(
    values: Union[torch.Tensor, Sequence[torch.Tensor]],
    spatial_shapes: Shapes,
    sampling_locations: torch.Tensor,
    attention_logits: torch.Tensor,
    impl: str = "pytorch",
) -> torch.Tensor:
    """Multi-frame deformable attention with one joint softmax over frames x levels x points.

    Args:
        values: (N, F, S, H, D) value maps of the F frames (same spatial shapes), or a list of F
            (N, S, H, D) maps, one per frame (the eval cache: used as they are, not concatenated).
        spatial_shapes: (L, 2).
        sampling_locations: (N, Q, H, F, L, P, 2), frame f's locations index frame f's maps.
        attention_logits: (N, Q, H, F, L, P), raw (pre-softmax) weights.
        impl: the sampling backend, as in `ms_deform_attn_core`.
    Returns:
        (N, Q, H * D)
    """
    per_frame = isinstance(values, (list, tuple))
    n, q, h = sampling_locations.shape[:3]
    f = len(values) if per_frame else values.shape[1]
    lvl, p = attention_logits.shape[-2:]
    # Stable softmax (max-subtracted) over F*L*P for every head (docs/REFERENCE.md §16 8c).
    weights = attention_logits.reshape(n, q, h, f * lvl * p).softmax(-1).view(n, q, h, f * lvl, p)
    # Frames become extra levels: value maps concatenated along the token axis (or passed as a list).
    if per_frame:
        value_cat = list(values)
    else:
        value_cat = values.reshape(n, f * values.shape[2], h, values.shape[4])
    locs = sampling_locations.reshape(n, q, h, f * lvl, p, 2)
    if impl != "kernel":
        return ms_deform_attn_core(value_cat, level_shapes(spatial_shapes) * f, locs, weights, impl)
    # Kernel: shapes stay on the device (no host list, no sync per call).
    shapes = torch.as_tensor(spatial_shapes, dtype=torch.long, device=sampling_locations.device)
    if not per_frame:
        return ms_deform_attn_core(value_cat, shapes.repeat(f, 1), locs, weights, impl)
    # One call per frame on its own levels: the weights are already normalised over all frames, so the
    # outputs add up (another summation order than one call over the concatenation: equal to ~1e-7).
    start = _level_start_index(shapes)
    out = None
    for fi, v in enumerate(value_cat):
        sl = slice(fi * lvl, (fi + 1) * lvl)
        o = ms_deform_attn_core(v, shapes, locs[:, :, :, sl], weights[:, :, :, sl], impl, start)
        out = o if out is None else out + o
    return out
