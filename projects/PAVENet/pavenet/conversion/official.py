"""Official mmdetection/mmcv checkpoints (PAVE-Net, PETR) -> our detectron2 state dict.

Pure functions on state dicts; no model is needed (pass ``target_state_dict`` to get the strict
two-way check against a real model). The naming contract (docs/MODEL.md, docs/REFERENCE.md §13):

* ``backbone.`` mmdet ResNet -> detectron2 ResNet (``conv1`` -> ``stem.conv1``, ``bn1`` ->
  ``stem.conv1.norm``, ``layer{i}.{b}.conv{j}`` -> ``res{i+1}.{b}.conv{j}``, ``bn{j}`` ->
  ``conv{j}.norm``, ``downsample.{0,1}`` -> ``shortcut``/``shortcut.norm``); the four BN tensors
  become detectron2's FrozenBN buffers, ``num_batches_tracked`` is dropped.
* ``backbone.`` mmdet SwinTransformer -> timm's SwinTransformer names (see ``rename_swin_key``),
  with the patch-merging channel order undone (mmdet uses nn.Unfold, timm a reshape).
* ``neck.`` is kept, ``bbox_head.`` -> ``head.`` with identical sub-names.

PETR (single frame, 17 COCO joints) -> PAVE-Net initialisation (docs/REFERENCE.md §7, §14): key-frame modules
map one to one; the parameters PETR does not have (per-frame ``pre_``/``next_`` attention
projections and keypoint MLPs, sigma branches, RealNVP flows) keep the *constructor* init of a
freshly built PAVE-Net, which the caller passes as ``init_state_dict`` (that is what the official
runs did: mmcv's top-level Pretrained init skips every child init, docs/REFERENCE.md §7 "Init order").

``coco_to_posetrack=True`` slices every keypoint-indexed tensor from 17 to 15 joints (docs/REFERENCE.md §11:
keep COCO joints [0, 1, 2, 5..16], i.e. drop the ears).
"""
import collections
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..data.keypoint_meta import COCO_TO_POSETRACK_INDICES

__all__ = [
    "ConversionError",
    "ConversionReport",
    "FRAME_PREFIXES",
    "SwinLayout",
    "IGNORED_SOURCE_KEYS",
    "PAVENET_NEW_PARAMS",
    "convert_official_state_dict",
    "convert_official_state_dict_with_report",
    "detect_backbone_type",
    "detect_num_frames",
    "detect_num_keypoints",
    "keypoint_axis_layout",
    "rename_official_key",
    "rename_resnet_key",
    "rename_swin_key",
    "slice_keypoints",
    "swin_merge_permutation",
]


class ConversionError(ValueError):
    """A checkpoint that does not fit the requested architecture / target model."""


# Per-frame attribute prefixes in frame order t-T..t+T (docs/REFERENCE.md §5.1); "" is the key frame.
FRAME_PREFIXES: Dict[int, Tuple[str, ...]] = {
    1: ("",),
    3: ("pre_", "", "next_"),
    5: ("pre_pre_", "pre_", "", "next_", "next_next_"),
}
_AUX_PREFIX_RE = r"(?:pre_pre_|next_next_|pre_|next_)"

# Source tensors that are dropped on purpose, with the reason (regex on the *source* name).
# Only things the target model lacks: `fc_hm` IS kept (our model has it for compatibility).
IGNORED_SOURCE_KEYS: Tuple[Tuple[str, str], ...] = (
    (r"(^|\.)num_batches_tracked$", "BN step counter; detectron2's FrozenBN has no such buffer"),
    (r"^bbox_head\.(?:transformer\.)?hm_encoder\.",
     "PETR's auxiliary heatmap encoder (transformer.hm_encoder); PAVE-Net does not build it (docs/REFERENCE.md §13, §14)"),
)
# Optional source tensors: mapped when the target has them, otherwise dropped (constant buffers the
# target recomputes, e.g. timm registers Swin's relative_position_index as non-persistent).
_OPTIONAL_SOURCE_KEYS: Tuple[Tuple[str, str], ...] = (
    (r"\.relative_position_index$", "constant Swin buffer, recomputed by the target backbone"),
)

