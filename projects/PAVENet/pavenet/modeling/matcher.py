"""One-to-one Hungarian matching between pose predictions and GT persons (docs/REFERENCE.md §8).

C(i, j) = cost_class * C_cls + cost_kpt_l1 * C_L1 + cost_oks * C_oks, solved with scipy's
``linear_sum_assignment``; no gradient flows through the matching.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..data.keypoint_meta import POSETRACK_OKS_SIGMAS

__all__ = ["PoseHungarianMatcher", "check_targets"]

_TARGET_KEYS = ("keypoints", "visible", "areas", "image_size")


def check_targets(targets: Sequence[Dict], num_keypoints: int) -> None:
    """Raise a clear error when a per-clip target dict does not follow the documented layout."""
    for b, t in enumerate(targets):
        missing = [k for k in _TARGET_KEYS if k not in t]
        if missing:
            raise KeyError(f"targets[{b}] lacks {missing}; expected keys {list(_TARGET_KEYS)}")
        kpts, vis, areas = t["keypoints"], t["visible"], t["areas"]
        n = kpts.shape[0]
        if (
            kpts.shape != (n, num_keypoints, 2)
            or vis.shape != (n, num_keypoints)
            or areas.shape != (n,)
        ):
            raise ValueError(
                f"targets[{b}]: keypoints {tuple(kpts.shape)}, visible {tuple(vis.shape)}, areas "
                f"{tuple(areas.shape)} must be (N, {num_keypoints}, 2), (N, {num_keypoints}), (N,)"
            )


class PoseHungarianMatcher:
    """Hungarian matcher with the focal classification, normalised L1 and OKS costs of docs/REFERENCE.md §8.

    Args:
        cost_class, cost_kpt_l1, cost_oks: cost weights (official 2.0 / 70.0 / 7.0).
        oks_sigmas: per-joint OKS sigmas (K values); default the 15 PoseTrack ones.
        focal_alpha, focal_gamma: parameters of the focal classification cost.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_kpt_l1: float = 70.0,
        cost_oks: float = 7.0,
        oks_sigmas: Sequence[float] = POSETRACK_OKS_SIGMAS,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        self.cost_class = float(cost_class)
        self.cost_kpt_l1 = float(cost_kpt_l1)
        self.cost_oks = float(cost_oks)
        self.oks_sigmas = tuple(float(s) for s in oks_sigmas)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)

    # ---- the three cost terms, unweighted; each (Q, N) --------------------------------------------------
    def class_cost(self, logits: torch.Tensor, num_gt: int) -> torch.Tensor:
        """Focal cost for class 0: logits (Q, 1) -> (Q, N) (the same column for every GT)."""
        p = logits[:, 0].sigmoid()
        a, g, eps = self.focal_alpha, self.focal_gamma, 1e-12
        pos = a * (1 - p).pow(g) * -(p + eps).log()
        neg = (1 - a) * p.pow(g) * -(1 - p + eps).log()
        return (pos - neg)[:, None].expand(-1, num_gt)

    @staticmethod
    def kpt_l1_cost(
        keypoints: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """Visibility-masked L1 over normalised coordinates / max(2 * #visible, 1): (Q,K,2), (N,K,2), (N,K) -> (Q,N).

        Predictions of joints that are invisible in GT j are zeroed and so is the GT there (official KptL1Cost),
        so those joints cost nothing.
        """
        v = (visible > 0).to(keypoints.dtype)  # (N, K)
        diff = (keypoints[:, None] - gt[None]).abs().sum(-1)  # (Q, N, K)
        return (diff * v[None]).sum(-1) / (2 * v.sum(-1)).clamp(min=1)[None]

    def oks_cost(
        self,
        keypoints: torch.Tensor,
        gt: torch.Tensor,
        visible: torch.Tensor,
        areas: torch.Tensor,
        image_size,
    ) -> torch.Tensor:
        """-OKS in pixels: (Q,K,2), (N,K,2) normalised, (N,K), areas (N,) px, image_size (h, w) -> (Q, N)."""
        k = keypoints.shape[1]
        if len(self.oks_sigmas) != k:
            raise ValueError(
                f"PoseHungarianMatcher has {len(self.oks_sigmas)} OKS sigmas for K={k} keypoints"
            )
        h, w = float(image_size[0]), float(image_size[1])
        scale = keypoints.new_tensor([w, h])
        variances = (2 * keypoints.new_tensor(self.oks_sigmas)) ** 2  # (K,)
        d2 = (((keypoints * scale)[:, None] - (gt * scale)[None]) ** 2).sum(-1)  # (Q, N, K)
        # Area clamped to 1 px^2 so a degenerate GT cannot give 0/0 (the official code asserts area > 0).
        e = d2 / (areas.clamp(min=1.0)[None, :, None] * variances * 2)
        v = (visible > 0).to(keypoints.dtype)
        oks = (torch.exp(-e) * v[None]).sum(-1) / v.sum(-1).clamp(min=1)[None]
        return -oks

    def cost_matrix(
        self, logits: torch.Tensor, keypoints: torch.Tensor, target: Dict
    ) -> torch.Tensor:
        """Weighted total cost (Q, N) for one clip: logits (Q, 1), keypoints (Q, K, 2) in [0, 1]."""
        gt, vis = target["keypoints"].to(keypoints), target["visible"].to(keypoints)
        areas = torch.as_tensor(target["areas"]).to(keypoints)
        gt = gt * (vis[..., None] > 0)  # invisible GT coordinates = 0 (docs/REFERENCE.md §8)
        c = self.cost_class * self.class_cost(logits, gt.shape[0])
        c = c + self.cost_kpt_l1 * self.kpt_l1_cost(keypoints, gt, vis)
        c = c + self.cost_oks * self.oks_cost(keypoints, gt, vis, areas, target["image_size"])
        return c

    @torch.no_grad()
    def __call__(
        self,
        logits: torch.Tensor,
        keypoints: torch.Tensor,
        targets: Sequence[Dict],
        valid: Optional[torch.Tensor] = None,
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Match each clip independently.

        Args:
            logits: (B, Q, 1) classification logits.
            keypoints: (B, Q, K, 2) predicted key-frame keypoints in [0, 1] of the unpadded image.
            targets: B dicts {"keypoints" (N, K, 2), "visible" (N, K), "areas" (N,), "image_size" (h, w)}.
            valid: optional (B, Q) bool; only True rows may be matched (e.g. unpadded encoder tokens).
        Returns:
            B tuples (pred_idx, gt_idx) of int64 tensors of equal length min(N, #candidates), on the
            device of ``keypoints``; pred_idx is ascending.
        """
        if logits.dim() != 3 or keypoints.dim() != 4 or logits.shape[:2] != keypoints.shape[:2]:
            raise ValueError(
                f"matcher: logits {tuple(logits.shape)} must be (B, Q, 1) and keypoints "
                f"{tuple(keypoints.shape)} (B, Q, K, 2) with the same B, Q"
            )
        if len(targets) != logits.shape[0]:
            raise ValueError(
                f"matcher: {len(targets)} targets for a batch of {logits.shape[0]} clips"
            )
        check_targets(targets, keypoints.shape[2])
        device = keypoints.device
        out = []
        for b, target in enumerate(targets):
            n = target["keypoints"].shape[0]
            rows = torch.arange(logits.shape[1], device=device)
            if valid is not None:
                rows = rows[valid[b]]
            if n == 0 or rows.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64, device=device)
                out.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(logits[b, rows].float(), keypoints[b, rows].float(), target)
            # Non-finite predictions must never win an assignment nor make scipy raise.
            cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8).cpu().numpy()
            r, c = linear_sum_assignment(cost)
            pred_idx = rows[torch.as_tensor(r, dtype=torch.int64, device=device)]
            out.append((pred_idx, torch.as_tensor(np.asarray(c), dtype=torch.int64, device=device)))
        return out
