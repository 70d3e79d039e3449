"""Backbone extras, neck and positional encoding (docs/REFERENCE.md §2).

* `build_pavenet_resnet_backbone`: the R50 is detectron2's ResNet (FrozenBN, res3-res5, STRIDE_IN_1X1=False,
  FREEZE_AT=2) with `ChannelsLastPoolStem`, chosen by MODEL.BACKBONE.NAME; all B*F frames go through it as
  one batch.
* `build_pavenet_swin_backbone`: Swin-L through `timm` (optional dependency, imported lazily), with
  mmdet's output LayerNorms `norm1..3` and mmdet's padding order, so official weights fit.
* `ChannelMapperNeck`: mmdet ChannelMapper layout (1x1 conv, no bias + GroupNorm(32) per input, and an
  extra 3x3 stride-2 conv + GN on the raw last input, C5), official attribute names.
* `SinePositionalEncoding`: mmdet's normalised 2-D sine encoding with offset -0.5.
* `ChannelsLastPoolStem`: detectron2's ResNet stem with its max-pool run in channels-last memory on CPU (same
  numbers, several times faster there); the stem of both ResNet builders here.
"""

import math
import types
from typing import Dict, List

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicStem
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

__all__ = [
    "ChannelMapperNeck",
    "ChannelsLastPoolStem",
    "SinePositionalEncoding",
    "build_pavenet_swin_backbone",
    "TimmSwinBackbone",
    "build_pavenet_resnet_backbone",
    "build_pavenet_tiny_resnet_backbone",
]


class _ChannelsLastMaxPool3x3s2(torch.autograd.Function):
    """max_pool2d(x, 3, stride 2, padding 1) on a CPU NCHW tensor, computed by the channels-last kernel.

    Forward pools a channels-last copy; the pooling indices are flat per-plane positions, the same in either
    layout, so backward runs the NCHW gradient kernel on the NCHW input (fast on CPU) with those indices and
    returns an NCHW gradient, so nothing upstream sees a channels-last tensor.
    """

    @staticmethod
    def forward(ctx, x):  # (N, C, H, W) -> (N, C, H', W'), contiguous NCHW
        pooled, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), [3, 3], [2, 2], [1, 1]
        )
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.mark_non_differentiable(indices)
        return pooled.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pooled):
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_pooled.contiguous(), x, [3, 3], [2, 2], [1, 1], [1, 1], False, indices
        )


class ChannelsLastPoolStem(BasicStem):
    """detectron2's `BasicStem` (conv 7x7/2 + norm, ReLU, max-pool 3x3/2) with a faster max-pool on CPU.

    PyTorch's CPU max-pool forward over an NCHW tensor is ~10x slower than its channels-last kernel (the demo's
    (12, 32, 96, 128) stem output: ~45 ms against ~8 ms including the layout copies, 1 thread), while its NCHW
    backward is the fast one; `_ChannelsLastMaxPool3x3s2` takes the fast kernel of each. Outputs and gradients are
    bit-identical to `BasicStem` (a max is exact and both kernels break ties alike; tests/test_backbone_stem.py),
    the parameters and state-dict keys are `BasicStem`'s, and other devices, scripting and ONNX tracing keep the
    plain pool.
    """

    def forward(self, x):  # (N, C_in, H, W) -> (N, C_out, H/4, W/4)
        x = F.relu_(self.conv1(x))
        if x.device.type != "cpu" or torch.jit.is_tracing() or torch.jit.is_scripting():
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        if torch.is_grad_enabled() and x.requires_grad:
            return _ChannelsLastMaxPool3x3s2.apply(x)
        pooled = F.max_pool2d(
            x.contiguous(memory_format=torch.channels_last), kernel_size=3, stride=2, padding=1
        )
        return pooled.contiguous()


