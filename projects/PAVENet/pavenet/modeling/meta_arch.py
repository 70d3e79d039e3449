"""`PAVENet` meta-architecture (docs/REFERENCE.md §1-§9): clips in, losses or key-frame Instances out.

    images (B, F, 3, H, W) -> normalise, pad every clip's frames alike -> backbone on all B*F frames
    -> neck (4 levels) -> spatial encoder per frame  [= encode_frames]
    -> query selection on the key frame -> pose decoder -> joint decoder on selected persons
    -> post-processing (top-k, no NMS by default)      [= decode_clip]

The eval forward is `encode_frames` + `decode_clips` (all clips of the batch decoded together; for one
clip exactly `decode_clip`), so the streaming predictor that caches `EncodedFrames` per frame (with each
frame's decoder value maps) gets the same outputs.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, Instances
from torch import nn

from ..data.keypoint_meta import oks_sigmas_for
from ..utils.boxes import keypoint_extent_boxes
from ..utils.oks import pairwise_pose_oks
from .backbone import ChannelMapperNeck, SinePositionalEncoding
from .criterion import build_criterion, targets_from_instances
from .denoising import sample_denoising_queries
from .head import EncodedFrames, PAVENetHead
from .msda_backend import resolve_msda_impl, set_msda_impl
from .rle import RealNVP

__all__ = ["PAVENet", "oks_nms", "keypoint_confidence", "postprocess_detections"]


def keypoint_confidence(sigma: torch.Tensor) -> torch.Tensor:
    """Official Poseur-style p = 0.7 (1 - exp(-0.2/sx)) (1 - exp(-0.2/sy)): (..., K, 2) -> (..., K, 1)."""
    p = 1 - torch.exp(-(0.2 / sigma))
    return (p[..., 0] * p[..., 1])[..., None] * 0.7


def oks_nms(
    kpts: torch.Tensor, scores: torch.Tensor, thresh: float, sigmas: Sequence[float]
) -> torch.Tensor:
    """Greedy OKS-NMS of the experimental official head (docs/REFERENCE.md §9.7): kpts (n, K, 2) pixels, scores (n,).

    Area = x-extent * y-extent of each pose; a row is dropped when its OKS with a kept row > thresh.
    Returns the kept row indices (int64) in greedy (descending score) order.
    """
    xy = kpts.detach().double().cpu().numpy()
    sc = scores.detach().double().cpu().numpy()
    if len(xy) == 0:
        return torch.zeros(0, dtype=torch.long)
    oks = pairwise_pose_oks(xy, xy, sigmas, scale_eps=np.spacing(1))  # (n, n)
    order = list(np.argsort(-sc, kind="stable"))
    keep = []
    while order:
        i, rest = order[0], order[1:]
        keep.append(i)
        order = [j for j in rest if oks[i, j] <= thresh]
    return torch.as_tensor(keep, dtype=torch.long)


def postprocess_detections(
    kpts,
    sigma,
    scores,
    frame_kpts,
    image_size,
    output_size,
    *,
    num_frames: int,
    coord_reweight: bool = True,
    oks_nms_thresh: float = 0.0,
    oks_sigmas: Optional[Sequence[float]] = None,
    score_thresh: float = 0.0,
):
    """Official post-processing (docs/REFERENCE.md §9) -> (Instances, dict of pre-NMS rows).

    kpts, sigma: (k, K, 2) normalised key-frame joints / sigmas; scores (k,) descending; frame_kpts
    (k, F, K, 2) normalised; image_size: un-padded network input (h, w); output_size: (height, width).
    Pure bookkeeping on k rows: shared by the model (`PAVENet.postprocess`) and the ONNX Runtime backend.
    """
    h, w = image_size
    oh, ow = output_size
    scale = kpts.new_tensor([w / ow, h / oh])  # official: divide by the resize scale factor
    wh = kpts.new_tensor([float(w), float(h)])
    xy = torch.minimum(torch.clamp(kpts * wh, min=0), wh) / scale
    boxes = keypoint_extent_boxes(xy)  # BEFORE the p-weighting
    p = keypoint_confidence(sigma)  # (k, K, 1)
    if coord_reweight:  # official p^5 / (p^5 + 1e-10) coordinate weighting (~identity once trained)
        p5 = p**5
        xy = xy * p5 / (p5 + 1e-10)
    rows = torch.cat([xy, scores[:, None, None] * p], 2)  # (k, K, 3)
    fk = torch.minimum(torch.clamp(frame_kpts * wh, min=0), wh) / scale
    fk[:, num_frames // 2] = xy
    keep = torch.arange(len(rows), device=rows.device)
    if oks_nms_thresh > 0:
        if oks_sigmas is None:
            raise ValueError("TEST.OKS_NMS_THRESH > 0 needs OKS sigmas (15 or 17 keypoints)")
        keep = oks_nms(xy, scores, oks_nms_thresh, oks_sigmas).to(rows.device)
    if score_thresh > 0:
        keep = keep[scores[keep] >= score_thresh]
    inst = Instances((int(oh), int(ow)))
    inst.pred_keypoints = rows[keep]
    inst.scores = scores[keep]
    inst.pred_boxes = Boxes(boxes[keep])
    inst.pred_classes = torch.zeros(len(keep), dtype=torch.long, device=rows.device)
    inst.pred_frame_keypoints = fk[keep]
    return inst, {
        "prenms_keypoints": rows,
        "prenms_boxes": torch.cat([boxes, scores[:, None]], 1),
        "nms_keep": keep,
    }


def _float32(tree):
    """Floating tensors of a nested dict / list -> float32 (a no-op outside autocast)."""
    if torch.is_tensor(tree):
        return tree.float() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {k: _float32(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_float32(v) for v in tree)
    return tree


def _no_autocast(device: torch.device):
    return torch.autocast(device.type, enabled=False)


@META_ARCH_REGISTRY.register()
class PAVENet(nn.Module):
    """PAVE-Net: end-to-end multi-person video pose estimation (Yu et al., AAAI 2026).

    Parameter names: ``backbone.`` (detectron2 ResNet / timm Swin), ``neck.`` and ``head.`` (the official
    ``bbox_head.`` subtree with identical sub-names), so official checkpoints convert by renaming.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        neck: ChannelMapperNeck,
        head: PAVENetHead,
        criterion,
        in_features: List[str],
        num_frames: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        test_topk: int = 20,
        test_score_thresh: float = 0.0,
        oks_nms_thresh: float = 0.0,
        coord_reweight: bool = True,
        oks_sigmas: Optional[Sequence[float]] = None,
        input_format: str = "RGB",
        msda_impl: str = "pytorch",
        denoising_groups: int = 0,
        denoising_noise: float = 0.3,
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.criterion = criterion
        self.in_features = list(in_features)
        self.num_frames = int(num_frames)
        self.test_topk = int(test_topk)
        self.test_score_thresh = float(test_score_thresh)
        self.oks_nms_thresh = float(oks_nms_thresh)
        self.coord_reweight = bool(coord_reweight)
        self.oks_sigmas = list(oks_sigmas) if oks_sigmas is not None else None
        self.input_format = input_format
        # Training-only noised-GT query groups (MODEL.PAVENET.DENOISING_*; modeling/denoising.py).
        if int(denoising_groups) < 0 or float(denoising_noise) <= 0:
            raise ValueError(
                "MODEL.PAVENET.DENOISING_GROUPS must be >= 0 and DENOISING_NOISE > 0, got "
                f"{denoising_groups} and {denoising_noise}"
            )
        self.denoising_groups, self.denoising_noise = int(denoising_groups), float(denoising_noise)
        # The deformable-attention backend of every attention module, logged once here.
        self.msda_impl = set_msda_impl(self, msda_impl)
        self.pos_encoding = SinePositionalEncoding(head.embed_dim // 2)
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False
        )

    @classmethod
    def from_config(cls, cfg):
        P = cfg.MODEL.PAVENET
        resolve_msda_impl(
            P.MSDA_IMPL
        )  # a bad value or a missing kernel fails before the backbone is built
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in P.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.PAVENET.IN_FEATURES {missing} not produced by the backbone ({list(shapes)})"
            )
        neck = ChannelMapperNeck(
            [shapes[f].channels for f in P.IN_FEATURES], P.HIDDEN_DIM, P.NUM_FEATURE_LEVELS
        )
        head = PAVENetHead(
            num_frames=P.NUM_FRAMES,
            num_keypoints=P.NUM_KEYPOINTS,
            num_queries=P.NUM_QUERIES,
            embed_dim=P.HIDDEN_DIM,
            num_heads=P.NHEADS,
            ffn_dim=P.DIM_FEEDFORWARD,
            dropout=P.DROPOUT,
            num_levels=P.NUM_FEATURE_LEVELS,
            enc_layers=P.ENC_LAYERS,
            enc_points=P.ENC_N_POINTS,
            pose_layers=P.POSE_DEC_LAYERS,
            joint_layers=P.JOINT_DEC_LAYERS,
            joint_points=P.JOINT_N_POINTS,
            value_fill_before_proj=P.VALUE_FILL_BEFORE_PROJ,
            detach_pose_references=P.DETACH_POSE_REFERENCES,
            joint_offset_bias=P.JOINT_OFFSET_BIAS,
            f5_t2_reference_branch=P.F5_T2_REFERENCE_BRANCH,
            num_aux_queries=P.ONE_TO_MANY_QUERIES,
            flow_factory=RealNVP,
        )
        sigmas = oks_sigmas_for(P.NUM_KEYPOINTS)
        return {
            "backbone": backbone,
            "neck": neck,
            "head": head,
            "criterion": build_criterion(cfg),
            "in_features": P.IN_FEATURES,
            "num_frames": P.NUM_FRAMES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "test_topk": P.TEST.TOPK,
            "test_score_thresh": P.TEST.SCORE_THRESH,
            "oks_nms_thresh": P.TEST.OKS_NMS_THRESH,
            "coord_reweight": P.TEST.COORD_REWEIGHT,
            "oks_sigmas": sigmas,
            "input_format": cfg.INPUT.FORMAT,
            "msda_impl": P.MSDA_IMPL,
            "denoising_groups": P.DENOISING_GROUPS,
            "denoising_noise": P.DENOISING_NOISE,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ------------------------------------------------------------------ input
    def preprocess_frames(self, frames: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """uint8/float (N, 3, H, W) in INPUT.FORMAT -> ((x - mean) / std float (N, 3, H, W), (H, W))."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(
                f"preprocess_frames expects (N, 3, H, W) frames, got {tuple(frames.shape)}"
            )
        x = frames.to(self.device, non_blocking=True).float()
        return (x - self.pixel_mean) / self.pixel_std, (int(x.shape[-2]), int(x.shape[-1]))

    def _batch_clips(self, batched_inputs: List[Dict]):
        """List of mapper dicts -> (B*F, 3, Hp, Wp) normalised and zero-padded images, per-clip (h, w)."""
        clips, sizes = [], []
        for i, d in enumerate(batched_inputs):
            imgs = d.get("images")
            if imgs is None:
                raise KeyError(
                    f"PAVENet input #{i} has no 'images' (F, 3, H, W) tensor (clip mapper output)"
                )
            if imgs.dim() != 4 or imgs.shape[0] != self.num_frames:
                raise ValueError(
                    f"PAVENet input #{i} ('{d.get('file_name', '?')}'): 'images' must be "
                    f"(F={self.num_frames}, 3, H, W), got {tuple(imgs.shape)}"
                )
            x, hw = self.preprocess_frames(imgs)
            clips.append(x)
            sizes.append(hw)
        hp = max(h for h, _ in sizes)
        wp = max(w for _, w in sizes)
        batch = clips[0].new_zeros(
            len(clips), self.num_frames, 3, hp, wp
        )  # zero pad after normalising
        for b, x in enumerate(clips):
            batch[b, :, :, : x.shape[-2], : x.shape[-1]] = x
        return batch.flatten(0, 1), sizes

    # ------------------------------------------------------------------ streaming API
    def encode_frames(self, images: torch.Tensor, image_sizes=None) -> EncodedFrames:
        """Backbone + neck + spatial encoder on N frames, each on its own.

        images: float (N, 3, Hp, Wp), normalised and padded alike; image_sizes: None (no padding),
        one (h, w) for all frames, or a list of N (h, w) un-padded sizes.
        """
        n, _, hp, wp = images.shape
        if image_sizes is None:
            image_sizes = [(hp, wp)] * n
        elif len(image_sizes) == 2 and isinstance(image_sizes[0], (int, np.integer)):
            image_sizes = [tuple(image_sizes)] * n
        if len(image_sizes) != n:
            raise ValueError(f"encode_frames: {len(image_sizes)} image sizes for {n} frames")
        mask = torch.ones((n, hp, wp), dtype=torch.bool, device=images.device)
        for i, (h, w) in enumerate(image_sizes):
            mask[i, :h, :w] = False
        feats = self.backbone(images)
        feats = self.neck([feats[f] for f in self.in_features])
        return self.head.encode(feats, mask, self.pos_encoding)

    def decode_rows(
        self,
        feats: Union[EncodedFrames, Sequence[EncodedFrames]],
        return_intermediates: bool = False,
    ) -> Dict:
        """The network part of decoding (what the exported decoder.onnx computes, for B = 1): B clips ->
        their top-k persons, k = min(TEST.TOPK, NUM_QUERIES), in descending score order per clip:
        "keypoints", "sigmas" (B, k, K, 2) key frame, normalised to the un-padded input; "scores" (B, k);
        "frame_keypoints" (B, k, F, K, 2) every frame's pose, normalised; "query_index" (B, k); and the
        intermediates "pose", "joint" (whole batch), "joint_init_references".

        feats: EncodedFrames of the B*F frames (clip-major, padded alike) or a list of F EncodedFrames of B
        frames each. In eval without return_intermediates the decode is lean (outputs nothing reads are
        not computed); the rows are the same.
        """
        feats = self.head.with_values(
            feats
        )  # value maps of frames built without them, once for both decoders
        pose = self.head.decode_pose(feats, lean=not (return_intermediates or self.head.training))
        scores_all = (
            pose["pose_layers"][-1]["logits"][..., 0].float().sigmoid()
        )  # (B, Q), float32 under autocast
        b = scores_all.shape[0]
        k = min(self.test_topk, scores_all.shape[1])
        scores, query_idx = scores_all.topk(
            k, dim=1
        )  # (B, k) descending, no threshold (docs/REFERENCE.md §9)
        clip_idx = torch.arange(b, device=query_idx.device).repeat_interleave(
            k
        )  # (B*k,) persons, clip-major
        init_refs = self.head.joint_init_references(pose, clip_idx, query_idx.flatten())
        joint = self.head.decode_joints(feats, clip_idx, init_refs)
        kpts = joint[-1]["keypoints"].float().view(b, k, self.head.num_keypoints, 2)
        sigma = joint[-1]["sigma"].float().view(b, k, self.head.num_keypoints, 2)
        # Auxiliary-frame poses for the tracker: the references the last pose layer sampled with (trained,
        # unlike the last layer's own auxiliary update whose branch never receives a gradient).
        aux = pose["input_references"][clip_idx, :, query_idx.flatten()].float()
        aux = aux.view(b, k, self.num_frames, self.head.num_keypoints, 2)
        return {
            "keypoints": kpts,
            "sigmas": sigma,
            "scores": scores,
            "frame_keypoints": aux,
            "query_index": query_idx,
            "pose": pose,
            "joint": joint,
            "joint_init_references": init_refs,
        }

    @torch.no_grad()
    def decode_clip(
        self,
        feats: Union[EncodedFrames, Sequence[EncodedFrames]],
        image_size: Tuple[int, int],
        output_size=None,
        return_intermediates: bool = False,
    ):
        """Decode ONE clip from its F encoded frames -> key-frame `Instances` in output_size pixels.

        feats: an EncodedFrames of the clip's F frames, or a list of F one-frame EncodedFrames (the
        streaming cache, used without concatenating them). image_size: un-padded network-input (h, w);
        output_size: (height, width) to rescale to (default image_size). With return_intermediates=True
        also returns a dict of every stage's tensors (computing the outputs decoding does not need, too).
        """
        one_clip = isinstance(feats, EncodedFrames) or all(len(x) == 1 for x in feats)
        if len(feats) != self.num_frames or not one_clip:
            got = len(feats) if isinstance(feats, EncodedFrames) else [len(x) for x in feats]
            raise ValueError(
                f"decode_clip needs the {self.num_frames} frames of one clip, got {got}"
            )
        insts, inter = self._decode(
            feats, [image_size], [output_size or image_size], return_intermediates
        )
        return (insts[0], inter) if return_intermediates else insts[0]

    @torch.no_grad()
    def decode_clips(
        self, feats: Union[EncodedFrames, Sequence[EncodedFrames]], image_sizes, output_sizes=None
    ):
        """Decode B clips together -> B key-frame `Instances`.

        feats: EncodedFrames of the B*F frames (clip-major, padded alike) or a list of F EncodedFrames of B
        frames each; image_sizes: B un-padded (h, w); output_sizes: B (height, width) (default image_sizes).
        """
        return self._decode(feats, list(image_sizes), list(output_sizes or image_sizes), False)[0]

    def _decode(self, feats, image_sizes, output_sizes, return_intermediates):
        """`decode_rows` on B clips, then post-processing per clip -> (B Instances, intermediates)."""
        rows = self.decode_rows(feats, return_intermediates)
        b = rows["scores"].shape[0]
        if len(image_sizes) != b or len(output_sizes) != b:
            raise ValueError(
                f"{len(image_sizes)} image sizes / {len(output_sizes)} output sizes for {b} clips"
            )
        insts, posts = [], []
        for i in range(b):
            inst, post = self.postprocess(
                rows["keypoints"][i],
                rows["sigmas"][i],
                rows["scores"][i],
                rows["frame_keypoints"][i],
                image_sizes[i],
                output_sizes[i] or image_sizes[i],
            )
            insts.append(inst)
            posts.append(post)
        if not return_intermediates:
            return insts, None
        # One clip (decode_clip): its rows; "pose" / "joint" hold the whole batch.
        inter = {
            "pose": rows["pose"],
            "joint": rows["joint"],
            "query_index": rows["query_index"][0],
            "scores": rows["scores"][0],
            "joint_init_references": rows["joint_init_references"],
            **posts[0],
        }
        return insts, inter

    def postprocess(self, kpts, sigma, scores, frame_kpts, image_size, output_size):
        """`postprocess_detections` with this model's TEST settings -> (Instances, dict of pre-NMS rows)."""
        return postprocess_detections(
            kpts,
            sigma,
            scores,
            frame_kpts,
            image_size,
            output_size,
            num_frames=self.num_frames,
            coord_reweight=self.coord_reweight,
            oks_nms_thresh=self.oks_nms_thresh,
            oks_sigmas=self.oks_sigmas,
            score_thresh=self.test_score_thresh,
        )

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs: List[Dict]):
        images, sizes = self._batch_clips(batched_inputs)
        frame_sizes = [s for s in sizes for _ in range(self.num_frames)]
        if not self.training:
            feats = self.encode_frames(images, frame_sizes)
            out_sizes = [
                (int(d.get("height", h)), int(d.get("width", w)))
                for d, (h, w) in zip(batched_inputs, sizes)
            ]
            # The clips share one padded size, so the decoders take the whole batch at once.
            return [{"instances": inst} for inst in self.decode_clips(feats, sizes, out_sizes)]
        return self.losses(images, frame_sizes, batched_inputs)

    def losses(self, images, frame_sizes, batched_inputs) -> Dict[str, torch.Tensor]:
        for i, d in enumerate(batched_inputs):
            if "instances" not in d:
                raise KeyError(
                    f"PAVENet training input #{i} ('{d.get('file_name', '?')}') has no 'instances'"
                )
        targets = [targets_from_instances(d["instances"].to(self.device)) for d in batched_inputs]
        feats = self.encode_frames(images, frame_sizes)
        dn = (
            sample_denoising_queries(targets, self.denoising_groups, self.denoising_noise)
            if self.denoising_groups
            else None
        )
        pose = self.head.decode_pose(feats, denoising=dn)
        # Match the LAST pose layer first: its matched queries are the joint decoder's persons (docs/REFERENCE.md §6).
        # Matching and losses run in float32 even under autocast (AMP): OKS costs, focal terms and the RLE
        # flow's log-likelihoods lose too much precision in bf16 / fp16.
        with _no_autocast(self.device):
            last_idx = self.criterion.match(_float32(pose["pose_layers"][-1]), targets)
        clip_idx = torch.cat([torch.full_like(pi, b) for b, (pi, _) in enumerate(last_idx)]).to(
            self.device
        )
        query_idx = torch.cat([pi for pi, _ in last_idx]).to(self.device)
        joint = []
        if query_idx.numel() > 0:
            init_refs = self.head.joint_init_references(pose, clip_idx, query_idx)
            joint = self.head.decode_joints(feats, clip_idx, init_refs)
        outputs = {
            "enc": pose["enc"],
            "pose_layers": pose["pose_layers"],
            "joint_layers": joint,
            "aux_pose_layers": pose.get("aux_pose_layers", []),
        }
        if dn is not None:
            outputs["dn_pose_layers"], outputs["dn"] = pose["dn_pose_layers"], dn
        with _no_autocast(self.device):
            return self.criterion(
                _float32(outputs),
                targets,
                last_idx,
                enc_flow=self.head.enc_flow,
                dec_flow=self.head.dec_flow,
                flow=self.head.flow,
            )
