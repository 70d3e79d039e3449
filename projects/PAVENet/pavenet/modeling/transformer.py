"""Transformer layers of PAVE-Net (docs/REFERENCE.md §3, §5, §6), with the official module names.

All tensors are batch-first here (the official mmcv code is sequence-first; the math is the same).
Every layer is post-norm. Residual connections of attentions and FFNs live inside those modules, as
in mmcv, so the parameter tree is `attentions.{i}`, `ffns.0.layers.{0.0,1}`, `norms.{i}`.
"""

import torch
from torch import nn

from .ms_deform_attn import MSDeformAttn, MultiFrameDeformAttn, PoseAwareAttention

__all__ = [
    "inverse_sigmoid",
    "FFN",
    "SelfAttention",
    "EncoderLayer",
    "PoseDecoderLayer",
    "JointDecoderLayer",
    "LayerStack",
    "PAVETransformer",
]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """mmdet's clamped logit, log(x / (1 - x)) with both terms clamped at eps."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class FFN(nn.Module):
    """x + Linear(Dropout(ReLU(Linear(x)))) with mmcv's `layers.0.0` / `layers.1` names.

    The ReLU is not in place: on a batched (B, N, C) input the first Linear returns a view of its 2-D
    product, and an in-place op on a view makes autograd copy it back (CopySlices) and zero-fill an
    as_strided gradient in backward, ~15% of the FFN's training step on CPU. Same numbers either way."""

    def __init__(self, embed_dim=256, ffn_dim=1024, dropout=0.1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout)),
            nn.Linear(ffn_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return x + self.layers(x)


class SelfAttention(nn.Module):
    """mmcv MultiheadAttention: q = k = x + pos, v = x; returns x + dropout(attn)."""

    def __init__(self, embed_dim=256, num_heads=8, dropout=0.1):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pos, attn_mask=None):
        """attn_mask: optional (Q, Q) bool, True = query i may NOT attend to key j."""
        q = x + pos if pos is not None else x
        return x + self.dropout(self.attn(q, q, x, attn_mask=attn_mask, need_weights=False)[0])


class EncoderLayer(nn.Module):
    """Deformable self-attention -> LN -> FFN -> LN (docs/REFERENCE.md §3)."""

    def __init__(self, embed_dim, num_heads, num_levels, num_points, ffn_dim, dropout):
        super().__init__()
        self.attentions = nn.ModuleList(
            [MSDeformAttn(embed_dim, num_heads, num_levels, num_points, dropout)]
        )
        self.ffns = nn.ModuleList([FFN(embed_dim, ffn_dim, dropout)])
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dim) for _ in range(2)])

    def forward(self, x, pos, reference_points, spatial_shapes, padding_mask):
        x = self.norms[0](
            self.attentions[0](x, pos, x, reference_points, spatial_shapes, padding_mask)
        )
        return self.norms[1](self.ffns[0](x))


class _DecoderLayer(nn.Module):
    """self-attn -> LN -> multi-frame cross-attn -> LN -> FFN -> LN (docs/REFERENCE.md §5, §6)."""

    def __init__(self, cross_attn: nn.Module, embed_dim, num_heads, ffn_dim, dropout):
        super().__init__()
        self.attentions = nn.ModuleList([SelfAttention(embed_dim, num_heads, dropout), cross_attn])
        self.ffns = nn.ModuleList([FFN(embed_dim, ffn_dim, dropout)])
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dim) for _ in range(3)])

    def forward(
        self,
        query,
        query_pos,
        values,
        references,
        spatial_shapes,
        padding_mask,
        self_attn_mask=None,
        **kwargs,
    ):
        x = self.norms[0](self.attentions[0](query, query_pos, self_attn_mask))
        x = self.norms[1](
            self.attentions[1](
                x, query_pos, values, references, spatial_shapes, padding_mask, **kwargs
            )
        )
        return self.norms[2](self.ffns[0](x))


