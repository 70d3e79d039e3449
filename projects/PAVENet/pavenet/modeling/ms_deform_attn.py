"""Multi-scale deformable attention (docs/REFERENCE.md §3, §5.1, §6).

Three modules share one sampling core (`ms_deform_attn_core`, in `msda_core` with the multi-frame
form; re-exported here). Its reference backend is pure PyTorch
(`grid_sample` with ``align_corners=False``, zero padding, grid = 2 * loc - 1, the same arithmetic as
mmcv's ``multi_scale_deformable_attn_pytorch`` that produced the golden vectors); the "kernel" backend
is the compiled op of the ``torch-ms-deform-attn`` package, which computes the same sums. Each module's
``msda_impl`` picks one (set from MODEL.PAVENET.MSDA_IMPL by `msda_backend.set_msda_impl`):

* `MSDeformAttn`: the spatial encoder's single-frame attention (Deformable-DETR).
* `PoseAwareAttention`: the pose decoder's multi-frame attention; one sampling point per keypoint,
  offsets scaled by half the extent of each frame's reference pose.
* `MultiFrameDeformAttn`: the joint decoder's multi-frame attention (P points around a joint).

Multi-frame form (docs/REFERENCE.md §5.1 "efficient, equivalent implementation"): every frame has its own
offset / weight linears (attribute prefixes from `frame_prefixes`), the F frames' value maps are
concatenated as F x L extra levels and ONE numerically stable softmax is taken over frames x levels x
points per head. This equals the official per-frame softmax re-weighted by exp-sums (tested), without
its overflow (docs/REFERENCE.md §16 8c).

The modules keep the official attribute names so checkpoints convert by renaming alone.
"""

import math
from typing import List

import torch
from torch import nn

from .msda_core import level_shapes, ms_deform_attn_core, multi_frame_deform_attn

__all__ = [
    "frame_prefixes",
    "level_shapes",
    "ms_deform_attn_core",
    "multi_frame_deform_attn",
    "MSDeformAttn",
    "PoseAwareAttention",
    "MultiFrameDeformAttn",
    "JOINT_OFFSET_BIAS_MODES",
]


def frame_prefixes(num_frames: int) -> List[str]:
    """Attribute prefixes of the per-frame layers, frame order t-T..t+T.

    F=1 -> [""], F=3 -> ["pre_", "", "next_"], F=5 -> ["pre_pre_", "pre_", "", "next_", "next_next_"]
    (the official names; the key frame keeps the PETR name so PETR weights load into it).
    """
    if num_frames < 1 or num_frames % 2 == 0:
        raise ValueError(f"MODEL.PAVENET.NUM_FRAMES must be odd and >= 1, got {num_frames}")
    c = num_frames // 2
    return ["pre_" * (c - f) if f < c else "next_" * (f - c) for f in range(num_frames)]


def _ring_offset_bias(num_heads: int, num_levels: int, num_points: int) -> torch.Tensor:
    """Deformable-DETR init of the offset bias: head h points along 2*pi*h/H, point j at (j+1)."""
    thetas = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = grid / grid.abs().max(-1, keepdim=True)[0]
    grid = grid.view(num_heads, 1, 1, 2).repeat(1, num_levels, num_points, 1)
    for j in range(num_points):
        grid[:, :, j, :] *= j + 1
    return grid.view(-1)


def _zero_padded(x: torch.Tensor, padding_mask) -> torch.Tensor:
    """x (..., S, C) with the tokens that padding_mask (..., S) marks as padded set to 0.

    On the CPU a mask without any padded token returns x itself: the fill would copy the whole memory (and
    its gradient in backward) for nothing, and clips without padding are the common case. Same values; on
    other devices (no host sync per layer) and while tracing (the branch would be baked in) it always fills."""
    if padding_mask is None:
        return x
    if x.device.type == "cpu" and not torch.jit.is_tracing() and not bool(padding_mask.any()):
        return x
    return x.masked_fill(padding_mask[..., None], 0.0)


def _xavier(linear: nn.Linear) -> None:
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)


