"""RealNVP density and the RLE (residual log-likelihood estimation) keypoint loss (docs/REFERENCE.md §7, §8).

The flow keeps the official attribute names (``mask``, ``s.{i}.{0,2,4}``, ``t.{i}.{0,2,4}``) so the official
``bbox_head.{enc_flow,dec_flow,flow}.*`` tensors load by renaming the prefix alone.
"""

import math
from typing import Optional

import torch
import torch.distributed as dist
from detectron2.utils import comm
from torch import nn

__all__ = ["RealNVP", "rle_loss", "reduce_mean_count"]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_SQRT_2PI = 0.5 * _LOG_2PI


def _coupling_net(hidden: int, with_tanh: bool) -> nn.Sequential:
    layers = [
        nn.Linear(2, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, 2),
    ]
    if with_tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """2-D RealNVP with 6 affine couplings and base density N(mu=(0.5, 0.5), I).

    The prior mean of 0.5 (not RLE's usual 0) is what the official flows were trained with (docs/REFERENCE.md §16 8f).
    Init: PyTorch's default ``nn.Linear`` init. The official class has an ``_init`` (xavier, gain 0.01)
    that nothing calls, and the official runs never re-initialise the flows (docs/REFERENCE.md §7 "Init order").
    """

    def __init__(self, num_layers: int = 6, hidden: int = 64, prior_mean: float = 0.5):
        super().__init__()
        if num_layers < 1:
            raise ValueError(
                f"RealNVP needs at least one coupling layer, got num_layers={num_layers}"
            )
        # Alternating masks [0, 1], [1, 0], ...: 1 marks the coordinate that conditions the coupling.
        mask = torch.tensor([[0.0, 1.0], [1.0, 0.0]] * ((num_layers + 1) // 2))[:num_layers]
        self.register_buffer("mask", mask)
        self.t = nn.ModuleList(_coupling_net(hidden, with_tanh=False) for _ in range(num_layers))
        self.s = nn.ModuleList(_coupling_net(hidden, with_tanh=True) for _ in range(num_layers))
        self.prior_mean = float(prior_mean)

    def inverse(self, x: torch.Tensor):
        """Map data ``x (..., 2)`` to the base space: returns ``z (..., 2)`` and ``log|det dz/dx| (...)``."""
        z = x
        log_det = x.new_zeros(x.shape[:-1])
        for i in reversed(range(len(self.s))):
            m = self.mask[i]
            keep = z * m
            s = self.s[i](keep) * (1 - m)
            t = self.t[i](keep) * (1 - m)
            z = keep + (1 - m) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=-1)
        return z, log_det

    def forward_transform(self, z: torch.Tensor) -> torch.Tensor:
        """Base space -> data space (the exact inverse of ``inverse``); used for sampling and tests."""
        x = z
        for i in range(len(self.s)):
            m = self.mask[i]
            keep = x * m
            s = self.s[i](keep) * (1 - m)
            t = self.t[i](keep) * (1 - m)
            x = keep + (1 - m) * (x * torch.exp(s) + t)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of ``x (..., 2)`` -> ``(...)`` by change of variables through the inverse couplings."""
        if x.shape[-1] != 2:
            raise ValueError(
                f"RealNVP.log_prob expects (..., 2) inputs, got shape {tuple(x.shape)}"
            )
        z, log_det = self.inverse(x)
        log_base = -_LOG_2PI - 0.5 * ((z - self.prior_mean) ** 2).sum(dim=-1)
        return log_base + log_det

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)


def reduce_mean_count(value: torch.Tensor, min_value: float = 1.0) -> float:
    """Average a scalar count over all ranks (detectron2 ``comm``), clamped to ``min_value``; a Python float.

    Mirrors mmdet's ``reduce_mean(...).clamp(min=1).item()`` used for every loss normaliser (docs/REFERENCE.md §8).
    """
    value = value.detach().float().reshape(())
    if comm.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / comm.get_world_size()
    return max(float(value.item()), min_value)


def rle_loss(
    pred: torch.Tensor,
    sigma: torch.Tensor,
    target: torch.Tensor,
    visible: torch.Tensor,
    flow: RealNVP,
    normaliser: Optional[float] = None,
) -> torch.Tensor:
    """RLE loss (docs/REFERENCE.md §8), summed over visible joints and both coordinates, divided by ``normaliser``.

    Args:
        pred: (N, K, 2) predicted keypoints mu, normalised to [0, 1] by the unpadded image size.
        sigma: (N, K, 2) predicted scales in (0, 1) (after the sigmoid).
        target: (N, K, 2) GT keypoints, same normalisation as ``pred``.
        visible: (N, K) joint weights (1 visible, 0 not); invisible joints contribute nothing.
        flow: the RealNVP giving log phi of the normalised residual (mu - y) / sigma.
        normaliser: divisor; default 2 x sum(visible), averaged over ranks, min 1.
    Per joint k and coordinate d:
        l = log sigma_d - log phi(ubar) + log(sigma_d sqrt(2 pi)) + |y_d - mu_d| / (sqrt(2) sigma_d + 1e-9)
    """
    if pred.shape != target.shape or pred.shape != sigma.shape or pred.shape[-1] != 2:
        raise ValueError(
            f"rle_loss: pred {tuple(pred.shape)}, sigma {tuple(sigma.shape)} and target {tuple(target.shape)} "
            "must all be (N, K, 2)"
        )
    if visible.shape != pred.shape[:-1]:
        raise ValueError(
            f"rle_loss: visible {tuple(visible.shape)} must be (N, K) = {tuple(pred.shape[:-1])}"
        )
    visible = visible.to(pred.dtype)
    if normaliser is None:
        normaliser = reduce_mean_count(2.0 * visible.sum())
    # Compute on visible joints only: multiplying an inf/nan term by a 0 weight would poison the gradients.
    sel = visible > 0
    if not bool(sel.any()):
        # Keep every input (and the flow) in the graph with a zero gradient (DDP needs no unused parameters);
        # nan_to_num so that nan in unsupervised entries cannot leak into the zero.
        dummy = flow.log_prob(pred.new_zeros(1, 2)).sum()
        return (torch.nan_to_num(pred).sum() + torch.nan_to_num(sigma).sum() + dummy) * 0.0
    mu, sg, y, w = pred[sel], sigma[sel], target[sel], visible[sel]  # (M, 2), (M, 2), (M, 2), (M,)
    log_phi = flow.log_prob((mu - y) / sg)  # (M,): counted once per coordinate below
    per_coord = (
        torch.log(sg)
        - log_phi[:, None]
        + torch.log(sg)
        + _LOG_SQRT_2PI
        + (y - mu).abs() / (math.sqrt(2.0) * sg + 1e-9)
    )  # (M, 2)
    return (per_coord * w[:, None]).sum() / normaliser
