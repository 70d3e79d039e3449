"""Keypoint slicing (docs/REFERENCE.md §11): keep some joints of every keypoint-indexed tensor, e.g. a
17-joint COCO checkpoint -> a 15-joint PoseTrack model.

Owns which of our tensors are indexed by keypoints along dim 0 and how (`keypoint_axis_layout`: K, K x 2,
heads x levels x K (x 2)), and the slicing itself (`slice_keypoints`). Works on our names, i.e. after
`naming.rename_official_key`.
"""

import re
from typing import Optional, Sequence

import torch

from .naming import AUX_FRAME_PREFIX_RE
from .report import ConversionError

__all__ = ["keypoint_axis_layout", "slice_keypoints"]

_POSE_ATTN_RE = re.compile(
    rf"^head\.transformer\.decoder\.layers\.\d+\.attentions\.\d+\.(?:{AUX_FRAME_PREFIX_RE})?"
    r"(sampling_offsets|attention_weights)\.(weight|bias)$"
)
_KPT_OUT_RE = re.compile(
    rf"^head\.(?:{AUX_FRAME_PREFIX_RE})?kpt_branches\.\d+\.(\d+)\.(weight|bias)$"
)
_SIGMA_OUT_RE = re.compile(r"^head\.dec_fc_sigma_branches\.\d+\.\d+\.linear\.(weight|bias)$")


def keypoint_axis_layout(name: str, tensor: torch.Tensor, num_keypoints: int) -> Optional[str]:
    """How dim 0 of ``tensor`` (our name) is indexed by keypoints, or None if it is not.

    "k"   : (K, ...)                    refine_query_embedding, fc_hm
    "k2"  : (K*2, ...) as (K, 2)        last layer of the *kpt_branches, last layer of dec_fc_sigma_branches
    "hlk2": (H*L*K*2, ...) as (H,L,K,2) pose-attention *sampling_offsets
    "hlk" : (H*L*K, ...) as (H,L,K)     pose-attention *attention_weights
    """
    n = tensor.shape[0] if tensor.dim() else 0
    if name == "head.transformer.refine_query_embedding.weight" or re.match(
        r"^head\.fc_hm\.(weight|bias)$", name
    ):
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


def slice_keypoints(
    name: str, tensor: torch.Tensor, indices: Sequence[int], num_keypoints: int
) -> torch.Tensor:
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
        return (
            tensor.reshape(k, 2, *rest)
            .index_select(0, idx)
            .reshape(len(idx) * 2, *rest)
            .contiguous()
        )
    per = 2 if layout == "hlk2" else 1
    if n % (k * per):
        raise ConversionError(f"{name}: dim 0 = {n} is not a multiple of K*{per} = {k * per}")
    hl = n // (k * per)
    t = tensor.reshape(hl, k, per, *rest).index_select(1, idx)
    return t.reshape(hl * len(idx) * per, *rest).contiguous()
