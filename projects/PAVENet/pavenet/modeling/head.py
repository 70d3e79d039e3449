"""PAVE-Net head (official `bbox_head`): spatial encoder, query selection, spatiotemporal pose decoder,
spatiotemporal joint decoder and their prediction branches (docs/REFERENCE.md §3-§7).

Shapes: B clips of F frames (frame order t-T..t+T, key frame c = F // 2), Q pose queries, K joints,
C channels, L levels, S tokens per frame. Keypoints are normalised to the UNPADDED image
([x0, y0, x1, y1, ...] for 2K vectors), sigmas are after the sigmoid.
"""

import dataclasses
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .denoising import DenoisingQueries, denoising_attention_mask, denoising_query_inputs
from .encoded_frames import EncodedFrames, Frames, split_clip_frames
from .ms_deform_attn import frame_prefixes, level_shapes
from .transformer import PAVETransformer, inverse_sigmoid

__all__ = [
    "EncodedFrames",
    "PAVENetHead",
    "LinearWithNorm",
]  # EncodedFrames re-exported from encoded_frames


class LinearWithNorm(nn.Module):
    """Official `Linear_with_norm(norm=False)`: a Linear under `.linear`, weight xavier gain 0.01."""

    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.xavier_uniform_(self.linear.weight, gain=0.01)

    def forward(self, x):
        return self.linear(x)


class _FrozenLinearParams(nn.Module):
    """Keeps `fc_hm.{weight,bias}` as buffers: the heatmap branch is disabled in PAVE-Net (docs/REFERENCE.md §7), the
    tensors exist only so official checkpoints load strictly; as buffers they are never 'unused params'."""

    def __init__(self, cin, cout):
        super().__init__()
        self.register_buffer("weight", torch.zeros(cout, cin))
        self.register_buffer("bias", torch.zeros(cout))


def _mlp(dims: List[int]) -> nn.Sequential:
    """Linear-ReLU-...-Linear (official branch layout: Linear indices 0, 2, 4, ...)."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _sigma_branch(c, out):
    """Linear -> Linear -> LinearWithNorm, no activations (official `dec_fc_sigma_branches`)."""
    return nn.Sequential(nn.Linear(c, c), nn.Linear(c, c), LinearWithNorm(c, out))


def _level_masks(mask: torch.Tensor, sizes) -> List[torch.Tensor]:
    """(N, H, W) bool pixel mask -> per-level masks by nearest resize (as mmdet)."""
    return [F.interpolate(mask[None].float(), size=s).to(torch.bool)[0] for s in sizes]


def _centres(n, offset: float, device) -> torch.Tensor:
    """float32 [offset, offset + 1, ..., offset + n - 1] (n an int, or a 0-dim tensor while tracing)."""
    return torch.arange(n, dtype=torch.float32, device=device) + offset


def _valid_ratio(mask: torch.Tensor) -> torch.Tensor:
    """(N, h, w) bool -> (N, 2) (w, h) fraction of valid columns/rows."""
    _, h, w = mask.shape
    vh = (~mask[:, :, 0]).sum(1).float() / h
    vw = (~mask[:, 0, :]).sum(1).float() / w
    return torch.stack([vw, vh], -1)


def _query_slice(layer: Dict, sel: slice) -> Dict:
    """One pose layer's outputs restricted to the queries `sel` ("references" is (B, F, Q, 2K))."""
    return {key: (v[:, :, sel] if key == "references" else v[:, sel]) for key, v in layer.items()}


