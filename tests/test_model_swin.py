"""Swin backbone (timm, optional extra `swin`): any input size, strides/channels, mmdet's output norms
and padding order, and an official-style Swin checkpoint converting and loading strictly into PAVENet.

timm is an optional extra for users (`pip install -e '.[swin]'`); requirements.txt installs it, so CI
runs these tests. Shallow Swins (depth overrides, MODEL.PAVENET.SWIN.*) keep them fast; the full
Swin-L is only built on the meta device.
"""

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

timm = pytest.importorskip(
    "timm", reason="the Swin backbone needs the optional `timm` (pip install -e '.[swin]')"
)

from pavenet.modeling.backbone import TimmSwinBackbone  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SWIN_L = "swin_large_patch4_window7_224"


def _small(**kw):
    torch.manual_seed(0)
    args = dict(embed_dim=32, depths=[1, 2, 1, 1], num_heads=[1, 2, 2, 4], drop_path_rate=0.0)
    args.update(kw)
    return TimmSwinBackbone(SWIN_L, **args).eval()


def test_swin_l_architecture_on_meta_device():
    with torch.device("meta"):
        bb = TimmSwinBackbone(SWIN_L)
    shapes = bb.output_shape()
    assert list(shapes) == ["res3", "res4", "res5"]
    assert [(s.channels, s.stride) for s in shapes.values()] == [(384, 8), (768, 16), (1536, 32)]
    assert bb.body.patch_embed.proj.weight.shape == (192, 3, 4, 4)
    assert [len(getattr(bb.body, f"layers_{s}").blocks) for s in range(4)] == [2, 2, 18, 2]
    assert [getattr(bb.body, f"layers_{s}").blocks[0].attn.num_heads for s in range(4)] == [
        6,
        12,
        24,
        48,
    ]
    assert bb.body.layers_3.blocks[1].window_size == (7, 7) and bb.body.layers_3.blocks[
        1
    ].shift_size == (3, 3)
    assert [tuple(getattr(bb, f"norm{i}").weight.shape) for i in (1, 2, 3)] == [
        (384,),
        (768,),
        (1536,),
    ]


@pytest.fixture(scope="module")
def small_backbone():
    return _small()