# Target parameters that a PETR checkpoint cannot provide; they keep PAVE-Net's constructor init
# (taken from `init_state_dict`). Regex on the *target* name.
PAVENET_NEW_PARAMS: Tuple[str, ...] = (
    # per-frame pose-attention and joint-attention projections of the auxiliary frames
    rf"^head\.transformer\.(?:decoder|refine_decoder)\.layers\.\d+\.attentions\.\d+\.{_AUX_PREFIX_RE}"
    r"(?:sampling_offsets|attention_weights)\.",
    # per-frame keypoint MLPs of the pose decoder and of the joint decoder
    rf"^head\.{_AUX_PREFIX_RE}(?:refine_)?kpt_branches\.",
    # RLE sigma heads and the three RealNVP flows (PETR regresses with L1/OKS)
    r"^head\.(?:dec_fc_sigma_branches|refine_fc_sigma_branches)\.",
    r"^head\.(?:enc_flow|dec_flow|flow)\.",
)


@dataclass
class ConversionReport:
    """What happened to every tensor: mapped (src -> dst), ignored (src, reason), initialised (dst)."""

    mapped: Dict[str, str] = field(default_factory=dict)
    ignored: Dict[str, str] = field(default_factory=dict)
    initialised: List[str] = field(default_factory=list)
    sliced: List[str] = field(default_factory=list)
    # joint-attention offset-bias groups tied to one value: (winning source name, [our names], values differed)
    tied: List[Tuple[str, List[str], bool]] = field(default_factory=list)
    backbone: str = ""
    num_frames: int = 0
    num_keypoints_src: int = 0
    num_keypoints_dst: int = 0

    def summary(self) -> str:
        differed = sum(d for _, _, d in self.tied)
        tied = (f"; {len(self.tied)} joint-attention offset-bias groups tied to the official load winner"
                f" ({differed} had differing values)") if self.tied else ""
        return (
            f"{len(self.mapped)} tensors mapped ({len(self.sliced)} sliced {self.num_keypoints_src}->"
            f"{self.num_keypoints_dst} joints), {len(self.ignored)} ignored, {len(self.initialised)} "
            f"initialised from the fresh model; backbone={self.backbone}, frames={self.num_frames}{tied}"
        )


# --------------------------------------------------------------------------------------------------
# Renaming
# --------------------------------------------------------------------------------------------------
_RESNET_LAYER_RE = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")


def rename_resnet_key(name: str) -> Optional[str]:
    """mmdet/torchvision ResNet name (without ``backbone.``) -> detectron2 ResNet name, or None."""
    if name.startswith("conv1."):
        return "stem.conv1." + name[len("conv1."):]
    if name.startswith("bn1."):
        return "stem.conv1.norm." + name[len("bn1."):]
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
        return prefix + "shortcut." + rest[len("downsample.0."):]
    if rest.startswith("downsample.1."):
        return prefix + "shortcut.norm." + rest[len("downsample.1."):]
    return None


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
        return "patch_embed.proj." + name[len("patch_embed.projection."):]
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
                return stage_format.format(s=int(m.group(1))) + f".blocks.{m.group(2)}.{new}{rest[len(old):]}"
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


def detect_backbone_type(state_dict: Mapping[str, torch.Tensor]) -> str:
    """"resnet" (mmdet ResNet) or "swin" (mmdet SwinTransformer), from the source ``backbone.`` keys."""
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


@dataclass
class SwinLayout:
    """Where the timm Swin sits in our model: ``prefix`` + timm names (stages as ``stage_format``);
    ``out_norms`` maps mmdet's output-norm index i (``norm{i}``) to our absolute name prefix.

    The defaults are our ``TimmSwinBackbone``'s names (timm ``features_only`` model under ``body``);
    a target model given to the converter overrides them."""

    prefix: str = "backbone.body."
    stage_format: str = "layers_{s}"
    out_norms: Dict[int, str] = field(default_factory=lambda: {i: f"backbone.norm{i}." for i in (1, 2, 3)})


