"""Training-only contrastive denoising queries built from noised GT poses (MODEL.PAVENET.DENOISING_*).

DN-DETR / DINO's contrastive denoising adapted to poses: per denoising group, every GT person of a clip
gives a POSITIVE query (its key-frame pose shifted by less than `noise` x the person's extent, plus a
small per-joint jitter), supervised to reconstruct the person and to score 1, and a NEGATIVE query
(shifted by `noise`..2 `noise` x the extent), supervised to score 0. Inside a group the two see each other,
so the decoder learns to keep the closer query and reject the other one: the duplicate suppression that
one-to-one matching teaches slowly. The groups never see each other nor the matching queries, and they
do not exist at inference (PAVENetHead.decode_pose only builds them in training).

Shapes: B clips, N_b GT persons of clip b, n = max_b N_b, G groups, D = G * 2 * n queries, K joints.
Query d of group g: d = g * 2n + i is the positive of person i, g * 2n + n + i its negative (i < n);
rows with i >= N_b are padding (valid False), never supervised and hidden from the other queries.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "DenoisingQueries",
    "sample_denoising_queries",
    "denoising_attention_mask",
    "denoising_query_inputs",
]


@dataclass
class DenoisingQueries:
    """references (B, D, K, 2) noised key-frame poses in (0, 1); valid (B, D) bool; group (D,) long
    (0..G-1); indices: per clip (positive query index (N_b,), GT index (N_b,)) as the matcher returns them;
    negative (D,) bool."""

    references: torch.Tensor
    valid: torch.Tensor
    group: torch.Tensor
    indices: List[Tuple[torch.Tensor, torch.Tensor]]
    negative: torch.Tensor

    @property
    def num_queries(self) -> int:
        return self.references.shape[1]


def _person_frame(kpts: torch.Tensor, visible: torch.Tensor, min_extent: float):
    """(N, K, 2), (N, K) -> poses with invisible joints moved to the visible centre, and (N, 2) extents."""
    v = (visible > 0)[..., None].to(kpts.dtype)
    centre = (kpts * v).sum(1) / v.sum(1).clamp(min=1)  # (N, 2)
    filled = torch.where(v > 0, kpts, centre[:, None])
    big = torch.finfo(kpts.dtype).max
    lo = torch.where(v > 0, kpts, torch.full_like(kpts, big)).min(1)[0]
    hi = torch.where(v > 0, kpts, torch.full_like(kpts, -big)).max(1)[0]
    extent = (hi - lo).clamp(min=min_extent)
    return filled, extent


def sample_denoising_queries(
    targets: Sequence[Dict],
    groups: int,
    noise: float,
    *,
    jitter: Optional[float] = None,
    min_extent: float = 0.05,
    generator=None,
) -> Optional[DenoisingQueries]:
    """Noised GT poses of the batch's clips (see the module docstring); None when no clip has a person.

    targets: the criterion's per-clip dicts ("keypoints" (N, K, 2) normalised, "visible" (N, K)).
    groups: G >= 1; noise: the positive / negative boundary as a fraction of each person's extent.
    A positive is shifted by r * extent in a random direction, r ~ U(0, noise), a negative by
    r ~ U(noise, 2 noise); every joint of both gets U(-jitter, jitter) * extent more (default noise / 2).
    Invisible joints start at the centre of the visible ones; the extent is theirs (at least min_extent).
    """
    jitter = noise / 2 if jitter is None else float(jitter)
    if groups < 1:
        raise ValueError(
            f"MODEL.PAVENET.DENOISING_GROUPS must be >= 1 to sample queries, got {groups}"
        )
    counts = [int(t["keypoints"].shape[0]) for t in targets]
    n = max(counts, default=0)
    if n == 0:
        return None
    like = targets[counts.index(n)]["keypoints"]
    b, k = len(targets), like.shape[1]
    dev, dt = like.device, like.dtype
    d = groups * 2 * n
    refs = torch.full((b, d, k, 2), 0.5, dtype=dt, device=dev)
    valid = torch.zeros(b, d, dtype=torch.bool, device=dev)
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(device=dev, dtype=dt)  # noqa: E731
    indices = []
    for ci, t in enumerate(targets):
        m = counts[ci]
        pos_idx = []
        if m:
            pose, extent = _person_frame(t["keypoints"].to(dt), t["visible"], min_extent)
            for g in range(groups):
                for neg in (False, True):
                    r = noise * (rand(m) + (1.0 if neg else 0.0))  # (m,)
                    ang = 2 * math.pi * rand(m)
                    shift = (
                        torch.stack([torch.cos(ang), torch.sin(ang)], -1) * r[:, None] * extent
                    )  # (m, 2)
                    joint_noise = (rand(m, k, 2) - 0.5) * (2 * jitter) * extent[:, None]
                    start = g * 2 * n + (n if neg else 0)
                    refs[ci, start : start + m] = (pose + shift[:, None] + joint_noise).clamp(
                        1e-3, 1 - 1e-3
                    )
                    valid[ci, start : start + m] = True
                pos_idx.append(torch.arange(g * 2 * n, g * 2 * n + m, device=dev))
        qi = torch.cat(pos_idx) if pos_idx else torch.zeros(0, dtype=torch.long, device=dev)
        gi = (
            torch.arange(m, device=dev).repeat(groups)
            if m
            else torch.zeros(0, dtype=torch.long, device=dev)
        )
        indices.append((qi, gi))
    slot = torch.arange(d, device=dev) % (2 * n)
    return DenoisingQueries(refs, valid, torch.arange(d, device=dev) // (2 * n), indices, slot >= n)


def denoising_attention_mask(
    num_plain: int, plain_groups: torch.Tensor, dn: DenoisingQueries, num_heads: int
) -> torch.Tensor:
    """Self-attention mask (B * heads, P + D, P + D) bool, True = may NOT attend.

    plain_groups (P,) long: group ids of the matching (0) and one-to-many (1) queries; the denoising groups
    follow. Queries attend only inside their group; padding denoising queries are hidden from every other
    query (each still attends to itself so that its softmax stays finite).
    """
    ids = torch.cat([plain_groups, dn.group.to(plain_groups) + int(plain_groups.max()) + 1])
    base = ids[:, None] != ids[None, :]  # (P + D, P + D)
    b = dn.valid.shape[0]
    hidden = torch.cat([dn.valid.new_zeros(b, num_plain), ~dn.valid], 1)  # (B, P + D) keys to hide
    mask = base[None] | hidden[:, None, :]
    eye = torch.eye(ids.numel(), dtype=torch.bool, device=mask.device)
    mask = mask & ~eye
    return mask.repeat_interleave(num_heads, dim=0)


def denoising_query_inputs(
    dn: DenoisingQueries,
    e: torch.Tensor,
    proposals: torch.Tensor,
    valid: torch.Tensor,
    query_embedding: torch.Tensor,
    num_queries: int,
):
    """(content (B,D,C), query_pos (B,D,C), initial references (B,D,2K)) of the denoising queries.

    Each takes the detached encoder token nearest to its noised pose's centre (as a selected proposal
    brings its token) and a query embedding (cyclically over the `num_queries` rows of `query_embedding`
    (Q, 2C)), so it looks like a matching query whose proposal landed near a person; its initial
    reference is the noised pose itself. e (B,S,C) projected key-frame tokens, proposals (B,S,2) their
    logit-space centres, valid (B,S).
    """
    b, d = dn.valid.shape
    dim = e.shape[-1]
    ref = dn.references.to(e.dtype)  # (B, D, K, 2)
    centres = proposals.sigmoid().masked_fill(~valid[..., None], float("inf"))  # (B, S, 2)
    nearest = torch.cdist(ref.mean(2), torch.nan_to_num(centres, posinf=1e4)).argmin(-1)  # (B, D)
    tok = torch.gather(e, 1, nearest[..., None].expand(-1, -1, dim)).detach()
    emb = query_embedding[torch.arange(d, device=e.device) % num_queries]
    pos, content = torch.split(emb, dim, dim=1)
    return content[None] + tok, pos[None].expand(b, -1, -1), ref.flatten(2)
