"""The naming contract between official (mmdet) checkpoints and our model, and what a checkpoint is.

Owns the per-frame attribute prefixes, the source keys dropped on purpose (with the reason), the target
parameters a PETR checkpoint cannot provide, the ResNet renaming (mmdet/torchvision -> detectron2), the
whole-key renaming `rename_official_key` (backbone, ``neck.`` kept, ``bbox_head.`` -> ``head.``; the Swin
part is `swin.py`'s), and reading the backbone type, the frame count F and the joint count K off a source
state dict. Pure functions on names; the conversion itself is `official.py`'s.

* ``backbone.`` mmdet ResNet -> detectron2 ResNet (``conv1`` -> ``stem.conv1``, ``bn1`` ->
  ``stem.conv1.norm``, ``layer{i}.{b}.conv{j}`` -> ``res{i+1}.{b}.conv{j}``, ``bn{j}`` ->
  ``conv{j}.norm``, ``downsample.{0,1}`` -> ``shortcut``/``shortcut.norm``); the four BN tensors
  become detectron2's FrozenBN buffers, ``num_batches_tracked`` is dropped.
* ``backbone.`` mmdet SwinTransformer -> timm's SwinTransformer names (``swin.rename_swin_key``),
  with the patch-merging channel order undone (mmdet uses nn.Unfold, timm a reshape).
* ``neck.`` is kept, ``bbox_head.`` -> ``head.`` with identical sub-names.
"""

import re
from typing import Dict, Mapping, Optional, Tuple

import torch

from ..modeling.ms_deform_attn import frame_prefixes
from .report import ConversionError
from .swin import SwinLayout, rename_swin_key

__all__ = [
    "FRAME_PREFIXES",
    "IGNORED_SOURCE_KEYS",
    "PAVENET_NEW_PARAMS",
    "detect_backbone_type",
    "detect_num_frames",
    "detect_num_keypoints",
    "rename_official_key",
    "rename_resnet_key",
]

# Per-frame attribute prefixes of the model (t-T..t+T, "" the key frame) for the frame counts the official
# checkpoints come in.
FRAME_PREFIXES: Dict[int, Tuple[str, ...]] = {f: tuple(frame_prefixes(f)) for f in (1, 3, 5)}
# Any auxiliary frame's prefix, longest first so that "pre_pre_" is not read as "pre_".
AUX_FRAME_PREFIX_RE = (
    "(?:"
    + "|".join(
        sorted({p for ps in FRAME_PREFIXES.values() for p in ps if p}, key=lambda p: (-len(p), p))
    )
    + ")"
)

# Source tensors that are dropped on purpose, with the reason (regex on the *source* name).
# Only things the target model lacks: `fc_hm` IS kept (our model has it for compatibility).
IGNORED_SOURCE_KEYS: Tuple[Tuple[str, str], ...] = (
    (r"(^|\.)num_batches_tracked$", "BN step counter; detectron2's FrozenBN has no such buffer"),
    (
        r"^bbox_head\.(?:transformer\.)?hm_encoder\.",
        "PETR's auxiliary heatmap encoder (transformer.hm_encoder); PAVE-Net does not build it "
        "(docs/REFERENCE.md §13, §14)",
    ),
)
# Optional source tensors: mapped when the target has them, otherwise dropped (constant buffers the
# target recomputes, e.g. timm registers Swin's relative_position_index as non-persistent).
OPTIONAL_SOURCE_KEYS: Tuple[Tuple[str, str], ...] = (
    (r"\.relative_position_index$", "constant Swin buffer, recomputed by the target backbone"),
)

# Target parameters that a PETR checkpoint cannot provide; they keep PAVE-Net's constructor init
# (taken from `init_state_dict`). Regex on the *target* name.
PAVENET_NEW_PARAMS: Tuple[str, ...] = (
    # per-frame pose-attention and joint-attention projections of the auxiliary frames
    rf"^head\.transformer\.(?:decoder|refine_decoder)\.layers\.\d+\.attentions\.\d+\.{AUX_FRAME_PREFIX_RE}"
    r"(?:sampling_offsets|attention_weights)\.",
    # per-frame keypoint MLPs of the pose decoder and of the joint decoder
    rf"^head\.{AUX_FRAME_PREFIX_RE}(?:refine_)?kpt_branches\.",
    # RLE sigma heads and the three RealNVP flows (PETR regresses with L1/OKS)
    r"^head\.(?:dec_fc_sigma_branches|refine_fc_sigma_branches)\.",
    r"^head\.(?:enc_flow|dec_flow|flow)\.",
)


_RESNET_LAYER_RE = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")