@pytest.mark.parametrize("size", [(100, 130), (224, 224), (37, 61)])
def test_any_input_size_strides_and_channels(small_backbone, size):
    bb = small_backbone
    h, w = size
    with torch.no_grad():
        out = bb(torch.randn(2, 3, h, w))
    assert list(out) == ["res3", "res4", "res5"]
    for name, spec in bb.output_shape().items():
        oh, ow = -(-h // 4), -(-w // 4)  # mmdet: ceil to the patch, then ceil-halve per merge
        for _ in range((spec.stride // 4).bit_length() - 1):  # one merge per doubling of the stride
            oh, ow = -(-oh // 2), -(-ow // 2)
        assert out[name].shape == (2, spec.channels, oh, ow), name
        assert torch.isfinite(out[name]).all()
    assert [s.channels for s in bb.output_shape().values()] == [64, 128, 256]


def test_output_norms_are_applied():
    bb = _small()
    x = torch.randn(1, 3, 100, 130)
    with torch.no_grad():
        out = bb(x)
        raw = bb.body(F.pad(x, (0, 2, 0, 0)))  # 130 -> 132 (patch 4); timm returns NHWC
        for i, (name, r) in enumerate(zip(["res3", "res4", "res5"], raw), start=1):
            # fresh norms (1, 0): zero mean / unit variance over channels at every position
            assert out[name].mean(1).abs().max() < 1e-4
            torch.testing.assert_close(
                out[name].var(1, unbiased=False),
                torch.ones_like(out[name][:, 0]),
                atol=1e-3,
                rtol=0,
            )
            norm = getattr(bb, f"norm{i}")
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.normal_()
            ref = F.layer_norm(r, (r.shape[-1],), norm.weight, norm.bias, eps=1e-5).permute(
                0, 3, 1, 2
            )
            torch.testing.assert_close(bb(x)[name], ref)
            assert not torch.allclose(r.permute(0, 3, 1, 2), ref)


def test_window_attention_pads_before_the_shift_like_mmdet(small_backbone):
    """mmdet pads each map to a multiple of the window and THEN rolls it; timm 1.0 rolls, then pads."""
    bb = small_backbone
    block = bb.body.layers_1.blocks[1]  # a shifted block
    assert block.shift_size == (3, 3)
    timm_attn = type(block)._attn.__get__(block)
    x = torch.randn(2, 10, 12, block.dim)
    with torch.no_grad():
        ours = block._attn(x)
        ref = timm_attn(F.pad(x, (0, 0, 0, 2, 0, 4)))[
            :, :10, :12
        ]  # pre-padded: timm's own order is mmdet's
        torch.testing.assert_close(ours, ref)
        assert not torch.allclose(ours, timm_attn(x), atol=1e-4)  # the orders really differ here
        x = torch.randn(1, 14, 7, block.dim)  # window multiples: identical to timm's own path
        torch.testing.assert_close(block._attn(x), timm_attn(x))


def _swin_cfg(**swin):
    from detectron2.config import get_cfg

    from pavenet.config import add_pavenet_config

    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs" / "posetrack17" / "pavenet_swinl_3f_pt17.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    for k, v in swin.items():
        cfg.MODEL.PAVENET.SWIN[k] = v
    return cfg


def test_official_swin_checkpoint_loads_strictly_into_pavenet():
    """A fake official Swin-L PAVE-Net (F=3) converts and loads strictly into the model built from the
    Swin-L config (depths shortened to 1 per stage for speed; widths, heads and window are Swin-L's)."""
    from detectron2.modeling import build_model
    from test_convert_official import fake_state_dict, mmdet_swin_keys, read_keys

    import pavenet.modeling  # noqa: F401  (registers PAVENet)
    from pavenet.conversion.official import convert_official_state_dict_with_report
    from pavenet.conversion.swin import swin_merge_permutation

    from conftest import OFFICIAL_KEYS

    if not OFFICIAL_KEYS.is_file():
        pytest.skip(f"official key list not found at {OFFICIAL_KEYS} (set PAVENET_SHARED_DIR)")
    depths = (1, 1, 1, 1)
    cfg = _swin_cfg(DEPTHS=list(depths), DROP_PATH_RATE=0.0)
    assert cfg.MODEL.BACKBONE.NAME == "build_pavenet_swin_backbone"
    torch.manual_seed(0)
    model = build_model(cfg).eval()

    neck_in = {
        "neck.convs.0.conv.weight": (256, 384, 1, 1),
        "neck.convs.1.conv.weight": (256, 768, 1, 1),
        "neck.convs.2.conv.weight": (256, 1536, 1, 1),
        "neck.extra_convs.0.conv.weight": (256, 1536, 3, 3),
    }
    keys = mmdet_swin_keys(embed=192, depths=depths, heads=(6, 12, 24, 48), window=7)
    keys += [
        (n, neck_in.get(n, s)) for n, s in read_keys(OFFICIAL_KEYS) if not n.startswith("backbone.")
    ]
    src = fake_state_dict(keys, seed=21)
    out, report = convert_official_state_dict_with_report(
        {"state_dict": src}, target_state_dict=model.state_dict()
    )
    result = model.load_state_dict(out, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert report.backbone == "swin"
    assert sum(k.endswith("relative_position_index") for k in report.ignored) == sum(depths)

    ours = model.state_dict()
    for i in (1, 2, 3):
        for p in ("weight", "bias"):
            assert torch.equal(ours[f"backbone.norm{i}.{p}"], src[f"backbone.norm{i}.{p}"])
    assert torch.equal(
        ours["backbone.body.layers_3.blocks.0.attn.qkv.weight"],
        src["backbone.stages.3.blocks.0.attn.w_msa.qkv.weight"],
    )
    assert torch.equal(
        ours["backbone.body.layers_2.downsample.reduction.weight"],
        src["backbone.stages.1.downsample.reduction.weight"][:, swin_merge_permutation(4 * 384)],
    )
    assert torch.equal(ours["neck.convs.2.conv.weight"], src["neck.convs.2.conv.weight"])
    # the loaded norms are the ones the forward uses
    x = torch.randn(1, 3, 100, 132)
    with torch.no_grad():
        feats = model.backbone(x)
        raw = model.backbone.body(x)[-1]
    assert [tuple(f.shape[1:]) for f in feats.values()] == [
        (384, 13, 17),
        (768, 7, 9),
        (1536, 4, 5),
    ]
    ref = F.layer_norm(
        raw, (1536,), src["backbone.norm3.weight"], src["backbone.norm3.bias"], eps=1e-5
    )
    torch.testing.assert_close(feats["res5"], ref.permute(0, 3, 1, 2))