class MSDeformAttn(nn.Module):
    """Single-frame multi-scale deformable self-attention of the spatial encoder (mmcv layout).

    Residual and dropout are inside (as in mmcv): returns ``query + dropout(attn)``.
    """

    msda_impl = "pytorch"  # sampling backend; the model sets it (msda_backend.set_msda_impl)

    def __init__(self, embed_dim=256, num_heads=8, num_levels=4, num_points=4, dropout=0.1):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.num_levels, self.num_points = (
            embed_dim,
            num_heads,
            num_levels,
            num_points,
        )
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(
                _ring_offset_bias(self.num_heads, self.num_levels, self.num_points)
            )
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        _xavier(self.value_proj)
        _xavier(self.output_proj)

    def forward(self, query, query_pos, value, reference_points, spatial_shapes, padding_mask=None):
        """query, query_pos: (N, Q, C); value: (N, S, C); reference_points: (N, Q, L, 2) in [0, 1];
        spatial_shapes: (L, 2) long; padding_mask: (N, S) bool, True = padded. Returns (N, Q, C)."""
        n, q, _ = query.shape
        h, lvl, p = self.num_heads, self.num_levels, self.num_points
        x = query + query_pos if query_pos is not None else query
        v = _zero_padded(
            self.value_proj(value), padding_mask
        )  # standard MSDA: zeroed after the projection
        v = v.view(n, v.shape[1], h, -1)
        offsets = self.sampling_offsets(x).view(n, q, h, lvl, p, 2)
        weights = self.attention_weights(x).view(n, q, h, lvl * p).softmax(-1).view(n, q, h, lvl, p)
        normalizer = torch.stack([spatial_shapes[:, 1], spatial_shapes[:, 0]], -1).to(offsets)
        # The same sums as broadcasting (N, Q, 1, L, 1, 2) + (N, Q, H, L, P, 2) / (L, 1, 2), but with the
        # (L, P, 2) block made contiguous first: ~6x faster on CPU (a short inner broadcast dim does not vectorise).
        normalizer = normalizer[:, None, :].expand(lvl, p, 2).contiguous()
        ref = reference_points[:, :, None, :, None, :].expand(n, q, 1, lvl, p, 2).contiguous()
        locs = ref + offsets / normalizer
        out = ms_deform_attn_core(v, spatial_shapes, locs, weights, self.msda_impl)
        return query + self.dropout(self.output_proj(out))


