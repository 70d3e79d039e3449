"""PAVE-Net training losses (docs/REFERENCE.md §8): Hungarian matching per output set, sigmoid focal
classification loss and RLE keypoint loss with deep supervision.

Usage by the model (``PAVENet`` in ``meta_arch.py``)::

    criterion = build_criterion(cfg)                      # or PAVENetCriterion(matcher, K, ...)
    targets = [targets_from_instances(x["instances"].to(device)) for x in batched_inputs]
    # run encoder + pose decoder, then match the LAST pose layer to pick the joint-decoder rows:
    last_idx = criterion.match(outputs["pose_layers"][-1], targets)   # list of (pred_idx, gt_idx)
    # joint-decoder rows = cat over clips b of queries last_idx[b][0] (in that order)
    losses = criterion(outputs, targets, last_idx, enc_flow=head.enc_flow, dec_flow=head.dec_flow,
                       flow=head.flow)

``targets``: list (one per clip, length B) of dicts
    "keypoints":  (N, K, 2) float, GT x/y normalised to [0, 1] by the UNPADDED image size (w, h)
    "visible":    (N, K) float, 1 = labelled/visible joint, 0 = not
    "areas":      (N,) float, object area in pixels of the (transformed) image, for the OKS cost
    "image_size": (h, w) of the unpadded (transformed) image, pixels
    N may be 0. ``targets_from_instances`` builds this from the mapper's ``Instances`` and drops
    persons without any visible joint (docs/REFERENCE.md §6: they are not supervised).

``outputs``: dict
    "enc": {"logits": (B, S, 1), "keypoints": (B, S, K, 2) in [0, 1], "sigma": (B, S, K, 2) in (0, 1),
            "valid": (B, S) bool, optional}   key-frame encoder tokens (docs/REFERENCE.md §4). Only valid
            tokens are matched; keypoints/sigma of invalid tokens may be inf/nan (they are never read). As
            in the official code every token with a finite logit, valid or not, is a focal-loss negative
            (keep them finite to match the official code; non-finite logits are skipped rather than
            producing nan).
    "pose_layers": [{"logits": (B, Q, 1), "keypoints": (B, Q, K, 2), "sigma": (B, Q, K, 2)}, ...]
            one dict per pose-decoder layer, first to last (key-frame outputs, docs/REFERENCE.md §5.2).
    "joint_layers": [{"keypoints": (M, K, 2), "sigma": (M, K, 2)}, ...]
            one dict per joint-decoder layer; rows are the last pose layer's matched queries, clip by
            clip in the order of ``last_layer_indices`` (M = total matched). May be empty/absent.
All keypoints are normalised to the unpadded image, sigma is after the sigmoid.

``forward(outputs, targets, last_layer_indices=None, *, enc_flow, dec_flow, flow)`` returns a dict of
weighted scalar losses (detectron2's SimpleTrainer sums every value; all names contain "loss"):
    loss_cls_enc, loss_kpt_enc                       (official enc_loss_cls / enc_loss_kpt)
    loss_cls_d{i}, loss_kpt_d{i} for i < L-1          (official d{i}.loss_cls / d{i}.loss_kpt)
    loss_cls, loss_kpt                                (last pose layer)
    loss_kpt_refine_d{j} for every joint layer j      (official d{j}.loss_kpt_refine, j = 0..J-1)
With ``deep_supervision=False`` only the encoder, the last pose layer and the last joint layer are kept.
``last_layer_indices`` (the output of ``match`` on the last pose layer) is reused for that layer and for
every joint layer; when None it is computed here.

Training options beyond the paper (off by default; docs/MODEL.md):
    quality_target: the focal target of a matched query is the OKS of its (detached) prediction with its
        GT instead of 1, with the quality focal loss |t - p|^gamma * BCE(p, t) (identical to the sigmoid
        focal loss when every target is 1), so the score learns to rank a good pose over a poor one.
    outputs["aux_pose_layers"] (training-only one-to-many query group, same layout as "pose_layers"):
        matched one-to-many (every GT repeated ``one_to_many_k`` times in the Hungarian matching) and
        supervised like the pose layers, weighted by ``one_to_many_weight``; names loss_cls_o2m_d{i} /
        loss_kpt_o2m_d{i}.
    outputs["dn_pose_layers"] + outputs["dn"] (training-only denoising queries, modeling/denoising.py):
        no matching, the assignment is the construction: positives (outputs["dn"].indices) are supervised
        like matched queries, negatives as unmatched ones (score 0), padding rows not at all; weighted by
        ``denoising_weight``; names loss_cls_dn_d{i} / loss_kpt_dn_d{i}.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from ..data.keypoint_meta import oks_sigmas_for
from .matcher import PoseHungarianMatcher, check_targets
from .rle import RealNVP, reduce_mean_count, rle_loss

__all__ = ["PAVENetCriterion", "build_criterion", "targets_from_instances", "LOSS_NORMALIZATIONS"]

LOSS_NORMALIZATIONS = ("clip", "batch")

Indices = List[Tuple[torch.Tensor, torch.Tensor]]


def targets_from_instances(instances) -> Dict:
    """Mapper ``Instances`` of a key frame -> the criterion/matcher target dict (see the module docstring).

    Persons without any visible joint are dropped (the official pipeline never supervises them).
    ``gt_areas`` is used for OKS when present, else the ``gt_boxes`` area.
    """
    h, w = instances.image_size
    kpts = instances.gt_keypoints.tensor if instances.has("gt_keypoints") else None
    if kpts is None:
        raise KeyError("targets_from_instances: the Instances has no 'gt_keypoints' field")
    kpts = kpts.float()
    visible = (kpts[..., 2] > 0).float()  # (N, K)
    if instances.has("gt_areas"):
        areas = instances.gt_areas.float()
    elif instances.has("gt_boxes"):
        areas = instances.gt_boxes.area().float()
    else:
        raise KeyError(
            "targets_from_instances: the Instances needs 'gt_areas' (or 'gt_boxes') for the OKS cost"
        )
    keep = visible.sum(-1) > 0
    xy = kpts[..., :2] / kpts.new_tensor([float(w), float(h)])
    return {
        "keypoints": xy[keep],
        "visible": visible[keep],
        "areas": areas[keep],
        "image_size": (int(h), int(w)),
    }


class PAVENetCriterion(nn.Module):
    """Matching + focal classification + RLE losses for every output set (docs/REFERENCE.md §8); holds no parameters.

    Args:
        matcher: a ``PoseHungarianMatcher``.
        num_keypoints: K.
        class_weight / enc_class_weight: focal-loss weights of the pose layers / the encoder (0.5 / 0.5).
        rle_weight / enc_rle_weight / joint_rle_weight: RLE weights of pose layers / encoder / joint layers.
        focal_alpha, focal_gamma: sigmoid focal loss parameters (0.25, 2).
        deep_supervision: when False only the last pose layer, the last joint layer and the encoder
            (needed for the query selection) are supervised.
        quality_target: OKS-valued focal targets for matched queries (see the module docstring).
        one_to_many_k, one_to_many_weight: GT repeats and loss weight of the auxiliary one-to-many group.
        denoising_weight: loss weight of the denoising queries.
        normalization: "clip" (official recipe: 1 clip per step x N gradient-accumulation steps): every
            clip's losses are normalised by its own matched persons / labelled joints, then averaged over
            the clips (and, by DDP, over processes); "batch": normalised once by the counts of the whole
            batch averaged over processes (every person weighs the same). Equal for one clip per batch.
    """

    def __init__(
        self,
        matcher: PoseHungarianMatcher,
        num_keypoints: int,
        class_weight: float = 0.5,
        enc_class_weight: float = 0.5,
        rle_weight: float = 1.0,
        enc_rle_weight: float = 1.0,
        joint_rle_weight: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        deep_supervision: bool = True,
        quality_target: bool = False,
        one_to_many_k: int = 1,
        one_to_many_weight: float = 1.0,
        denoising_weight: float = 1.0,
        normalization: str = "clip",
    ):
        super().__init__()
        if normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(
                f"MODEL.PAVENET.LOSS_NORMALIZATION must be one of {LOSS_NORMALIZATIONS}, "
                f"got {normalization!r}"
            )
        self.normalization = normalization
        self._reduce_counts = True
        self.matcher = matcher
        self.num_keypoints = int(num_keypoints)
        self.class_weight = float(class_weight)
        self.enc_class_weight = float(enc_class_weight)
        self.rle_weight = float(rle_weight)
        self.enc_rle_weight = float(enc_rle_weight)
        self.joint_rle_weight = float(joint_rle_weight)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.deep_supervision = bool(deep_supervision)
        self.quality_target = bool(quality_target)
        if int(one_to_many_k) < 1:
            raise ValueError(f"MODEL.PAVENET.ONE_TO_MANY_K must be >= 1, got {one_to_many_k}")
        self.one_to_many_k = int(one_to_many_k)
        self.one_to_many_weight = float(one_to_many_weight)
        self.denoising_weight = float(denoising_weight)

    @classmethod
    def from_config(cls, cfg) -> "PAVENetCriterion":
        P = cfg.MODEL.PAVENET
        k = P.NUM_KEYPOINTS
        sigmas = oks_sigmas_for(k)
        if sigmas is None:
            raise ValueError(
                f"MODEL.PAVENET.NUM_KEYPOINTS={k}: no OKS sigmas known (15 PoseTrack or 17 COCO)"
            )
        matcher = PoseHungarianMatcher(
            cost_class=P.COST_CLASS,
            cost_kpt_l1=P.COST_KPT_L1,
            cost_oks=P.COST_OKS,
            oks_sigmas=sigmas,
            focal_alpha=P.FOCAL_ALPHA,
            focal_gamma=P.FOCAL_GAMMA,
        )
        return cls(
            matcher,
            k,
            class_weight=P.CLASS_WEIGHT,
            enc_class_weight=P.ENC_CLASS_WEIGHT,
            rle_weight=P.RLE_WEIGHT,
            enc_rle_weight=P.ENC_RLE_WEIGHT,
            joint_rle_weight=P.JOINT_RLE_WEIGHT,
            focal_alpha=P.FOCAL_ALPHA,
            focal_gamma=P.FOCAL_GAMMA,
            deep_supervision=P.DEEP_SUPERVISION,
            quality_target=P.OKS_QUALITY_TARGET,
            one_to_many_k=P.ONE_TO_MANY_K,
            one_to_many_weight=P.ONE_TO_MANY_WEIGHT,
            denoising_weight=P.DENOISING_WEIGHT,
            normalization=P.LOSS_NORMALIZATION,
        )

    # ---- matching --------------------------------------------------------------------------------------
    def match(
        self, layer: Dict, targets: Sequence[Dict], valid: Optional[torch.Tensor] = None
    ) -> Indices:
        """Hungarian matching of one output set ({"logits" (B,Q,1), "keypoints" (B,Q,K,2)}) -> [(pred, gt)]."""
        return self.matcher(
            layer["logits"].detach(), layer["keypoints"].detach(), targets, valid=valid
        )

    def match_one_to_many(self, layer: Dict, targets: Sequence[Dict], k: int) -> Indices:
        """One-to-many matching: each GT repeated ``k`` times, so up to k queries match one person.

        Returns [(pred_idx, gt_idx)] with gt_idx into the ORIGINAL targets (a GT index may repeat).
        """
        repeated = [
            dict(
                t,
                keypoints=t["keypoints"].repeat(k, 1, 1),
                visible=t["visible"].repeat(k, 1),
                areas=torch.as_tensor(t["areas"]).repeat(k),
            )
            for t in targets
        ]
        indices = self.match(layer, repeated)
        return [(i, j % max(t["keypoints"].shape[0], 1)) for (i, j), t in zip(indices, targets)]

    def _count(self, value: torch.Tensor) -> float:
        """A loss normaliser: averaged over processes in "batch" mode, the clip's own in "clip" mode; min 1."""
        return reduce_mean_count(value) if self._reduce_counts else max(float(value), 1.0)

    # ---- single terms ----------------------------------------------------------------------------------
    def matched_oks(
        self, layer: Dict, indices: Indices, targets: Sequence[Dict]
    ) -> List[torch.Tensor]:
        """OKS (visible joints, the matcher's formula) of every matched prediction with its GT, detached:
        one (n_b,) tensor per clip, in the order of ``indices``."""
        out = []
        for b, ((i, j), t) in enumerate(zip(indices, targets)):
            pred = layer["keypoints"][b, i].detach().float()
            gt, vis = t["keypoints"].to(pred)[j], t["visible"].to(pred)[j]
            areas = torch.as_tensor(t["areas"]).to(pred)[j]
            # oks_cost is -OKS for every (prediction, GT) pair; the matched pairs are its diagonal.
            out.append(-self.matcher.oks_cost(pred, gt, vis, areas, t["image_size"]).diagonal())
        return out

    def loss_cls(
        self,
        logits: torch.Tensor,
        indices: Indices,
        quality: Optional[List[torch.Tensor]] = None,
        valid: Optional[torch.Tensor] = None,
    ):
        """Sigmoid focal loss over all queries (B, Q, 1), class 0 for matched ones, / #matched (ranks, min 1).

        ``quality``: per clip (n_b,) targets in [0, 1] for the matched queries (else 1); then the quality
        focal loss alpha_t * |t - p|^gamma * BCE(p, t), which equals the focal loss for 0/1 targets.
        ``valid``: optional (B, Q) bool; False rows (padding queries) add nothing.
        """
        target = torch.zeros_like(logits)
        positive = torch.zeros_like(logits, dtype=torch.bool)
        for b, (pred_idx, _) in enumerate(indices):
            target[b, pred_idx, 0] = 1.0 if quality is None else quality[b].to(logits)
            positive[b, pred_idx, 0] = True
        # Non-finite logits (e.g. an implementation that masks padded encoder tokens with -inf) are left
        # out instead of turning the loss into nan; the official logits are always finite.
        finite = torch.isfinite(logits)
        if valid is not None:
            finite = finite & valid[..., None].to(finite.device)
        safe = torch.where(finite, logits, torch.zeros_like(logits))
        if quality is None:
            loss = sigmoid_focal_loss(
                safe, target, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none"
            )
        else:
            bce = F.binary_cross_entropy_with_logits(safe, target, reduction="none")
            alpha_t = torch.where(positive, self.focal_alpha, 1.0 - self.focal_alpha)
            loss = alpha_t * (target - safe.sigmoid()).abs().pow(self.focal_gamma) * bce
        num_matched = self._count(logits.new_tensor(float(sum(len(i) for i, _ in indices))))
        return (loss * finite).sum() / num_matched

    def _loss_cls_for(
        self,
        layer: Dict,
        indices: Indices,
        targets: Sequence[Dict],
        valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        quality = self.matched_oks(layer, indices, targets) if self.quality_target else None
        return self.loss_cls(layer["logits"], indices, quality, valid)

    def _gather(self, layer: Dict, indices: Indices, targets: Sequence[Dict]):
        """Matched predictions and their GT: pred/sigma/target (M, K, 2), visible (M, K)."""
        pred = torch.cat([layer["keypoints"][b, i] for b, (i, _) in enumerate(indices)])
        sigma = torch.cat([layer["sigma"][b, i] for b, (i, _) in enumerate(indices)])
        tgt, vis = self._gather_targets(indices, targets, pred)
        return pred, sigma, tgt, vis

    @staticmethod
    def _gather_targets(indices: Indices, targets: Sequence[Dict], like: torch.Tensor):
        tgt = torch.cat([t["keypoints"].to(like)[j] for t, (_, j) in zip(targets, indices)])
        vis = torch.cat([t["visible"].to(like)[j] for t, (_, j) in zip(targets, indices)])
        return tgt, vis

    # ---- forward -----------------------------------------------------------------------------------------
    def forward(
        self,
        outputs: Dict,
        targets: Sequence[Dict],
        last_layer_indices: Optional[Indices] = None,
        *,
        enc_flow: RealNVP,
        dec_flow: RealNVP,
        flow: RealNVP,
    ) -> Dict[str, torch.Tensor]:
        flows = (enc_flow, dec_flow, flow)
        if self.normalization == "batch":
            return self._losses(outputs, targets, last_layer_indices, *flows)
        check_targets(targets, self.num_keypoints)
        if last_layer_indices is None:
            last_layer_indices = self.match(outputs["pose_layers"][-1], targets)
        # "clip": each clip on its own (counts not averaged over processes), then the mean over clips.
        self._reduce_counts = False
        try:
            per_clip = [
                self._losses(
                    _clip_outputs(outputs, last_layer_indices, b),
                    [t],
                    [last_layer_indices[b]],
                    *flows,
                )
                for b, t in enumerate(targets)
            ]
        finally:
            self._reduce_counts = True
        return {k: sum(d[k] for d in per_clip) / len(per_clip) for k in per_clip[0]}

    def _losses(
        self,
        outputs: Dict,
        targets: Sequence[Dict],
        last_layer_indices: Optional[Indices],
        enc_flow: RealNVP,
        dec_flow: RealNVP,
        flow: RealNVP,
    ) -> Dict[str, torch.Tensor]:
        """The losses of `outputs` with one normaliser per term for all of `targets` (see `forward`)."""
        check_targets(targets, self.num_keypoints)
        losses: Dict[str, torch.Tensor] = {}
        pose_layers = list(outputs.get("pose_layers", []))
        if not pose_layers:
            raise ValueError(
                "PAVENetCriterion: outputs['pose_layers'] must hold at least one decoder layer"
            )

        # Encoder proposals: only valid (unpadded, in-image) tokens may be matched (docs/REFERENCE.md §4).
        enc = outputs.get("enc")
        if enc is not None:
            enc_idx = self.match(enc, targets, valid=enc.get("valid"))
            losses["loss_cls_enc"] = self.enc_class_weight * self._loss_cls_for(
                enc, enc_idx, targets
            )
            pred, sigma, tgt, vis = self._gather(enc, enc_idx, targets)
            losses["loss_kpt_enc"] = self.enc_rle_weight * rle_loss(
                pred, sigma, tgt, vis, enc_flow, self._count(2.0 * vis.sum())
            )

        last = len(pose_layers) - 1
        if last_layer_indices is None:
            last_layer_indices = self.match(pose_layers[last], targets)
        last_normaliser = None
        for i, layer in enumerate(pose_layers):
            if i != last and not self.deep_supervision:
                continue
            idx = last_layer_indices if i == last else self.match(layer, targets)
            suffix = (
                "" if i == last else f"_d{i}"
            )  # official names: d{i}.loss_* and loss_* for the last layer
            losses["loss_cls" + suffix] = self.class_weight * self._loss_cls_for(
                layer, idx, targets
            )
            pred, sigma, tgt, vis = self._gather(layer, idx, targets)
            normaliser = self._count(2.0 * vis.sum())
            if i == last:
                last_normaliser = normaliser
            losses["loss_kpt" + suffix] = self.rle_weight * rle_loss(
                pred, sigma, tgt, vis, dec_flow, normaliser
            )

        # Training-only one-to-many group (hybrid matching): every layer, no joint decoder.
        for i, layer in enumerate(outputs.get("aux_pose_layers", []) or []):
            idx = self.match_one_to_many(layer, targets, self.one_to_many_k)
            w = self.one_to_many_weight
            losses[f"loss_cls_o2m_d{i}"] = (
                w * self.class_weight * self._loss_cls_for(layer, idx, targets)
            )
            pred, sigma, tgt, vis = self._gather(layer, idx, targets)
            losses[f"loss_kpt_o2m_d{i}"] = (
                w
                * self.rle_weight
                * rle_loss(pred, sigma, tgt, vis, dec_flow, self._count(2.0 * vis.sum()))
            )

        # Training-only denoising queries: the assignment is known (positives), no matching; every layer.
        dn = outputs.get("dn")
        for i, layer in enumerate(outputs.get("dn_pose_layers", []) or []):
            w = self.denoising_weight
            losses[f"loss_cls_dn_d{i}"] = (
                w * self.class_weight * self._loss_cls_for(layer, dn.indices, targets, dn.valid)
            )
            pred, sigma, tgt, vis = self._gather(layer, dn.indices, targets)
            losses[f"loss_kpt_dn_d{i}"] = (
                w
                * self.rle_weight
                * rle_loss(pred, sigma, tgt, vis, dec_flow, self._count(2.0 * vis.sum()))
            )

        # Joint decoder: rows are the last pose layer's matched queries in the order of last_layer_indices;
        # its normaliser is the last pose layer's (official forward_refine).
        joint_layers = list(outputs.get("joint_layers", []) or [])
        if joint_layers:
            tgt, vis = self._gather_targets(
                last_layer_indices, targets, joint_layers[0]["keypoints"]
            )
        for j, layer in enumerate(joint_layers):
            if j != len(joint_layers) - 1 and not self.deep_supervision:
                continue
            pred, sigma = layer["keypoints"], layer["sigma"]
            name = f"loss_kpt_refine_d{j}"  # official d{j}.loss_kpt_refine for every joint layer
            if tgt.shape[0] == 0:
                # No matched person but joint outputs given (PAVENet itself then skips the joint decoder and
                # passes no joint layers): a zero loss that keeps whatever produced them in the graph.
                dummy = flow.log_prob(pred.new_zeros(1, 2)).sum()
                losses[name] = (
                    torch.nan_to_num(pred).sum() + torch.nan_to_num(sigma).sum() + dummy
                ) * 0.0
                continue
            if pred.shape != tgt.shape or sigma.shape != tgt.shape:
                raise ValueError(
                    f"PAVENetCriterion: joint_layers[{j}] keypoints {tuple(pred.shape)} / sigma "
                    f"{tuple(sigma.shape)} must be (M, K, 2) with M={tgt.shape[0]} matched persons"
                )
            losses[name] = self.joint_rle_weight * rle_loss(
                pred, sigma, tgt, vis, flow, last_normaliser
            )
        return losses


def _clip_outputs(outputs: Dict, last_layer_indices: Indices, b: int) -> Dict:
    """The outputs of clip b alone: (B, ...) tensors sliced to (1, ...), joint rows to clip b's block."""

    def one(d):
        return {k: (v[b : b + 1] if torch.is_tensor(v) else v) for k, v in d.items()}

    out = {
        key: [one(layer) for layer in outputs.get(key, []) or []]
        for key in ("pose_layers", "aux_pose_layers", "dn_pose_layers")
    }
    dn = outputs.get("dn")
    if dn is not None:
        out["dn"] = dataclasses.replace(
            dn,
            references=dn.references[b : b + 1],
            valid=dn.valid[b : b + 1],
            indices=[dn.indices[b]],
        )
    if outputs.get("enc") is not None:
        out["enc"] = one(outputs["enc"])
    sizes = [len(i) for i, _ in last_layer_indices]
    start = sum(sizes[:b])
    out["joint_layers"] = [
        {k: layer[k][start : start + sizes[b]] for k in ("keypoints", "sigma")}
        for layer in outputs.get("joint_layers", []) or []
    ]
    return out


def build_criterion(cfg) -> PAVENetCriterion:
    """The criterion configured by ``cfg.MODEL.PAVENET`` (weights and matcher costs of docs/REFERENCE.md §8)."""
    return PAVENetCriterion.from_config(cfg)