class PAVENetHead(nn.Module):
    def __init__(
        self,
        *,
        num_frames=3,
        num_keypoints=15,
        num_queries=300,
        embed_dim=256,
        num_heads=8,
        ffn_dim=1024,
        dropout=0.1,
        num_levels=4,
        enc_layers=6,
        enc_points=4,
        pose_layers=3,
        joint_layers=2,
        joint_points=4,
        value_fill_before_proj=True,
        detach_pose_references=False,
        joint_offset_bias="shared_storage",
        f5_t2_reference_branch="next",
        num_aux_queries=0,
        flow_factory=None,
    ):
        super().__init__()
        if f5_t2_reference_branch not in ("next", "next_next"):
            raise ValueError(
                "MODEL.PAVENET.F5_T2_REFERENCE_BRANCH must be 'next' (official) or 'next_next', "
                f"got {f5_t2_reference_branch!r}"
            )
        self.f5_t2_reference_branch = f5_t2_reference_branch
        self.num_frames, self.num_keypoints, self.num_queries = (
            num_frames,
            num_keypoints,
            num_queries,
        )
        self.embed_dim, self.num_levels = embed_dim, num_levels
        # Training-only one-to-many query group (MODEL.PAVENET.ONE_TO_MANY_QUERIES); no parameters of its own.
        self.num_aux_queries = int(num_aux_queries)
        if self.num_aux_queries < 0:
            raise ValueError(
                f"MODEL.PAVENET.ONE_TO_MANY_QUERIES must be >= 0, got {num_aux_queries}"
            )
        self.key_frame = num_frames // 2
        self.prefixes = frame_prefixes(num_frames)
        self.aux_prefixes = [p for p in self.prefixes if p]
        self.detach_pose_references = detach_pose_references
        c, k2 = embed_dim, 2 * num_keypoints
        hidden = 2 * embed_dim  # 512 for the official C=256

        self.transformer = PAVETransformer(
            num_frames,
            num_keypoints,
            embed_dim,
            num_heads,
            num_levels,
            ffn_dim,
            dropout,
            enc_layers,
            enc_points,
            pose_layers,
            joint_layers,
            joint_points,
            value_fill_before_proj,
            joint_offset_bias,
        )
        n_pred = (
            pose_layers + 1
        )  # the last entry serves the encoder proposals (docs/REFERENCE.md §4)
        self.cls_branches = nn.ModuleList([nn.Linear(c, 1) for _ in range(n_pred)])
        self.kpt_branches = nn.ModuleList(
            [_mlp([c, hidden, hidden, hidden, k2]) for _ in range(n_pred)]
        )
        self.dec_fc_sigma_branches = nn.ModuleList([_sigma_branch(c, k2) for _ in range(n_pred)])
        for pre in self.aux_prefixes:  # auxiliary frames, decoder layers only
            setattr(
                self,
                pre + "kpt_branches",
                nn.ModuleList([_mlp([c, hidden, hidden, hidden, k2]) for _ in range(pose_layers)]),
            )
        self.query_embedding = nn.Embedding(num_queries, 2 * c)
        for pre in self.prefixes:
            setattr(
                self,
                pre + "refine_kpt_branches",
                nn.ModuleList([_mlp([c, c, c, 2]) for _ in range(joint_layers)]),
            )
        self.refine_fc_sigma_branches = nn.ModuleList(
            [_sigma_branch(c, 2) for _ in range(joint_layers)]
        )
        self.fc_hm = _FrozenLinearParams(c, num_keypoints)
        if flow_factory is not None:
            self.enc_flow, self.dec_flow, self.flow = flow_factory(), flow_factory(), flow_factory()
        self.positional_encoding = None  # parameter-free; built by the meta-arch
        self.init_weights()
        self._freeze_never_trained()

    # ---------------------------------------------------------------- init
    def init_weights(self) -> None:
        """Head inits of docs/REFERENCE.md §7, applied after the transformer's generic xavier pass."""
        bias = -torch.log(torch.tensor((1 - 0.01) / 0.01)).item()
        for m in self.cls_branches:
            nn.init.constant_(m.bias, bias)
        for m in self.kpt_branches:
            nn.init.zeros_(m[-1].weight)
            nn.init.zeros_(m[-1].bias)
        for m in self.refine_branches("pre_") if "pre_" in self.prefixes else []:
            nn.init.zeros_(
                m[-1].weight
            )  # official: only `pre_refine_kpt_branches` is zeroed (also for F=5)
            nn.init.zeros_(m[-1].bias)

    def _freeze_never_trained(self) -> None:
        """The last pose layer's and last joint layer's AUXILIARY-frame branches only produce references
        that are detached (joint-decoder input) or never read, so they get no gradient in the official
        training either; freezing them keeps 'every trainable parameter gets a gradient' true (DDP without
        find_unused_parameters) and changes nothing else (AdamW skips params without grads)."""
        for pre in self.aux_prefixes:
            for branches in (self.pose_branches(pre), self.refine_branches(pre)):
                if len(branches):
                    branches[-1].requires_grad_(False)

    def pose_branches(self, prefix: str) -> nn.ModuleList:
        return getattr(self, prefix + "kpt_branches")

    def refine_branches(self, prefix: str) -> nn.ModuleList:
        return getattr(self, prefix + "refine_kpt_branches")

    # ---------------------------------------------------------------- encoder
    def encode(
        self, feats: List[torch.Tensor], pixel_mask: torch.Tensor, pos_encoding
    ) -> EncodedFrames:
        """feats: L maps (N, C, h_l, w_l) of N frames; pixel_mask (N, H, W) bool, True = padded.
        In eval the result carries the decoders' value maps (`EncodedFrames.values`)."""
        masks = _level_masks(pixel_mask, [f.shape[-2:] for f in feats])
        tokens, pos, flat_masks, shapes = [], [], [], []
        for lvl, (x, m) in enumerate(zip(feats, masks)):
            shapes.append(x.shape[-2:])
            tokens.append(x.flatten(2).transpose(1, 2))
            p = pos_encoding(m).flatten(2).transpose(1, 2)
            pos.append(p + self.transformer.level_embeds[lvl].view(1, 1, -1))
            flat_masks.append(m.flatten(1))
        x = torch.cat(tokens, 1)
        pos = torch.cat(pos, 1)
        mask = torch.cat(flat_masks, 1)
        if (
            torch.jit.is_tracing()
        ):  # sizes are 0-dim tensors then: keep them graph values (ONNX export)
            spatial_shapes = torch.stack([torch.stack([h, w]) for h, w in shapes]).to(torch.long)
        else:
            spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=x.device)
        level_start = torch.cat(
            (spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1])
        )
        valid_ratios = torch.stack([_valid_ratio(m) for m in masks], 1)  # (N, L, 2)
        ref = self._encoder_reference_points(spatial_shapes, valid_ratios)
        for layer in self.transformer.encoder.layers:
            x = layer(x, pos, ref, spatial_shapes, mask)
        # Eval: every decoder layer's value maps once per frame here, not once per window that holds it.
        values = None if self.training else self.project_values(x, mask)
        return EncodedFrames(x, mask, spatial_shapes, level_start, valid_ratios, values)

    @staticmethod
    def _encoder_reference_points(spatial_shapes, valid_ratios):
        """Token centres normalised by the valid area, then scaled per level: (N, S, L, 2)."""
        refs = []
        for lvl, (h, w) in enumerate(level_shapes(spatial_shapes)):
            # arange + 0.5 == linspace(0.5, h - 0.5, h) exactly; arange also traces with a dynamic size.
            ry, rx = torch.meshgrid(
                _centres(h, 0.5, valid_ratios.device),
                _centres(w, 0.5, valid_ratios.device),
                indexing="ij",
            )
            ry = ry.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            rx = rx.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((rx, ry), -1))
        ref = torch.cat(refs, 1)
        return ref[:, :, None] * valid_ratios[:, None]

    # ---------------------------------------------------------------- query selection
    def _proposals(self, memory, mask, spatial_shapes):
        """Key-frame tokens -> (E (B,S,C), proposal logits (B,S,2), valid (B,S)) (docs/REFERENCE.md §4)."""
        n = memory.shape[0]
        props, cur = [], 0
        for h, w in level_shapes(spatial_shapes):
            m = mask[:, cur : cur + h * w].view(n, h, w)
            valid_h = (~m[:, :, 0]).sum(1)
            valid_w = (~m[:, 0, :]).sum(1)
            gy, gx = torch.meshgrid(
                _centres(h, 0.0, memory.device), _centres(w, 0.0, memory.device), indexing="ij"
            )
            grid = torch.stack([gx, gy], -1)
            scale = torch.stack([valid_w, valid_h], 1).view(n, 1, 1, 2)
            props.append(((grid[None].expand(n, -1, -1, -1) + 0.5) / scale).view(n, -1, 2))
            cur += h * w
        p = torch.cat(props, 1)
        valid = ((p > 0.01) & (p < 0.99)).all(-1) & ~mask
        logits = torch.log(p / (1 - p)).masked_fill(~valid[..., None], float("inf"))
        e = memory.masked_fill(~valid[..., None], 0.0)
        e = self.transformer.enc_output_norm(self.transformer.enc_output(e))
        return e, logits, valid

    # ---------------------------------------------------------------- decoder inputs
    def decoder_attentions(self) -> List[nn.Module]:
        """The decoders' multi-frame cross-attentions, pose layers then joint layers (the order of
        `EncodedFrames.values`)."""
        layers = list(self.transformer.decoder.layers) + list(
            self.transformer.refine_decoder.layers
        )
        return [layer.attentions[1] for layer in layers]

    def project_values(
        self, memory: torch.Tensor, padding_mask: torch.Tensor
    ) -> List[torch.Tensor]:
        """memory (N, S, C), padding_mask (N, S) -> every decoder layer's value maps, (N, S, H, D) each."""
        return [attn.project_values(memory, padding_mask) for attn in self.decoder_attentions()]

    def with_values(self, enc: Frames) -> Frames:
        """`enc` (EncodedFrames or a list of them) with `values` filled in where they are missing."""
        if not isinstance(enc, EncodedFrames):
            return [self.with_values(e) for e in enc]
        if enc.values is not None:
            return enc
        return dataclasses.replace(enc, values=self.project_values(enc.memory, enc.padding_mask))

    def _frames(self, enc: Frames) -> List[EncodedFrames]:
        return split_clip_frames(enc, self.num_frames)

    def _layer_values(self, enc: Frames, frames: List[EncodedFrames], idx: int):
        """What decoder layer `idx` (pose layers, then joint layers) samples, and its padding mask.

        Training: the clips' memory (B, F, S, C) and mask (B, F, S); the layer projects it (autograd).
        Eval: the F frames' cached maps (B, S, H, D) of `EncodedFrames.values` (projected here if absent).
        """
        if self.training:
            if isinstance(enc, EncodedFrames):
                b, s = len(frames[0]), enc.memory.shape[1]
                return enc.memory.view(b, self.num_frames, s, -1), enc.padding_mask.view(
                    b, self.num_frames, s
                )
            return (
                torch.stack([fr.memory for fr in frames], 1),
                torch.stack([fr.padding_mask for fr in frames], 1),
            )
        attn = self.decoder_attentions()[idx]
        return [
            fr.values[idx]
            if fr.values is not None
            else attn.project_values(fr.memory, fr.padding_mask)
            for fr in frames
        ], None

    # ---------------------------------------------------------------- pose decoder
    def decode_pose(
        self, enc: Frames, lean: bool = False, denoising: Optional[DenoisingQueries] = None
    ) -> Dict:
        """Query selection + spatiotemporal pose decoder on B clips.

        enc: EncodedFrames of the B*F frames (clip-major) or a list of F EncodedFrames of B frames each.
        Returns a dict:
          "enc": {"logits" (B,S,1), "keypoints" (B,S,K,2), "sigma" (B,S,K,2), "valid" (B,S), "topk" (B,Q)}
          "pose_layers": per layer {"logits" (B,Q,1), "keypoints" (B,Q,K,2), "sigma" (B,Q,K,2),
                                    "hs" (B,Q,C), "references" (B,F,Q,2K) after the layer}
          "init_reference": (B,Q,2K); "input_references": (B,F,Q,2K) references the last layer sampled with.
        In training with A = num_aux_queries > 0 also "aux_pose_layers": the same per-layer dicts for the A
        one-to-many queries (the encoder proposals ranked Q+1..Q+A). They run in the same decoder pass
        behind a self-attention mask that keeps the two groups apart, so the Q one-to-one queries'
        outputs are those of a forward without them; in eval mode the group does not exist.

        lean=True (eval only; `PAVENet.decode_clips`) computes only what decoding reads, with the same
        values: "enc" without "keypoints" / "sigma" (the branches run on the Q selected tokens only, not
        on all S), pose layers without "logits" / "keypoints" / "sigma" except the last layer's "logits",
        and the last layer without "references" (`joint_init_references` computes them for the persons
        it selects).

        In training with `denoising` (MODEL.PAVENET.DENOISING_GROUPS > 0) also "dn_pose_layers": the same
        per-layer dicts for its D noised-GT queries (modeling/denoising.py), masked off likewise; ignored in
        eval mode.
        """
        if lean and self.training:
            raise ValueError("decode_pose(lean=True) is for eval: training reads every output")
        f, c, k, q = self.num_frames, self.key_frame, self.num_keypoints, self.num_queries
        a = self.num_aux_queries if self.training else 0
        frames = self._frames(enc)
        key = frames[c]
        b, s, dim = key.memory.shape
        dn = denoising if self.training else None
        if s < q + a:
            raise ValueError(
                f"only {s} encoder tokens per frame for NUM_QUERIES={q} (+ ONE_TO_MANY_QUERIES={a} "
                "in training): use larger images or fewer MODEL.PAVENET.NUM_QUERIES"
            )
        n_dec = self.transformer.decoder.num_layers

        e, proposals, valid = self._proposals(key.memory, key.padding_mask, key.spatial_shapes)
        enc_logits = self.cls_branches[n_dec](e)
        topk = torch.topk(enc_logits[..., 0], q + a, dim=1)[1]  # (B, Q+A), descending logits
        sel_e = torch.gather(e, 1, topk[..., None].expand(-1, -1, dim)).detach()
        enc_out = {"logits": enc_logits, "valid": valid, "topk": topk[:, :q]}
        if lean:  # the keypoint branch is per token: run it on the selected tokens only
            sel_prop = torch.gather(proposals, 1, topk[..., None].expand(-1, -1, 2))
            sel_kpt = (
                self.kpt_branches[n_dec](sel_e).view(b, q, k, 2) + sel_prop[:, :, None, :]
            ).flatten(2)
        else:
            enc_kpt = self.kpt_branches[n_dec](e).view(b, s, k, 2) + proposals[:, :, None, :]
            enc_out["keypoints"] = enc_kpt.sigmoid()
            enc_out["sigma"] = self.dec_fc_sigma_branches[n_dec](e).sigmoid().view(b, s, k, 2)
            sel_kpt = torch.gather(
                enc_kpt.flatten(2), 1, topk[..., None].expand(-1, -1, 2 * k)
            ).detach()
        init_ref = sel_kpt.sigmoid()  # (B, Q+A, 2K)
        embedding = self.query_embedding.weight
        self_attn_mask = None
        if (
            a
        ):  # the one-to-many group reuses the embeddings cyclically; groups do not see each other
            embedding = embedding[torch.arange(q + a, device=embedding.device) % q]
            group = torch.arange(q + a, device=embedding.device) >= q
            self_attn_mask = group[:, None] != group[None, :]
        query_pos, content = torch.split(embedding, dim, dim=1)
        query_pos = query_pos[None].expand(b, -1, -1)
        query = (
            content[None] + sel_e
        )  # learnable content + detached encoder token (docs/REFERENCE.md §4 ★)
        d = 0
        if (
            dn is not None
        ):  # noised-GT queries: built like selected proposals, behind their own mask
            d = dn.num_queries
            dn_query, dn_pos, dn_ref = denoising_query_inputs(
                dn, e, proposals, valid, self.query_embedding.weight, self.num_queries
            )
            query = torch.cat([query, dn_query], 1)
            query_pos = torch.cat([query_pos, dn_pos], 1)
            init_ref = torch.cat([init_ref, dn_ref], 1)
            plain_groups = (torch.arange(q + a, device=query.device) >= q).long()
            heads = self.transformer.decoder.layers[0].attentions[0].attn.num_heads
            self_attn_mask = denoising_attention_mask(q + a, plain_groups, dn, heads)

        # Pose decoder valid ratios: the key frame's (all frames of a clip share one image size).
        vr_k = key.valid_ratios.repeat(1, 1, k)[:, None, None]  # (B, 1, 1, L, 2K)
        refs = init_ref[:, None].expand(-1, f, -1, -1)  # (B, F, Q, 2K), copies of R0
        layers_out = []
        input_refs = refs
        for lid, layer in enumerate(self.transformer.decoder.layers):
            input_refs = refs
            values, mask = self._layer_values(enc, frames, lid)
            hs = layer(
                query,
                query_pos,
                values,
                refs[:, :, :, None, :] * vr_k,
                key.spatial_shapes,
                mask,
                self_attn_mask=self_attn_mask,
            )
            last = lid == n_dec - 1
            out = {"hs": hs}
            if not (
                lean and last
            ):  # lean: the last layer's references only for the selected persons
                new_refs = torch.stack(
                    [
                        (self.pose_branches(pre)[lid](hs) + inverse_sigmoid(refs[:, fi])).sigmoid()
                        for fi, pre in enumerate(self.prefixes)
                    ],
                    dim=1,
                )
                out["references"] = new_refs
            if not lean or last:
                out["logits"] = self.cls_branches[lid](hs)
            if not lean:
                out["keypoints"] = new_refs[:, c].view(b, q + a + d, k, 2)
                out["sigma"] = (
                    self.dec_fc_sigma_branches[lid](hs).sigmoid().view(b, q + a + d, k, 2)
                )
            layers_out.append(out)
            if last:
                break
            # docs/REFERENCE.md §5.2: the official decoder does NOT detach the references between layers.
            refs = new_refs.detach() if self.detach_pose_references else new_refs
            query = hs
        out = {
            "enc": enc_out,
            "pose_layers": [_query_slice(x, slice(0, q)) for x in layers_out]
            if a or d
            else layers_out,
            "init_reference": init_ref[:, :q],
            "input_references": input_refs[:, :, :q],
        }
        if a:
            out["aux_pose_layers"] = [_query_slice(x, slice(q, q + a)) for x in layers_out]
        if d:
            out["dn_pose_layers"] = [_query_slice(x, slice(q + a, q + a + d)) for x in layers_out]
        return out

    # ---------------------------------------------------------------- joint decoder
    def decode_joints(
        self, enc: Frames, clip_index: torch.Tensor, init_refs: torch.Tensor
    ) -> List[Dict]:
        """Spatiotemporal joint decoder for M persons.

        enc: the B*F encoded frames (or the list of F, as in `decode_pose`); clip_index (M,) long: which
        clip each person belongs to; init_refs (M, F, K, 2) initial per-frame joint references (detached here).
        Returns per layer {"keypoints" (M,K,2) key frame, "sigma" (M,K,2), "hs" (M,K,C),
        "references" (M,F,K,2) after the layer}.
        """
        c = self.key_frame
        frames = self._frames(enc)
        dim = frames[0].memory.shape[-1]
        n_pose = self.transformer.decoder.num_layers
        m = init_refs.shape[0]
        # Each person's own clip's valid ratios (docs/REFERENCE.md §16 8b: the official code mixes person/frame order).
        vr = torch.stack([fr.valid_ratios for fr in frames], 1)[clip_index]  # (M, F, L, 2)
        query_pos, content = torch.split(self.transformer.refine_query_embedding.weight, dim, dim=1)
        query_pos = query_pos[None].expand(m, -1, -1)
        query = content[None].expand(m, -1, -1)
        refs = init_refs.detach()
        out = []
        for lid, layer in enumerate(self.transformer.refine_decoder.layers):
            values, mask = self._layer_values(enc, frames, n_pose + lid)
            hs = layer(
                query,
                query_pos,
                values,
                refs[:, :, :, None, :] * vr[:, :, None],
                frames[0].spatial_shapes,
                mask,
                value_index=clip_index,
            )
            new_refs = torch.stack(
                [
                    (self.refine_branches(pre)[lid](hs) + inverse_sigmoid(refs[:, fi])).sigmoid()
                    for fi, pre in enumerate(self.prefixes)
                ],
                dim=1,
            )
            out.append(
                {
                    "keypoints": new_refs[:, c],
                    "sigma": self.refine_fc_sigma_branches[lid](hs).sigmoid(),
                    "hs": hs,
                    "references": new_refs,
                }
            )
            refs = new_refs  # not detached between joint layers (docs/REFERENCE.md §6)
            query = hs
        return out

    def joint_init_references(
        self, pose_out: Dict, clip_index: torch.Tensor, query_index: torch.Tensor
    ):
        """(M, F, K, 2) joint-decoder start: last pose layer's key-frame pose and auxiliary-frame references."""
        last = pose_out["pose_layers"][-1]
        if "references" in last:
            sel = last["references"][clip_index, :, query_index]  # (M, F, 2K)
        else:  # lean decode_pose: the last layer's update for the selected persons only
            hs = last["hs"][clip_index, query_index]  # (M, C)
            ref_in = pose_out["input_references"][clip_index, :, query_index]  # (M, F, 2K)
            lid = (
                self.transformer.decoder.num_layers - 1
            )  # not [-1]: the key frame's list also holds the encoder's
            sel = torch.stack(
                [
                    (self.pose_branches(pre)[lid](hs) + inverse_sigmoid(ref_in[:, fi])).sigmoid()
                    for fi, pre in enumerate(self.prefixes)
                ],
                dim=1,
            )
        if self.num_frames == 5 and self.f5_t2_reference_branch == "next":
            # docs/REFERENCE.md §16 8a: the official F=5 head recomputes the t+2 start pose with next_kpt_branches
            # (the decoder itself used next_next_kpt_branches); converted F=5 weights expect that.
            hs = pose_out["pose_layers"][-1]["hs"][clip_index, query_index]  # (M, C)
            ref_in = pose_out["input_references"][clip_index, 4, query_index]  # (M, 2K)
            t2 = (self.next_kpt_branches[-1](hs) + inverse_sigmoid(ref_in)).sigmoid()
            sel = torch.cat([sel[:, :4], t2[:, None]], dim=1)
        return sel.view(sel.shape[0], self.num_frames, self.num_keypoints, 2)
