"""mmdet SwinTransformer -> timm SwinTransformer: key renaming, patch-merging channel order, and where the
timm model sits in the target.

mmdet merges patches at the end of a stage with `nn.Unfold`, timm (>= 0.9) at the start of the next one
with a reshape: `rename_swin_key` moves the names, `swin_merge_permutation` reorders the values.
`SwinLayout` says where the timm model and mmdet's output LayerNorms live in our model; by default our
`TimmSwinBackbone`'s names, or read off a target state dict by `swin_target_layout`. The rest of the
naming contract (ResNet, neck, head) is `naming.py`'s.
"""

import collections
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from .report import ConversionError

__all__ = ["SwinLayout", "rename_swin_key", "swin_merge_permutation", "swin_target_layout"]


# mmdet SwinTransformer (mmdet 2.x) -> timm SwinTransformer (timm >= 0.9) sub-names.
_SWIN_BLOCK_RENAMES = (
    ("attn.w_msa.qkv.", "attn.qkv."),
    ("attn.w_msa.proj.", "attn.proj."),
    ("attn.w_msa.relative_position_bias_table", "attn.relative_position_bias_table"),
    ("attn.w_msa.relative_position_index", "attn.relative_position_index"),
    ("ffn.layers.0.0.", "mlp.fc1."),
    ("ffn.layers.1.", "mlp.fc2."),
    ("norm1.", "norm1."),
    ("norm2.", "norm2."),
)


def rename_swin_key(name: str, stage_format: str = "layers.{s}") -> Optional[str]:
    """mmdet SwinTransformer name (without ``backbone.``) -> timm SwinTransformer name, or None.

    ``stage_format`` names timm's stage ``s``: "layers.{s}" for the classifier model, "layers_{s}"
    for timm's ``features_only`` wrapper (FeatureListNet flattens the stage Sequential).

    * ``patch_embed.projection`` -> ``patch_embed.proj``; ``patch_embed.norm`` kept;
    * ``stages.{s}.blocks.{j}.*`` -> ``layers.{s}.blocks.{j}.*`` (``attn.w_msa.qkv`` -> ``attn.qkv``,
      ``ffn.layers.0.0`` -> ``mlp.fc1``, ``ffn.layers.1`` -> ``mlp.fc2``);
    * ``stages.{s}.downsample.*`` -> ``layers.{s+1}.downsample.*``: mmdet merges at the END of a
      stage, timm >= 0.9 at the START of the next one (the values also need
      ``swin_merge_permutation``);
    * ``norm{i}`` (mmdet's LayerNorm on output ``i``) is not part of timm's model: our backbone
      holds it; ``rename_official_key`` names it.
    """
    if name.startswith("patch_embed.projection."):
        return "patch_embed.proj." + name[len("patch_embed.projection.") :]
    if name.startswith("patch_embed.norm."):
        return name
    if name.startswith("absolute_pos_embed"):
        return name
    m = re.match(r"^stages\.(\d+)\.downsample\.(norm|reduction)\.(.+)$", name)
    if m:
        return stage_format.format(s=int(m.group(1)) + 1) + f".downsample.{m.group(2)}.{m.group(3)}"
    m = re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)$", name)
    if m:
        rest = m.group(3)
        for old, new in _SWIN_BLOCK_RENAMES:
            if rest.startswith(old):
                return (
                    stage_format.format(s=int(m.group(1)))
                    + f".blocks.{m.group(2)}.{new}{rest[len(old) :]}"
                )
    return None


def swin_merge_permutation(channels4: int) -> torch.Tensor:
    """Index ``p`` (4C,) with ``timm_tensor[..., t] = mmdet_tensor[..., p[t]]`` for patch merging.

    mmdet's PatchMerging flattens each 2x2 neighbourhood with ``nn.Unfold``: feature index
    ``c*4 + dy*2 + dx``. timm (like the original Swin) concatenates x0=(0,0), x1=(1,0), x2=(0,1),
    x3=(1,1) as (dy, dx): feature index ``(dx*2 + dy)*C + c``. Applies to ``downsample.norm.*``
    (vectors) and the input dim of ``downsample.reduction.weight``.
    """
    if channels4 % 4:
        raise ConversionError(f"patch-merging width {channels4} is not a multiple of 4")
    c = channels4 // 4
    perm = torch.empty(channels4, dtype=torch.long)
    for dx in range(2):
        for dy in range(2):
            for ch in range(c):
                perm[(dx * 2 + dy) * c + ch] = ch * 4 + dy * 2 + dx
    return perm


@dataclass
class SwinLayout:
    """Where the timm Swin sits in our model: ``prefix`` + timm names (stages as ``stage_format``);
    ``out_norms`` maps mmdet's output-norm index i (``norm{i}``) to our absolute name prefix.

    The defaults are our ``TimmSwinBackbone``'s names (timm ``features_only`` model under ``body``);
    a target model given to the converter overrides them."""

    prefix: str = "backbone.body."
    stage_format: str = "layers_{s}"
    out_norms: Dict[int, str] = field(
        default_factory=lambda: {i: f"backbone.norm{i}." for i in (1, 2, 3)}
    )


def swin_target_layout(
    target: Optional[Mapping[str, torch.Tensor]], src_out_norms: Sequence[int]
) -> SwinLayout:
    """Read the timm prefix, the stage naming and the output-norm names off the target model."""
    layout = SwinLayout()
    if target is None:
        return layout
    keys = list(target.keys())
    for k in keys:
        if k.endswith("patch_embed.proj.weight"):
            layout.prefix = k[: -len("patch_embed.proj.weight")]
            break
    if any(k.startswith(layout.prefix + "layers_") for k in keys):
        layout.stage_format = "layers_{s}"
    elif any(k.startswith(layout.prefix + "layers.") for k in keys):
        layout.stage_format = "layers.{s}"
    # Output LayerNorms: a group of >= len(src) 1-D "<stem><n>.weight" backbone tensors outside the
    # timm stages, paired with mmdet's norm{i} in index order (e.g. out_norms.0..2 <- norm1..3).
    groups: Dict[str, List[int]] = collections.defaultdict(list)
    for k in keys:
        m = re.match(r"^(backbone\..*?)(\d+)\.weight$", k)
        if (
            m
            and k.startswith("backbone.")
            and not k.startswith(layout.prefix + "layers")
            and "patch_embed" not in k
            and torch.is_tensor(target[k])
            and target[k].dim() == 1
        ):
            groups[m.group(1)].append(int(m.group(2)))
    groups = {stem: sorted(ix) for stem, ix in groups.items() if len(ix) == len(src_out_norms)}
    if len(groups) == 1:
        stem, ix = next(iter(groups.items()))
        layout.out_norms = {i: f"{stem}{j}." for i, j in zip(sorted(src_out_norms), ix)}
    return layout