def rename_official_key(name: str, backbone: str = "resnet", swin: Optional[SwinLayout] = None) -> Optional[str]:
    """Official (mmdet) name -> our name; None when the name is not part of the contract.

    For Swin, ``swin`` says where the timm model and the output norms sit in our model (read off the
    target model by ``convert_official_state_dict`` when one is given; default ``SwinLayout()``).
    """
    if name.startswith("backbone."):
        sub = name[len("backbone."):]
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
        return "head." + name[len("bbox_head."):]
    return None


# --------------------------------------------------------------------------------------------------
# Architecture detection
# --------------------------------------------------------------------------------------------------
def detect_num_frames(state_dict: Mapping[str, torch.Tensor]) -> int:
    """F from the per-frame pose-attention projections: 5 (pre_pre_), 3 (pre_) or 1 (PETR)."""
    names = [k for k in state_dict if ".decoder.layers.0." in k and "sampling_offsets" in k
             and "refine_decoder" not in k]
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
    raise ConversionError("no transformer.refine_query_embedding.weight: cannot tell the number of keypoints")


# --------------------------------------------------------------------------------------------------
# Keypoint slicing (docs/REFERENCE.md §11)
# --------------------------------------------------------------------------------------------------
_POSE_ATTN_RE = re.compile(
    rf"^head\.transformer\.decoder\.layers\.\d+\.attentions\.\d+\.(?:{_AUX_PREFIX_RE})?"
    r"(sampling_offsets|attention_weights)\.(weight|bias)$"
)
_KPT_OUT_RE = re.compile(rf"^head\.(?:{_AUX_PREFIX_RE})?kpt_branches\.\d+\.(\d+)\.(weight|bias)$")
_SIGMA_OUT_RE = re.compile(r"^head\.dec_fc_sigma_branches\.\d+\.\d+\.linear\.(weight|bias)$")


def keypoint_axis_layout(name: str, tensor: torch.Tensor, num_keypoints: int) -> Optional[str]:
    """How dim 0 of ``tensor`` (our name) is indexed by keypoints, or None if it is not.

    "k"   : (K, ...)                    refine_query_embedding, fc_hm
    "k2"  : (K*2, ...) as (K, 2)        last layer of the *kpt_branches, last layer of dec_fc_sigma_branches
    "hlk2": (H*L*K*2, ...) as (H,L,K,2) pose-attention *sampling_offsets
    "hlk" : (H*L*K, ...) as (H,L,K)     pose-attention *attention_weights
    """
    n = tensor.shape[0] if tensor.dim() else 0
    if name == "head.transformer.refine_query_embedding.weight" or re.match(r"^head\.fc_hm\.(weight|bias)$", name):
        return "k"
    m = _KPT_OUT_RE.match(name)
    if m and n == 2 * num_keypoints:
        return "k2"
    if _SIGMA_OUT_RE.match(name) and n == 2 * num_keypoints:
        return "k2"
    m = _POSE_ATTN_RE.match(name)
    if m:
        return "hlk2" if m.group(1) == "sampling_offsets" else "hlk"
    return None


def slice_keypoints(name: str, tensor: torch.Tensor, indices: Sequence[int], num_keypoints: int) -> torch.Tensor:
    """Keep joints ``indices`` along the keypoint-indexed dim 0 of ``tensor`` (our name).

    Returns the tensor unchanged if it is not keypoint-indexed. Layouts: see ``keypoint_axis_layout``.
    """
    layout = keypoint_axis_layout(name, tensor, num_keypoints)
    if layout is None:
        return tensor
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    k = num_keypoints
    rest = tuple(tensor.shape[1:])
    n = tensor.shape[0]
    if layout == "k":
        if n != k:
            raise ConversionError(f"{name}: dim 0 is {n}, expected {k} keypoints")
        return tensor.index_select(0, idx).contiguous()
    if layout == "k2":
        return tensor.reshape(k, 2, *rest).index_select(0, idx).reshape(len(idx) * 2, *rest).contiguous()
    per = 2 if layout == "hlk2" else 1
    if n % (k * per):
        raise ConversionError(f"{name}: dim 0 = {n} is not a multiple of K*{per} = {k * per}")
    hl = n // (k * per)
    t = tensor.reshape(hl, k, per, *rest).index_select(1, idx)
    return t.reshape(hl * len(idx) * per, *rest).contiguous()