class PoseDecoderLayer(_DecoderLayer):
    def __init__(
        self,
        num_frames,
        num_keypoints,
        embed_dim,
        num_heads,
        num_levels,
        ffn_dim,
        dropout,
        value_fill_before_proj=True,
    ):
        attn = PoseAwareAttention(
            num_frames,
            embed_dim,
            num_heads,
            num_levels,
            num_keypoints,
            dropout,
            value_fill_before_proj,
        )
        super().__init__(attn, embed_dim, num_heads, ffn_dim, dropout)


class JointDecoderLayer(_DecoderLayer):
    def __init__(
        self,
        num_frames,
        embed_dim,
        num_heads,
        num_levels,
        num_points,
        ffn_dim,
        dropout,
        value_fill_before_proj=True,
        offset_bias="shared_storage",
    ):
        attn = MultiFrameDeformAttn(
            num_frames,
            embed_dim,
            num_heads,
            num_levels,
            num_points,
            dropout,
            value_fill_before_proj,
            offset_bias,
        )
        super().__init__(attn, embed_dim, num_heads, ffn_dim, dropout)


class LayerStack(nn.Module):
    """Holds `layers` (official `encoder.layers.{i}` / `decoder.layers.{i}` names)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def num_layers(self):
        return len(self.layers)


class PAVETransformer(nn.Module):
    """Parameter container of the official `bbox_head.transformer` subtree.

    encoder (spatial, per frame), decoder (spatiotemporal pose decoder), refine_decoder (joint
    decoder), level_embeds, enc_output(+_norm) for query selection, refine_query_embedding (K, 2C).
    The forward logic lives in `PAVENetHead`, which also owns the prediction branches.
    """

    def __init__(
        self,
        num_frames=3,
        num_keypoints=15,
        embed_dim=256,
        num_heads=8,
        num_levels=4,
        ffn_dim=1024,
        dropout=0.1,
        enc_layers=6,
        enc_points=4,
        pose_layers=3,
        joint_layers=2,
        joint_points=4,
        value_fill_before_proj=True,
        joint_offset_bias="shared_storage",
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.encoder = LayerStack(
            [
                EncoderLayer(embed_dim, num_heads, num_levels, enc_points, ffn_dim, dropout)
                for _ in range(enc_layers)
            ]
        )
        self.decoder = LayerStack(
            [
                PoseDecoderLayer(
                    num_frames,
                    num_keypoints,
                    embed_dim,
                    num_heads,
                    num_levels,
                    ffn_dim,
                    dropout,
                    value_fill_before_proj,
                )
                for _ in range(pose_layers)
            ]
        )
        self.refine_decoder = LayerStack(
            [
                JointDecoderLayer(
                    num_frames,
                    embed_dim,
                    num_heads,
                    num_levels,
                    joint_points,
                    ffn_dim,
                    dropout,
                    value_fill_before_proj,
                    joint_offset_bias,
                )
                for _ in range(joint_layers)
            ]
        )
        self.level_embeds = nn.Parameter(torch.empty(num_levels, embed_dim))
        self.enc_output = nn.Linear(embed_dim, embed_dim)
        self.enc_output_norm = nn.LayerNorm(embed_dim)
        self.refine_query_embedding = nn.Embedding(num_keypoints, embed_dim * 2)
        self.init_weights()

    def init_weights(self) -> None:
        """From-scratch init (official `init_weights`): xavier on every >=2-D parameter, then the
        attention constructor inits are RE-APPLIED (docs/REFERENCE.md §16 8h: the official pass leaves the
        multi-frame attentions xavier-initialised), level / refine embeddings ~ N(0, 1)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, (MSDeformAttn, PoseAwareAttention, MultiFrameDeformAttn)):
                m.reset_parameters()
        nn.init.normal_(self.level_embeds)
        nn.init.normal_(self.refine_query_embedding.weight)
