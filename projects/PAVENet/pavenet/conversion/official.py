"""The conversion driver: official mmdetection/mmcv checkpoints (PAVE-Net, PETR) -> our detectron2 state dict.

Owns the conversion run: unwrapping the checkpoint, checking that its architecture and frame count fit the
request, renaming every tensor through the naming contract (`naming.py`, Swin in `swin.py`; docs/MODEL.md,
docs/REFERENCE.md §13), slicing joints (`keypoints.py`), filling what PETR lacks, tying the joint-attention
offset biases, and the strict two-way check against a target model; the outcome is a `ConversionReport`
(`report.py`). Pure functions on state dicts; no model is needed (pass ``target_state_dict`` to get the
check against a real model).

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
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import torch

from ..data.keypoint_meta import COCO_TO_POSETRACK_INDICES
from ..utils.state_dict import state_dict_mismatch
from .keypoints import slice_keypoints
from .naming import (
    AUX_FRAME_PREFIX_RE,
    FRAME_PREFIXES,
    IGNORED_SOURCE_KEYS,
    OPTIONAL_SOURCE_KEYS,
    PAVENET_NEW_PARAMS,
    detect_backbone_type,
    detect_num_frames,
    detect_num_keypoints,
    rename_official_key,
)
from .report import ConversionError, ConversionReport
from .swin import swin_merge_permutation, swin_target_layout

__all__ = [
    "convert_official_state_dict",
    "convert_official_state_dict_with_report",
    "strip_wrappers",
]


def strip_wrappers(state_dict: Mapping) -> "collections.OrderedDict[str, torch.Tensor]":
    """The tensors of an mmcv checkpoint (``{"state_dict": ...}`` or the state dict itself), ``module.`` stripped;
    a detectron2 ``{"model": ...}`` file or a non-tensor entry is a `ConversionError`."""
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
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def _first_match(name: str, patterns: Iterable[Tuple[str, str]]) -> Optional[str]:
    for pat, why in patterns:
        if re.search(pat, name):
            return why
    return None


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
    """Official mmcv state dict (or the whole ``{"state_dict": ...}`` checkpoint) -> (our state dict, report).

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

    Returns: an OrderedDict of our names -> tensors (the source tensors themselves where no slicing or
    reordering was needed), and the `ConversionReport`. Raises ``ConversionError`` for any tensor that is neither
    mapped nor ignored, for a checkpoint of another architecture / frame count, and for target mismatches.
    """
    if arch not in ("pavenet", "petr"):
        raise ConversionError(f"arch must be 'pavenet' or 'petr', got {arch!r}")
    if num_frames not in FRAME_PREFIXES:
        raise ConversionError(
            f"num_frames must be one of {sorted(FRAME_PREFIXES)}, got {num_frames}"
        )
    src = strip_wrappers(state_dict)
    if not any(k.startswith("bbox_head.") for k in src):
        raise ConversionError(
            "no 'bbox_head.*' tensors: not an mmdet PAVE-Net / PETR detector checkpoint"
        )
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
            raise ConversionError(
                f"coco_to_posetrack needs a 17-joint (COCO) checkpoint, this one has {k_src}"
            )
        indices = COCO_TO_POSETRACK_INDICES
    report.num_keypoints_dst = len(indices) if indices is not None else k_src

    target_keys = None if target_state_dict is None else list(target_state_dict.keys())
    swin = None
    if report.backbone == "swin":
        src_norms = sorted(
            {int(m.group(1)) for k in src for m in [re.match(r"^backbone\.norm(\d+)\.", k)] if m}
        )
        swin = swin_target_layout(target_state_dict, src_norms)
    ignore = tuple(IGNORED_SOURCE_KEYS) + tuple(
        (p, "ignored by the caller (extra_ignore)") for p in extra_ignore
    )

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
        optional = _first_match(name, OPTIONAL_SOURCE_KEYS)
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
                "parameters PETR does not have (per-frame projections/MLPs, sigma branches, flows; "
                "docs/REFERENCE.md §7)"
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
    rf"^(head\.transformer\.refine_decoder\.layers\.\d+\.attentions\.\d+\.){AUX_FRAME_PREFIX_RE}?sampling_offsets\.bias$"
)


def _tie_joint_offset_biases(
    out: "collections.OrderedDict[str, torch.Tensor]", report: ConversionReport, num_frames: int
) -> None:
    """Give every frame's joint-attention ``sampling_offsets.bias`` the value the official model ends with.

    The official joint attention (mmcv ``MulFramesMultiScaleDeformableAttentionNumFrames3/5``) assigns one
    tensor, ``grid_init.view(-1)``, to all F ``*sampling_offsets.bias``: they share a storage, so loading
    a checkpoint leaves the value of the last one copied in all of them (frame order: the last frame
    present in the source; for PETR, whose attention has only the key frame's, that one).
    """
    src_of = {dst: src for src, dst in report.mapped.items()}
    stems = dict.fromkeys(
        m.group(1) for m in map(_JOINT_OFFSET_BIAS_RE.match, out) if m
    )  # ordered set
    for stem in stems:
        names = [stem + pre + "sampling_offsets.bias" for pre in FRAME_PREFIXES[num_frames]]
        loaded = [
            k for k in names if k in src_of
        ]  # load order = frame order (module registration order)
        if not loaded:
            continue
        winner = out[loaded[-1]]
        differed = any(not torch.equal(out[k], winner) for k in names if k in out)
        for k in names:
            if k in out:
                out[k] = winner
        report.tied.append((src_of[loaded[-1]], [k for k in names if k in out], differed))


def _check_against_target(
    out: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], report: ConversionReport
) -> None:
    problem = state_dict_mismatch(target, out)
    if not problem:
        return
    missing = [k for k in target if k not in out]
    unexpected = [k for k in out if k not in target]
    bad_shapes = [k for k in out if k in target and tuple(out[k].shape) != tuple(target[k].shape)]
    hints = []
    if any("pre_" in k or "next_" in k for k in missing + unexpected):
        hints.append(
            "the number of frames of the checkpoint and of the model differ (MODEL.PAVENET.NUM_FRAMES)"
        )
    if bad_shapes and report.num_keypoints_src == 17 and report.num_keypoints_dst == 17:
        hints.append(
            "a 17-joint COCO checkpoint for a 15-joint model needs coco_to_posetrack (--coco-to-posetrack)"
        )
    if any(k.startswith("backbone.") for k in unexpected):
        hints.append(
            f"the checkpoint's backbone ({report.backbone}) differs from the model's (MODEL.BACKBONE.NAME)"
        )
        if report.backbone == "swin" and any(
            re.match(r"^backbone\.norm\d+\.", k) for k in unexpected
        ):
            hints.append(
                "the model's Swin backbone has no output LayerNorms, but the official one normalises "
                "each output (mmdet norm1..3)"
            )
    msg = [f"the converted state dict does not fit the target model: {problem}"]
    if hints:
        msg.append("  hint: " + "; ".join(hints))
    raise ConversionError("\n".join(msg))


def convert_official_state_dict(
    state_dict: Mapping, **options
) -> "collections.OrderedDict[str, torch.Tensor]":
    """`convert_official_state_dict_with_report` without the report (same keyword options)."""
    return convert_official_state_dict_with_report(state_dict, **options)[0]