# --------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------
def _strip_wrappers(state_dict: Mapping) -> "collections.OrderedDict[str, torch.Tensor]":
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    elif "model" in state_dict and isinstance(state_dict["model"], Mapping):
        raise ConversionError(
            "this file holds a 'model' dict (detectron2 format), not an mmcv 'state_dict': it is "
            "probably converted already; load it directly with MODEL.WEIGHTS"
        )
    out = collections.OrderedDict()
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise ConversionError(f"state dict key {k!r} is not a string")
        if not torch.is_tensor(v):
            raise ConversionError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def _first_match(name: str, patterns: Iterable[Tuple[str, str]]) -> Optional[str]:
    for pat, why in patterns:
        if re.search(pat, name):
            return why
    return None


def _swin_target_layout(target: Optional[Mapping[str, torch.Tensor]], src_out_norms: Sequence[int]) -> SwinLayout:
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
        if (m and k.startswith("backbone.") and not k.startswith(layout.prefix + "layers")
                and "patch_embed" not in k and torch.is_tensor(target[k]) and target[k].dim() == 1):
            groups[m.group(1)].append(int(m.group(2)))
    groups = {stem: sorted(ix) for stem, ix in groups.items() if len(ix) == len(src_out_norms)}
    if len(groups) == 1:
        stem, ix = next(iter(groups.items()))
        layout.out_norms = {i: f"{stem}{j}." for i, j in zip(sorted(src_out_norms), ix)}
    return layout


def convert_official_state_dict_with_report(
    state_dict: Mapping,
    arch: str = "pavenet",
    num_frames: int = 3,
    coco_to_posetrack: bool = False,
    target_state_dict: Optional[Mapping[str, torch.Tensor]] = None,
    init_state_dict: Optional[Mapping[str, torch.Tensor]] = None,
    extra_ignore: Sequence[str] = (),
    tie_joint_offset_bias: bool = True,
) -> Tuple["collections.OrderedDict[str, torch.Tensor]", ConversionReport]:
    """Convert an official checkpoint's state dict; see ``convert_official_state_dict``."""
    if arch not in ("pavenet", "petr"):
        raise ConversionError(f"arch must be 'pavenet' or 'petr', got {arch!r}")
    if num_frames not in FRAME_PREFIXES:
        raise ConversionError(f"num_frames must be one of {sorted(FRAME_PREFIXES)}, got {num_frames}")
    src = _strip_wrappers(state_dict)
    if not any(k.startswith("bbox_head.") for k in src):
        raise ConversionError("no 'bbox_head.*' tensors: not an mmdet PAVE-Net / PETR detector checkpoint")
    report = ConversionReport()
    report.backbone = detect_backbone_type(src)
    src_frames = detect_num_frames(src)
    if arch == "pavenet":
        if src_frames == 1:
            raise ConversionError(
                "this is a single-frame checkpoint (no pre_/next_ pose-attention projections), i.e. PETR; "
                "convert it with arch='petr' (--arch petr)"
            )
        if src_frames != num_frames:
            raise ConversionError(
                f"the checkpoint is a {src_frames}-frame PAVE-Net but num_frames={num_frames} was requested "
                f"(--num-frames {src_frames} / MODEL.PAVENET.NUM_FRAMES {src_frames})"
            )
    elif src_frames != 1:
        raise ConversionError(
            f"arch='petr' expects a single-frame PETR checkpoint, but this one is a {src_frames}-frame "
            f"PAVE-Net (it has pre_/next_ projections); use arch='pavenet' with num_frames={src_frames}"
        )
    report.num_frames = num_frames
    k_src = detect_num_keypoints(src)
    report.num_keypoints_src = k_src
    indices = None
    if coco_to_posetrack:
        if k_src != 17:
            raise ConversionError(f"coco_to_posetrack needs a 17-joint (COCO) checkpoint, this one has {k_src}")
        indices = COCO_TO_POSETRACK_INDICES
    report.num_keypoints_dst = len(indices) if indices is not None else k_src

    target_keys = None if target_state_dict is None else list(target_state_dict.keys())
    swin = None
    if report.backbone == "swin":
        src_norms = sorted({int(m.group(1)) for k in src for m in [re.match(r"^backbone\.norm(\d+)\.", k)] if m})
        swin = _swin_target_layout(target_state_dict, src_norms)
    ignore = tuple(IGNORED_SOURCE_KEYS) + tuple((p, "ignored by the caller (extra_ignore)") for p in extra_ignore)

    out: "collections.OrderedDict[str, torch.Tensor]" = collections.OrderedDict()
    unmapped = []
    for name, tensor in src.items():
        why = _first_match(name, ignore)
        if why is not None:
            report.ignored[name] = why
            continue
        new = rename_official_key(name, report.backbone, swin)
        if new is None:
            unmapped.append(name)
            continue
        optional = _first_match(name, _OPTIONAL_SOURCE_KEYS)
        if optional is not None and target_keys is not None and new not in target_state_dict:
            report.ignored[name] = optional
            continue
        if report.backbone == "swin" and ".downsample." in new and name.startswith("backbone."):
            perm = swin_merge_permutation(tensor.shape[-1])
            tensor = tensor.index_select(tensor.dim() - 1, perm).contiguous()
        if indices is not None:
            sliced = slice_keypoints(new, tensor, indices, k_src)
            if sliced is not tensor:
                report.sliced.append(new)
            tensor = sliced
        if new in out:
            raise ConversionError(f"two source tensors map to {new!r} (second: {name!r})")
        out[new] = tensor
        report.mapped[name] = new
    if unmapped:
        raise ConversionError(
            f"{len(unmapped)} source tensors are neither mapped nor on the ignore list, e.g. "
            f"{unmapped[:8]} (backbone detected as {report.backbone})"
        )

    if arch == "petr":
        if init_state_dict is None:
            raise ConversionError(
                "PETR -> PAVE-Net needs init_state_dict (a freshly built PAVE-Net's state_dict) for the "
                "parameters PETR does not have (per-frame projections/MLPs, sigma branches, flows; docs/REFERENCE.md §7)"
            )
        for key, value in init_state_dict.items():
            if key in out or not any(re.search(p, key) for p in PAVENET_NEW_PARAMS):
                continue
            if target_keys is not None and key not in target_state_dict:
                continue
            out[key] = value.detach().clone()
            report.initialised.append(key)

    if tie_joint_offset_bias and num_frames > 1:
        _tie_joint_offset_biases(out, report, num_frames)
    if target_state_dict is not None:
        _check_against_target(out, target_state_dict, report)
    return out, report