@BACKBONE_REGISTRY.register()
def build_pavenet_resnet_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's ResNet (`build_resnet_backbone`: every MODEL.RESNETS option, same state-dict keys, same
    initial weights for a seed) with `ChannelsLastPoolStem` as its stem."""
    from detectron2.modeling.backbone.resnet import ResNet, build_resnet_backbone

    reference = build_resnet_backbone(cfg, input_shape)
    with torch.random.fork_rng(
        devices=[]
    ):  # detectron2's initial weights, and its RNG state after the build
        stem = ChannelsLastPoolStem(
            in_channels=input_shape.channels,
            out_channels=cfg.MODEL.RESNETS.STEM_OUT_CHANNELS,
            norm=cfg.MODEL.RESNETS.NORM,
        )
    stem.load_state_dict(reference.stem.state_dict())
    stages = [list(getattr(reference, name)) for name in reference.stage_names]
    return ResNet(stem, stages, out_features=cfg.MODEL.RESNETS.OUT_FEATURES).freeze(
        cfg.MODEL.BACKBONE.FREEZE_AT
    )


class _ConvGN(nn.Module):
    """conv (no bias) + GroupNorm, no activation; attribute names `conv` / `gn` as in mmcv ConvModule."""

    def __init__(self, cin, cout, kernel_size, stride=1, num_groups=32):
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.gn = nn.GroupNorm(num_groups, cout)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, x):
        return self.gn(self.conv(x))


class ChannelMapperNeck(nn.Module):
    """Maps backbone features to `num_levels` maps of `out_channels` (strides 8/16/32/64 for R50)."""

    def __init__(self, in_channels: List[int], out_channels=256, num_levels=4, num_groups=32):
        super().__init__()
        if num_levels < len(in_channels):
            raise ValueError(
                f"NUM_FEATURE_LEVELS={num_levels} < number of IN_FEATURES {len(in_channels)}"
            )
        g = min(num_groups, out_channels)
        self.convs = nn.ModuleList([_ConvGN(c, out_channels, 1, num_groups=g) for c in in_channels])
        extra = []
        for i in range(num_levels - len(in_channels)):
            # The first extra level convolves the raw last backbone map (C5), later ones the previous extra.
            cin = in_channels[-1] if i == 0 else out_channels
            extra.append(_ConvGN(cin, out_channels, 3, stride=2, num_groups=g))
        self.extra_convs = nn.ModuleList(extra)

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        outs = [conv(x) for conv, x in zip(self.convs, feats)]
        last = feats[-1]
        for conv in self.extra_convs:
            last = conv(last)
            outs.append(last)
        return outs


class SinePositionalEncoding(nn.Module):
    """(B, H, W) bool mask (True = padded) -> (B, 2*num_feats, H, W) sine encoding (docs/REFERENCE.md §2).

    Normalised with offset -0.5 and eps 1e-6, scale 2*pi, temperature 10000; sin/cos interleaved;
    the y half comes first.
    """

    def __init__(self, num_feats=128, temperature=10000, scale=2 * math.pi, offset=-0.5, eps=1e-6):
        super().__init__()
        self.num_feats, self.temperature, self.scale, self.offset, self.eps = (
            num_feats,
            temperature,
            scale,
            offset,
            eps,
        )

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        not_mask = 1 - mask.to(torch.int)
        y = not_mask.cumsum(1, dtype=torch.float32)
        x = not_mask.cumsum(2, dtype=torch.float32)
        y = (y + self.offset) / (y[:, -1:, :] + self.eps) * self.scale
        x = (x + self.offset) / (x[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_feats)
        b, h, w = mask.shape
        px = x[..., None] / dim_t
        py = y[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).view(b, h, w, -1)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).view(b, h, w, -1)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def _attn_pad_then_shift(block, x: torch.Tensor) -> torch.Tensor:
    """(Shifted) window attention in mmdet's order, bound to a timm ``SwinTransformerBlock`` as ``_attn``.

    timm (1.0.x) rolls the unpadded map and pads afterwards; mmdet's ``ShiftWindowMSA`` pads the map
    (bottom/right, zeros) to a multiple of the window FIRST and then rolls it, the shift mask being
    built on the padded size. The two differ whenever a stage's size is not a multiple of the window,
    so official weights need mmdet's order. Input/output: normed (B, H, W, C).
    """
    from timm.models.swin_transformer import window_partition, window_reverse

    b, h, w, c = x.shape
    wh, ww = block.window_size
    x = F.pad(x, (0, 0, 0, (-w) % ww, 0, (-h) % wh))
    hp, wp = x.shape[1], x.shape[2]
    sh, sw = block.shift_size
    shifted = bool(sh or sw)
    if shifted:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    mask = block.get_attn_mask(x) if shifted else None  # -100 between regions, on the padded size
    windows = window_partition(x, block.window_size).view(-1, wh * ww, c)
    windows = block.attn(windows, mask=mask).view(-1, wh, ww, c)
    x = window_reverse(windows, block.window_size, hp, wp)
    if shifted:
        x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class TimmSwinBackbone(Backbone):
    """mmdet-compatible Swin Transformer on top of `timm` (features_only), stages as res3/res4/res5.

    * timm holds the patch embedding and the stages (``body.*``, timm's own names, stages
      ``body.layers_{s}``); the converter maps the official mmdet keys onto them.
    * Like mmdet's SwinTransformer each returned stage ``i`` goes through its own output LayerNorm
      ``norm{i}`` (``backbone.norm1..3`` for out_indices (1, 2, 3): the official names, which the
      converter fills from ``backbone.norm{i}``).
    * Any input size: the image is zero-padded bottom/right to a multiple of the patch size (mmdet's
      AdaptivePadding 'corner'); each block pads to a multiple of the window before the cyclic shift,
      as mmdet does (`_attn_pad_then_shift`); patch merging pads odd sizes (timm = mmdet). Windows
      are never shrunk to the feature size and the shift is never dropped (timm's
      ``always_partition=True``; mmdet does the same). Output sizes are ceil(H/4), then halved with
      ceil per stage (strides 8/16/32), nothing to crop.
    * ``embed_dim`` / ``depths`` / ``num_heads`` / ``window_size`` override the timm model's
      defaults (None: keep them), e.g. for a shallow Swin in tests.
    """

    def __init__(
        self,
        model_name: str,
        out_indices=(1, 2, 3),
        drop_path_rate=0.3,
        pretrained=False,
        embed_dim=None,
        depths=None,
        num_heads=None,
        window_size=None,
    ):
        super().__init__()
        try:
            import timm
        except ImportError as e:  # optional extra
            raise ImportError(
                "MODEL.BACKBONE.NAME=build_pavenet_swin_backbone needs `timm` (pip install timm, or the "
                "package's `swin` extra)"
            ) from e
        out_indices = tuple(int(i) for i in out_indices)
        if (
            not out_indices
            or list(out_indices) != sorted(set(out_indices))
            or not set(out_indices) <= {0, 1, 2, 3}
        ):
            raise ValueError(
                f"MODEL.PAVENET.SWIN.OUT_INDICES must be increasing stage indices in 0..3, got {out_indices}"
            )
        kwargs = {}
        if embed_dim:
            kwargs["embed_dim"] = int(embed_dim)
        if depths:
            kwargs["depths"] = tuple(int(d) for d in depths)
        if num_heads:
            kwargs["num_heads"] = tuple(int(h) for h in num_heads)
        if window_size:
            kwargs["window_size"] = int(window_size)
        self.body = timm.create_model(
            model_name,
            pretrained=pretrained,
            features_only=True,
            out_indices=out_indices,
            drop_path_rate=drop_path_rate,
            strict_img_size=False,
            always_partition=True,
            **kwargs,
        )
        for m in self.body.modules():
            if hasattr(m, "get_attn_mask") and hasattr(m, "window_size") and hasattr(m, "attn"):
                m._attn = types.MethodType(_attn_pad_then_shift, m)
        patch = self.body.patch_embed.patch_size
        self._patch_size = (
            (int(patch[0]), int(patch[1]))
            if isinstance(patch, (tuple, list))
            else (int(patch),) * 2
        )
        info = self.body.feature_info
        names = ["res2", "res3", "res4", "res5"]
        self._out_indices = out_indices
        self._out_features = [names[i] for i in out_indices]
        self._out_feature_channels = dict(zip(self._out_features, info.channels()))
        self._out_feature_strides = dict(zip(self._out_features, info.reduction()))
        for i, c in zip(out_indices, info.channels()):
            self.add_module(f"norm{i}", nn.LayerNorm(c))  # mmdet: build_norm_layer(LN) per output

    def forward(self, x) -> Dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        ph, pw = self._patch_size
        if h % ph or w % pw:
            x = F.pad(x, (0, (-w) % pw, 0, (-h) % ph))
        outs = self.body(x)  # timm Swin features are NHWC
        res = {}
        for name, i, o in zip(self._out_features, self._out_indices, outs):
            if (
                o.shape[-1] != self._out_feature_channels[name]
            ):  # in case a timm version returns NCHW
                o = o.permute(0, 2, 3, 1)
            res[name] = getattr(self, f"norm{i}")(o).permute(0, 3, 1, 2).contiguous()
        return res

    def output_shape(self):
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_pavenet_swin_backbone(cfg, input_shape: ShapeSpec):
    s = cfg.MODEL.PAVENET.SWIN
    return TimmSwinBackbone(
        s.MODEL_NAME,
        out_indices=tuple(s.OUT_INDICES),
        drop_path_rate=s.DROP_PATH_RATE,
        embed_dim=s.EMBED_DIM,
        depths=s.DEPTHS,
        num_heads=s.NUM_HEADS,
        window_size=s.WINDOW_SIZE,
    )


@BACKBONE_REGISTRY.register()
def build_pavenet_tiny_resnet_backbone(cfg, input_shape: ShapeSpec):
    """A narrow detectron2 ResNet of BasicBlocks for CPU experiments (configs/synthetic/pavenet_tiny.yaml).

    detectron2's own builder fixes R18/R34 widths at 64..512; here MODEL.RESNETS.RES2_OUT_CHANNELS is the
    res2 width (doubled per stage), MODEL.RESNETS.STEM_OUT_CHANNELS the stem width, and
    MODEL.RESNETS.DEPTH 10 / 18 selects 1 / 2 blocks per stage. Norm, OUT_FEATURES and FREEZE_AT as usual.
    """
    from detectron2.modeling.backbone.resnet import BasicBlock, ResNet

    r = cfg.MODEL.RESNETS
    blocks = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2]}.get(r.DEPTH)
    if blocks is None:
        raise ValueError(
            f"build_pavenet_tiny_resnet_backbone: MODEL.RESNETS.DEPTH must be 10 or 18, got {r.DEPTH}"
        )
    stem = ChannelsLastPoolStem(
        in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM
    )
    stages, cin, cout = [], r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
    max_idx = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in r.OUT_FEATURES)
    for idx, n in enumerate(blocks[: max_idx - 1]):
        stages.append(
            ResNet.make_stage(
                BasicBlock,
                n,
                in_channels=cin,
                out_channels=cout,
                stride_per_block=[1 if idx == 0 else 2] + [1] * (n - 1),
                norm=r.NORM,
            )
        )
        cin, cout = cout, cout * 2
    return ResNet(stem, stages, out_features=r.OUT_FEATURES).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)