class _MultiFrameBase(nn.Module):
    """Per-frame offset / weight linears (official prefixes) + shared value_proj and output_proj."""

    msda_impl = "pytorch"  # sampling backend; the model sets it (msda_backend.set_msda_impl)

    def __init__(
        self,
        num_frames,
        embed_dim,
        num_heads,
        num_levels,
        num_points,
        dropout,
        value_fill_before_proj,
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.num_frames, self.embed_dim = num_frames, embed_dim
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.prefixes = frame_prefixes(num_frames)
        # Registration order follows the official checkpoints (frame order, offsets before weights).
        for pre in self.prefixes:
            setattr(
                self,
                pre + "sampling_offsets",
                nn.Linear(embed_dim, num_heads * num_levels * num_points * 2),
            )
            setattr(
                self,
                pre + "attention_weights",
                nn.Linear(embed_dim, num_heads * num_levels * num_points),
            )
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        # docs/REFERENCE.md §16 8d: the official multi-frame attentions zero padded tokens BEFORE value_proj.
        self.value_fill_before_proj = value_fill_before_proj

    def offset_layers(self):
        return [getattr(self, pre + "sampling_offsets") for pre in self.prefixes]

    def weight_layers(self):
        return [getattr(self, pre + "attention_weights") for pre in self.prefixes]

    def project_values(self, values, padding_mask=None):
        """values: (..., S, C) memory; padding_mask: (..., S) bool or None -> (..., S, H, D) sampled maps.

        Training projects the clip's (N, F, S, C) memory in the forward; in eval the head calls this once
        per frame (N, S, C) and passes the cached maps to the forward as a list (`PAVENetHead.encode`)."""
        if self.value_fill_before_proj:
            values = _zero_padded(values, padding_mask)
        v = self.value_proj(values)
        if not self.value_fill_before_proj:
            v = _zero_padded(v, padding_mask)
        return v.view(*v.shape[:-1], self.num_heads, -1)

    def _values(self, values, padding_mask):
        """The forward's `values`: raw memory (N, F, S, C) -> projected (N, F, S, H, D); a list of F
        already projected (N, S, H, D) maps (the eval cache) is used as it is."""
        if isinstance(values, (list, tuple)):
            return list(values)
        return self.project_values(values, padding_mask)

    def _offsets_and_logits(self, x):
        """x: (N, Q, C) -> offsets (N, Q, H, F, L, P, 2), logits (N, Q, H, F, L, P)."""
        n, q, _ = x.shape
        h, lvl, p = self.num_heads, self.num_levels, self.num_points
        offs = torch.stack([m(x).view(n, q, h, lvl, p, 2) for m in self.offset_layers()], dim=3)
        logits = torch.stack([m(x).view(n, q, h, lvl, p) for m in self.weight_layers()], dim=3)
        return offs, logits


class PoseAwareAttention(_MultiFrameBase):
    """Pose-aware multi-frame attention of the pose decoder (docs/REFERENCE.md §5.1). num_points = K keypoints.

    Init: every offset / weight linear is 0 (sampling starts on the reference keypoints with
    uniform weights); value_proj / output_proj xavier-uniform with zero bias.
    """

    def __init__(
        self,
        num_frames=3,
        embed_dim=256,
        num_heads=8,
        num_levels=4,
        num_keypoints=15,
        dropout=0.1,
        value_fill_before_proj=True,
    ):
        super().__init__(
            num_frames,
            embed_dim,
            num_heads,
            num_levels,
            num_keypoints,
            dropout,
            value_fill_before_proj,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.offset_layers() + self.weight_layers():
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        _xavier(self.value_proj)
        _xavier(self.output_proj)

    def forward(self, query, query_pos, values, reference_poses, spatial_shapes, padding_mask=None):
        """
        query, query_pos: (N, Q, C) (one query per person, shared by all frames)
        values: (N, F, S, C) memory of the clip's F frames, or a list of F (N, S, H, D) maps from
            `project_values` (the eval cache; padding_mask is then not read)
        reference_poses: (N, F, Q, L, 2K) per-frame reference poses already scaled by each level's
            valid ratio, [x0, y0, x1, y1, ...]
        padding_mask: (N, F, S) bool or None
        Returns (N, Q, C) = query + dropout(output_proj(attn)).
        """
        n, q, _ = query.shape
        f = self.num_frames
        k = self.num_points
        x = query + query_pos if query_pos is not None else query
        v = self._values(values, padding_mask)
        offs, logits = self._offsets_and_logits(x)  # (N, Q, H, F, L, K, 2), (N, Q, H, F, L, K)
        ref = reference_poses.view(n, f, q, self.num_levels, k, 2)
        lo = ref.min(dim=-2)[0]
        hi = ref.max(dim=-2)[0]
        wh = (hi - lo).clamp(min=1e-4)  # (N, F, Q, L, 2) extent of each frame's pose per level
        ref = ref.permute(0, 2, 1, 3, 4, 5)[:, :, None]  # (N, Q, 1, F, L, K, 2)
        wh = wh.permute(0, 2, 1, 3, 4)[:, :, None, :, :, None, :]  # (N, Q, 1, F, L, 1, 2)
        locs = ref + offs * wh * 0.5
        out = multi_frame_deform_attn(v, spatial_shapes, locs, logits, self.msda_impl)
        return query + self.dropout(self.output_proj(out))


JOINT_OFFSET_BIAS_MODES = ("shared_storage", "shared_parameter", "independent")


class MultiFrameDeformAttn(_MultiFrameBase):
    """Multi-frame deformable attention of the joint decoder (docs/REFERENCE.md §6): P points per joint, per frame.

    Init: offset weights 0 with the ring-pattern bias (identical for all frames), weights 0.

    offset_bias: how the F frames' ``sampling_offsets.bias`` relate. The official constructor assigns
    ONE tensor (``grid_init.view(-1)``) to every frame's bias, so the F Parameters are distinct objects
    over one storage:
      * "shared_storage" (default, official): the same here. Loading a checkpoint leaves the LAST frame's
        value in all of them; each Parameter gets its own gradient (its frame's contribution only), its
        own optimizer state and its own update, so one optimizer step moves the storage F times (and
        decays it F times). Like the official model, the sharing ends when the module is converted to
        another device or dtype (``model.cuda()``, ``.double()``): PyTorch then gives every Parameter
        its own new tensor, so official GPU training trains F independent biases that start equal.
      * "shared_parameter": one Parameter registered under every frame's name: one gradient (the sum
        over frames), one update per step; survives device moves.
      * "independent": F unrelated biases.
    The state_dict lists every official name in all modes.
    """

    def __init__(
        self,
        num_frames=3,
        embed_dim=256,
        num_heads=8,
        num_levels=4,
        num_points=4,
        dropout=0.1,
        value_fill_before_proj=True,
        offset_bias="shared_storage",
    ):
        super().__init__(
            num_frames,
            embed_dim,
            num_heads,
            num_levels,
            num_points,
            dropout,
            value_fill_before_proj,
        )
        if offset_bias not in JOINT_OFFSET_BIAS_MODES:
            raise ValueError(
                f"MODEL.PAVENET.JOINT_OFFSET_BIAS must be one of {JOINT_OFFSET_BIAS_MODES}, "
                f"got {offset_bias!r}"
            )
        self.offset_bias = offset_bias
        last = self.offset_layers()[-1].bias
        for m in self.offset_layers()[:-1]:
            if offset_bias == "shared_storage":
                m.bias = nn.Parameter(
                    last.data
                )  # a Parameter of its own over the last frame's storage
            elif offset_bias == "shared_parameter":
                m.bias = last
        self.reset_parameters()

    def reset_parameters(self) -> None:
        ring = _ring_offset_bias(self.num_heads, self.num_levels, self.num_points)
        for m in self.offset_layers():
            nn.init.zeros_(m.weight)
            with torch.no_grad():
                m.bias.copy_(ring)
        for m in self.weight_layers():
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        _xavier(self.value_proj)
        _xavier(self.output_proj)

    def forward(
        self,
        query,
        query_pos,
        values,
        reference_points,
        spatial_shapes,
        padding_mask=None,
        value_index=None,
    ):
        """
        query, query_pos: (N, Q, C) (Q = K joint queries of one person)
        values: (B, F, S, C) clip memories, or a list of F (B, S, H, D) maps from `project_values` (the
            eval cache; padding_mask is then not read); value_index (N,) long: the clip of each person (None: B == N,
            person n uses clip n). Persons of one clip share the projected values, so nothing is copied
            per person (at 800x1333 a per-person copy of 3 frames of memory would be ~70 MB each).
        reference_points: (N, F, Q, L, 2) already scaled by the valid ratios
        padding_mask: (B, F, S) bool or None. Returns (N, Q, C).
        """
        n, q, _ = query.shape
        x = query + query_pos if query_pos is not None else query
        v = self._values(values, padding_mask)  # (B, F, S, H, D) or F x (B, S, H, D)
        offs, logits = self._offsets_and_logits(x)  # (N, Q, H, F, L, P, 2)
        normalizer = torch.stack([spatial_shapes[:, 1], spatial_shapes[:, 0]], -1).to(offs)
        ref = reference_points.permute(0, 2, 1, 3, 4)[
            :, :, None, :, :, None, :
        ]  # (N, Q, 1, F, L, 1, 2)
        locs = ref + offs / normalizer[None, None, None, None, :, None, :]
        if value_index is None:
            out = multi_frame_deform_attn(v, spatial_shapes, locs, logits, self.msda_impl)
        else:
            # Attention never mixes queries: the persons of clip b are one batch row of n_b * Q queries.
            out = x.new_zeros(n, q, self.embed_dim)
            for b in torch.unique(value_index).tolist():
                rows = (value_index == b).nonzero()[:, 0]
                nb = rows.numel()
                if (v[0] if isinstance(v, list) else v).shape[0] == 1:
                    vb = v  # one clip: no slice, whose backward would zero-fill and copy the whole memory gradient
                else:
                    vb = [x[b : b + 1] for x in v] if isinstance(v, list) else v[b : b + 1]
                o = multi_frame_deform_attn(
                    vb,
                    spatial_shapes,
                    locs[rows].flatten(0, 1)[None],
                    logits[rows].flatten(0, 1)[None],
                    self.msda_impl,
                )
                out = out.index_copy(0, rows, o.view(nb, q, -1))
        return query + self.dropout(self.output_proj(out))