_JOINT_OFFSET_BIAS_RE = re.compile(
    rf"^(head\.transformer\.refine_decoder\.layers\.\d+\.attentions\.\d+\.){_AUX_PREFIX_RE}?sampling_offsets\.bias$")


def _tie_joint_offset_biases(out: "collections.OrderedDict[str, torch.Tensor]", report: ConversionReport,
                             num_frames: int) -> None:
    """Give every frame's joint-attention ``sampling_offsets.bias`` the value the official model ends with.

    The official joint attention (mmcv ``MulFramesMultiScaleDeformableAttentionNumFrames3/5``) assigns one
    tensor, ``grid_init.view(-1)``, to all F ``*sampling_offsets.bias``: they share a storage, so loading
    a checkpoint leaves the value of the last one copied in all of them (frame order: the last frame
    present in the source; for PETR, whose attention has only the key frame's, that one).
    """
    src_of = {dst: src for src, dst in report.mapped.items()}
    stems = dict.fromkeys(m.group(1) for m in map(_JOINT_OFFSET_BIAS_RE.match, out) if m)  # ordered set
    for stem in stems:
        names = [stem + pre + "sampling_offsets.bias" for pre in FRAME_PREFIXES[num_frames]]
        loaded = [k for k in names if k in src_of]  # load order = frame order (module registration order)
        if not loaded:
            continue
        winner = out[loaded[-1]]
        differed = any(not torch.equal(out[k], winner) for k in names if k in out)
        for k in names:
            if k in out:
                out[k] = winner
        report.tied.append((src_of[loaded[-1]], [k for k in names if k in out], differed))