def rename_resnet_key(name: str) -> Optional[str]:
    """mmdet/torchvision ResNet name (without ``backbone.``) -> detectron2 ResNet name, or None."""
    if name.startswith("conv1."):
        return "stem.conv1." + name[len("conv1.") :]
    if name.startswith("bn1."):
        return "stem.conv1.norm." + name[len("bn1.") :]
    m = _RESNET_LAYER_RE.match(name)
    if m is None:
        return None
    stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
    prefix = f"res{stage + 1}.{block}."
    m2 = re.match(r"^conv(\d)\.(.+)$", rest)
    if m2:
        return prefix + f"conv{m2.group(1)}.{m2.group(2)}"
    m2 = re.match(r"^bn(\d)\.(.+)$", rest)
    if m2:
        return prefix + f"conv{m2.group(1)}.norm.{m2.group(2)}"
    if rest.startswith("downsample.0."):
        return prefix + "shortcut." + rest[len("downsample.0.") :]
    if rest.startswith("downsample.1."):
        return prefix + "shortcut.norm." + rest[len("downsample.1.") :]
    return None


def detect_backbone_type(state_dict: Mapping[str, torch.Tensor]) -> str:
    """ "resnet" (mmdet ResNet) or "swin" (mmdet SwinTransformer), from the source ``backbone.`` keys."""
    keys = [k for k in state_dict if k.startswith("backbone.")]
    if any(k.startswith("backbone.patch_embed.") or k.startswith("backbone.stages.") for k in keys):
        return "swin"
    if any(k.startswith("backbone.conv1.") or k.startswith("backbone.layer1.") for k in keys):
        return "resnet"
    if any(k.startswith("backbone.stem.") or k.startswith("backbone.res2.") for k in keys):
        raise ConversionError(
            "the backbone already uses detectron2 names (backbone.stem.*): this checkpoint looks "
            "converted already; load it directly with MODEL.WEIGHTS"
        )
    raise ConversionError(
        "cannot recognise the backbone: expected mmdet ResNet (backbone.conv1.*, backbone.layer1.*) "
        "or mmdet SwinTransformer (backbone.patch_embed.*, backbone.stages.*) keys"
    )


def rename_official_key(
    name: str, backbone: str = "resnet", swin: Optional[SwinLayout] = None
) -> Optional[str]:
    """Official (mmdet) name -> our name; None when the name is not part of the contract.

    For Swin, ``swin`` says where the timm model and the output norms sit in our model (read off the
    target model by ``convert_official_state_dict`` when one is given; default ``SwinLayout()``).
    """
    if name.startswith("backbone."):
        sub = name[len("backbone.") :]
        if backbone == "resnet":
            new = rename_resnet_key(sub)
            return None if new is None else "backbone." + new
        if backbone == "swin":
            swin = swin or SwinLayout()
            m = re.match(r"^norm(\d+)\.(.+)$", sub)
            if m:
                base = swin.out_norms.get(int(m.group(1)))
                return None if base is None else base + m.group(2)
            new = rename_swin_key(sub, swin.stage_format)
            return None if new is None else swin.prefix + new
        raise ConversionError(f"unknown backbone type {backbone!r}")
    if name.startswith("neck."):
        return name
    if name.startswith("bbox_head."):
        return "head." + name[len("bbox_head.") :]
    return None


# --------------------------------------------------------------------------------------------------
# Architecture detection
# --------------------------------------------------------------------------------------------------
def detect_num_frames(state_dict: Mapping[str, torch.Tensor]) -> int:
    """F from the per-frame pose-attention projections: 5 (pre_pre_), 3 (pre_) or 1 (PETR)."""
    names = [
        k
        for k in state_dict
        if ".decoder.layers.0." in k and "sampling_offsets" in k and "refine_decoder" not in k
    ]
    if not names:
        raise ConversionError(
            "no pose-decoder sampling_offsets found (…transformer.decoder.layers.0.attentions.*."
            "sampling_offsets): not a PETR / PAVE-Net checkpoint"
        )
    if any(".pre_pre_sampling_offsets." in k for k in names):
        return 5
    if any(".pre_sampling_offsets." in k for k in names):
        return 3
    return 1


def detect_num_keypoints(state_dict: Mapping[str, torch.Tensor]) -> int:
    """K from ``…transformer.refine_query_embedding.weight`` (K, 2C)."""
    for k, v in state_dict.items():
        if k.endswith("transformer.refine_query_embedding.weight"):
            return int(v.shape[0])
    raise ConversionError(
        "no transformer.refine_query_embedding.weight: cannot tell the number of keypoints"
    )