def _check_against_target(out: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                          report: ConversionReport) -> None:
    missing = [k for k in target if k not in out]
    unexpected = [k for k in out if k not in target]
    bad_shapes = [
        f"{k}: converted {tuple(out[k].shape)} vs model {tuple(target[k].shape)}"
        for k in out if k in target and tuple(out[k].shape) != tuple(target[k].shape)
    ]
    if not (missing or unexpected or bad_shapes):
        return
    hints = []
    if any("pre_" in k or "next_" in k for k in missing + unexpected):
        hints.append("the number of frames of the checkpoint and of the model differ (MODEL.PAVENET.NUM_FRAMES)")
    if bad_shapes and report.num_keypoints_src == 17 and report.num_keypoints_dst == 17:
        hints.append("a 17-joint COCO checkpoint for a 15-joint model needs coco_to_posetrack (--coco-to-posetrack)")
    if any(k.startswith("backbone.") for k in unexpected):
        hints.append(f"the checkpoint's backbone ({report.backbone}) differs from the model's (MODEL.BACKBONE.NAME)")
        if report.backbone == "swin" and any(re.match(r"^backbone\.norm\d+\.", k) for k in unexpected):
            hints.append("the model's Swin backbone has no output LayerNorms, but the official one normalises "
                         "each output (mmdet norm1..3)")
    msg = ["the converted state dict does not fit the target model:"]
    if missing:
        msg.append(f"  {len(missing)} model tensors not filled, e.g. {missing[:6]}")
    if unexpected:
        msg.append(f"  {len(unexpected)} converted tensors the model lacks, e.g. {unexpected[:6]}")
    if bad_shapes:
        msg.append(f"  {len(bad_shapes)} shape mismatches, e.g. {bad_shapes[:4]}")
    if hints:
        msg.append("  hint: " + "; ".join(hints))
    raise ConversionError("\n".join(msg))


def convert_official_state_dict(
    state_dict: Mapping,
    arch: str = "pavenet",
    num_frames: int = 3,
    coco_to_posetrack: bool = False,
    target_state_dict: Optional[Mapping[str, torch.Tensor]] = None,
    init_state_dict: Optional[Mapping[str, torch.Tensor]] = None,
    extra_ignore: Sequence[str] = (),
    tie_joint_offset_bias: bool = True,
) -> "collections.OrderedDict[str, torch.Tensor]":
    """Official mmcv state dict (or the whole ``{"state_dict": ...}`` checkpoint) -> our state dict.

    Args:
        state_dict: official tensors by official name (``backbone.*``, ``neck.*``, ``bbox_head.*``);
            a ``module.`` prefix is stripped.
        arch: "pavenet" (an official PAVE-Net checkpoint with ``num_frames`` frames: renaming only) or
            "petr" (a single-frame PETR checkpoint used to initialise a ``num_frames`` PAVE-Net).
        num_frames: F of the target model (1, 3 or 5); must match a PAVE-Net checkpoint's F.
        coco_to_posetrack: slice every keypoint-indexed tensor 17 -> 15 joints (docs/REFERENCE.md §11).
        target_state_dict: optional state dict (or just names/shapes) of the target model; when given,
            every target tensor must be filled and every converted tensor must exist with its shape.
        init_state_dict: a freshly built PAVE-Net's state dict; required for arch="petr", the source of
            the parameters PETR lacks (``PAVENET_NEW_PARAMS``).
        extra_ignore: more regexes on source names to drop (on top of ``IGNORED_SOURCE_KEYS``).
        tie_joint_offset_bias: give all frames' joint-attention ``sampling_offsets.bias`` the value the
            official model holds after loading (they share one storage there; MODEL.PAVENET.JOINT_OFFSET_BIAS
            other than "independent").

    Returns: an OrderedDict of our names -> tensors (the source tensors themselves where no slicing
    or reordering was needed). Raises ``ConversionError`` for any tensor that is neither mapped nor
    ignored, for a checkpoint of another architecture / frame count, and for target mismatches.
    """
    out, _ = convert_official_state_dict_with_report(
        state_dict, arch=arch, num_frames=num_frames, coco_to_posetrack=coco_to_posetrack,
        target_state_dict=target_state_dict, init_state_dict=init_state_dict, extra_ignore=extra_ignore,
        tie_joint_offset_bias=tie_joint_offset_bias,
    )
    return out
