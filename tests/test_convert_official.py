"""Official checkpoint conversion without a model: renaming value for value, F=5, Swin-L,
PETR -> PAVE-Net with 17 -> 15 slicing, checkpoint reading/writing, the CLI, and error cases.

The fake official checkpoints are built from the official R50 F=3 key list (964 names and shapes)
with random values, so every assertion compares real tensors.
"""

import argparse
import json
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pavenet.apps.convert_official import main as cli_main
from pavenet.checkpoint_io import (
    CheckpointReadError,
    UnsafeCheckpointError,
    load_official_checkpoint,
    save_converted_checkpoint,
)
from pavenet.conversion.naming import detect_num_frames, rename_official_key
from pavenet.conversion.official import (
    convert_official_state_dict,
    convert_official_state_dict_with_report,
)
from pavenet.conversion.report import ConversionError
from pavenet.conversion.swin import swin_merge_permutation
from pavenet.conversion.swin import swin_target_layout as _swin_target_layout
from pavenet.data.keypoint_meta import COCO_TO_POSETRACK_INDICES

H, L = 8, 4  # heads, levels of the pose attention


def read_keys(path):
    keys = []
    for line in open(path):
        s = line.strip()
        if s and not s.startswith("#"):
            name, shape = s.split(None, 1)
            keys.append((name, tuple(json.loads(shape))))
    return keys


_POOL = 1 << 20


def fake_state_dict(keys, seed):
    """Random values for every (name, shape): windows of one random pool at random offsets (fast, and
    two tensors of the same shape still differ), int64 counters for num_batches_tracked."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(_POOL, generator=g)
    offsets = torch.randint(0, _POOL, (len(keys),), generator=g).tolist()
    sd = OrderedDict()
    for (name, shape), off in zip(keys, offsets):
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(7, dtype=torch.int64)
            continue
        n = int(np.prod(shape)) if shape else 1
        reps = (off + n) // _POOL + 1
        flat = (pool.repeat(reps) if reps > 1 else pool)[off : off + n]
        sd[name] = flat.clone().reshape(shape)
    return sd


def expected_name(k):
    """The renaming of docs/REFERENCE.md §13 / the naming contract, written independently of the converter."""
    if k.startswith("bbox_head."):
        return "head." + k[len("bbox_head.") :]
    if k.startswith("neck."):
        return k
    parts = k.split(".")
    if parts[1] == "conv1":
        return "backbone.stem.conv1." + parts[2]
    if parts[1] == "bn1":
        return "backbone.stem.conv1.norm." + parts[2]
    stage, block, mod = "res%d" % (int(parts[1][len("layer") :]) + 1), parts[2], parts[3]
    if mod == "downsample":
        sub = "shortcut" if parts[4] == "0" else "shortcut.norm"
    elif mod.startswith("bn"):
        sub = "conv%s.norm" % mod[2:]
    else:
        sub = mod
    return f"backbone.{stage}.{block}.{sub}.{parts[-1]}"


_JOINT_OFFSET_BIAS = re.compile(
    r"^(bbox_head\.transformer\.refine_decoder\.layers\.\d+\.attentions\.\d+\.)"
    r"(pre_pre_|pre_|next_next_|next_)?sampling_offsets\.bias$"
)


def expected_value(sd, k, num_frames=3):
    """The value the official model holds for `k` after loading `sd`: its joint attention gives every
    frame's sampling_offsets.bias one storage, so the last frame's tensor (in load order) wins."""
    m = _JOINT_OFFSET_BIAS.match(k)
    if not m:
        return sd[k]
    last = {3: "next_", 5: "next_next_"}[num_frames]
    return sd[m.group(1) + last + "sampling_offsets.bias"]


def f5_keys(keys):
    """F=5 key list: add pre_pre_/next_next_ variants of every per-frame tensor (docs/REFERENCE.md §13)."""
    out = []
    for name, shape in keys:
        out.append((name, shape))
        for aux, new in (("pre_", "pre_pre_"), ("next_", "next_next_")):
            m = re.match(
                rf"^(.*\.attentions\.1\.){aux}((?:sampling_offsets|attention_weights)\..*)$", name
            )
            if m:
                out.append((m.group(1) + new + m.group(2), shape))
            m = re.match(rf"^bbox_head\.{aux}((?:refine_)?kpt_branches\..*)$", name)
            if m:
                out.append(("bbox_head." + new + m.group(1), shape))
    return out


PETR_ABSENT = re.compile(
    r"(\.attentions\.1\.(pre_|next_)|bbox_head\.(pre_|next_)|sigma_branches|_flow\.|bbox_head\.flow\.)"
)


def petr_keys(keys, k=17):
    """A single-frame PETR (COCO, 17 joints) key list derived from the official PAVE-Net one (docs/REFERENCE.md §14)."""
    out = []
    for name, shape in keys:
        if PETR_ABSENT.search(name):
            continue
        if name in ("bbox_head.transformer.refine_query_embedding.weight",) or name.startswith(
            "bbox_head.fc_hm."
        ):
            shape = (k,) + shape[1:]
        elif re.match(r"^bbox_head\.kpt_branches\.\d+\.6\.", name):
            shape = (2 * k,) + shape[1:]
        elif re.match(
            r"^bbox_head\.transformer\.decoder\.layers\.\d+\.attentions\.1\.sampling_offsets\.",
            name,
        ):
            shape = (H * L * k * 2,) + shape[1:]
        elif re.match(
            r"^bbox_head\.transformer\.decoder\.layers\.\d+\.attentions\.1\.attention_weights\.",
            name,
        ):
            shape = (H * L * k,) + shape[1:]
        out.append((name, shape))
    # PETR's heatmap encoder (one deformable layer) lives in its transformer.
    for sub, shape in (
        ("attentions.0.sampling_offsets.weight", (256, 256)),
        ("attentions.0.value_proj.bias", (256,)),
        ("norms.0.weight", (256,)),
    ):
        out.append(("bbox_head.transformer.hm_encoder.layers.0." + sub, shape))
    return out


@pytest.fixture(scope="module")
def official_keys():
    from conftest import OFFICIAL_KEYS

    if not OFFICIAL_KEYS.is_file():
        pytest.skip(f"official key list not found at {OFFICIAL_KEYS} (set PAVENET_SHARED_DIR)")
    keys = read_keys(OFFICIAL_KEYS)
    assert len(keys) == 964
    return keys


@pytest.fixture(scope="module")
def official_sd(official_keys):
    return fake_state_dict(official_keys, seed=1)


@pytest.fixture(scope="module")
def converted(official_sd):
    return convert_official_state_dict_with_report(
        {"state_dict": official_sd, "meta": {"epoch": 20}}
    )


# ---------------------------------------------------------------------------------------------
def test_r50_f3_value_for_value(official_sd, converted):
    out, report = converted
    dropped = [k for k in official_sd if k.endswith("num_batches_tracked")]
    assert len(dropped) == 53
    assert set(report.ignored) == set(dropped)
    assert len(out) == 964 - 53
    for k, v in official_sd.items():
        if k in dropped:
            continue
        new = expected_name(k)
        assert new in out, (k, new)
        assert out[new].dtype == v.dtype and torch.equal(
            out[new], expected_value(official_sd, k)
        ), k
    # the tie is the only place where values move, and only for the joint-attention offset biases
    jb = "bbox_head.transformer.refine_decoder.layers.1.attentions.1.{}sampling_offsets.bias"
    assert not torch.equal(official_sd[jb.format("pre_")], official_sd[jb.format("next_")])
    assert all(
        torch.equal(out[expected_name(jb.format(p))], official_sd[jb.format("next_")])
        for p in ("pre_", "", "next_")
    )
    assert len(report.tied) == 2 and all(d for _, _, d in report.tied)
    untied = convert_official_state_dict(official_sd, tie_joint_offset_bias=False)
    assert torch.equal(untied[expected_name(jb.format("pre_"))], official_sd[jb.format("pre_")])
    # spot checks against the naming contract's examples
    assert torch.equal(
        out["backbone.stem.conv1.norm.running_var"], official_sd["backbone.bn1.running_var"]
    )
    assert torch.equal(
        out["backbone.res2.0.shortcut.norm.weight"],
        official_sd["backbone.layer1.0.downsample.1.weight"],
    )
    assert torch.equal(
        out["backbone.res5.2.conv3.norm.bias"], official_sd["backbone.layer4.2.bn3.bias"]
    )
    assert torch.equal(
        out["head.fc_hm.weight"], official_sd["bbox_head.fc_hm.weight"]
    )  # kept, not ignored
    assert torch.equal(out["head.enc_flow.mask"], official_sd["bbox_head.enc_flow.mask"])
    assert report.num_frames == 3 and report.backbone == "resnet"


def test_module_prefix_and_plain_dict(official_sd, converted):
    wrapped = OrderedDict(("module." + k, v) for k, v in official_sd.items())
    out = convert_official_state_dict(wrapped)
    assert list(out) == list(converted[0])


def test_f5_value_for_value(official_keys):
    keys5 = f5_keys(official_keys)
    assert len(keys5) > 964
    sd5 = fake_state_dict(keys5, seed=2)
    assert detect_num_frames(sd5) == 5
    out = convert_official_state_dict({"state_dict": sd5}, num_frames=5)
    for k, v in sd5.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(out[expected_name(k)], expected_value(sd5, k, num_frames=5)), k
    assert "head.transformer.decoder.layers.2.attentions.1.next_next_sampling_offsets.weight" in out
    assert "head.pre_pre_refine_kpt_branches.1.4.bias" in out
    with pytest.raises(ConversionError, match="5-frame"):
        convert_official_state_dict(sd5, num_frames=3)


def test_f3_checkpoint_for_f5_model_fails(official_sd):
    with pytest.raises(ConversionError, match=r"3-frame.*num_frames=5"):
        convert_official_state_dict(official_sd, num_frames=5)


# ---------------------------------------------------------------------------------------------
def _fresh_model_sd(converted_out, seed=3):
    """Stand-in for a freshly built PAVE-Net state dict (names/shapes of the real one, new values)."""
    g = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
        for k, v in converted_out.items()
    )


def test_petr_to_pavenet_with_17_to_15_slicing(official_keys, converted):
    src = fake_state_dict(petr_keys(official_keys), seed=4)
    fresh = _fresh_model_sd(converted[0])
    out, report = convert_official_state_dict_with_report(
        {"state_dict": src},
        arch="petr",
        num_frames=3,
        coco_to_posetrack=True,
        target_state_dict=fresh,
        init_state_dict=fresh,
    )
    assert set(out) == set(fresh)
    assert all(out[k].shape == fresh[k].shape for k in out)
    idx = list(COCO_TO_POSETRACK_INDICES)
    assert idx == [0, 1, 2] + list(range(5, 17))
    # pose-attention offsets, layout (H, L, K, 2) along dim 0: PoseTrack joint 3 (left shoulder) = COCO joint 5
    so = "transformer.decoder.layers.1.attentions.1.sampling_offsets."
    w_src, w_out = src["bbox_head." + so + "weight"], out["head." + so + "weight"]
    assert w_out.shape == (H * L * 15 * 2, 256)
    for h, l_, k_pt, k_coco in ((0, 0, 3, 5), (2, 1, 0, 0), (7, 3, 14, 16), (5, 2, 2, 2)):
        hl = h * L + l_
        assert torch.equal(
            w_out[(hl * 15 + k_pt) * 2 : (hl * 15 + k_pt) * 2 + 2],
            w_src[(hl * 17 + k_coco) * 2 : (hl * 17 + k_coco) * 2 + 2],
        )
    assert torch.equal(w_out[6:8], w_src[10:12])  # h=0, l=0, joint 3 <- COCO 5, explicit rows
    b_src, b_out = src["bbox_head." + so + "bias"], out["head." + so + "bias"]
    assert torch.equal(b_out.view(H * L, 15, 2), b_src.view(H * L, 17, 2)[:, idx])
    aw = "transformer.decoder.layers.0.attentions.1.attention_weights.weight"
    assert torch.equal(
        out["head." + aw].view(H * L, 15, 256)[:, 3],
        src["bbox_head." + aw].view(H * L, 17, 256)[:, 5],
    )
    assert torch.equal(
        out["head." + aw][15 + 4], src["bbox_head." + aw][17 + 6]
    )  # (h0, l1): joint 4 <- COCO 6
    # key-frame keypoint MLP output (K, 2) and the joint queries / heatmap rows
    kb_src, kb_out = src["bbox_head.kpt_branches.3.6.weight"], out["head.kpt_branches.3.6.weight"]
    assert torch.equal(kb_out[:6], kb_src[:6]) and torch.equal(kb_out[6:], kb_src[10:])
    rq_src = src["bbox_head.transformer.refine_query_embedding.weight"]
    assert torch.equal(out["head.transformer.refine_query_embedding.weight"], rq_src[idx])
    assert torch.equal(out["head.fc_hm.bias"], src["bbox_head.fc_hm.bias"][idx])
    # joint-attention offsets are per point, not per joint: copied whole
    jso = "transformer.refine_decoder.layers.0.attentions.1.sampling_offsets.weight"
    assert torch.equal(out["head." + jso], src["bbox_head." + jso])
    assert torch.equal(
        out["head.transformer.encoder.layers.4.ffns.0.layers.1.weight"],
        src["bbox_head.transformer.encoder.layers.4.ffns.0.layers.1.weight"],
    )
    assert torch.equal(
        out["backbone.res4.5.conv2.norm.running_mean"], src["backbone.layer3.5.bn2.running_mean"]
    )
    # parameters PETR lacks keep the fresh model's constructor init
    for k in (
        "head.transformer.decoder.layers.2.attentions.1.pre_sampling_offsets.weight",
        "head.transformer.refine_decoder.layers.1.attentions.1.next_attention_weights.bias",
        "head.pre_kpt_branches.0.6.weight",
        "head.next_refine_kpt_branches.1.4.bias",
        "head.dec_fc_sigma_branches.3.2.linear.weight",
        "head.refine_fc_sigma_branches.0.0.weight",
        "head.enc_flow.s.0.0.weight",
        "head.flow.mask",
    ):
        assert k in report.initialised and torch.equal(out[k], fresh[k]), k
    assert not any(k.startswith("head.kpt_branches") for k in report.initialised)
    assert sum("hm_encoder" in k for k in report.ignored) == 3
    assert report.num_keypoints_src == 17 and report.num_keypoints_dst == 15


def test_petr_needs_fresh_init_and_rejects_unknown_missing(official_keys, converted):
    src = fake_state_dict(petr_keys(official_keys), seed=5)
    with pytest.raises(ConversionError, match="init_state_dict"):
        convert_official_state_dict(src, arch="petr", coco_to_posetrack=True)
    fresh = _fresh_model_sd(converted[0])
    del src["bbox_head.cls_branches.1.bias"]  # a key-frame tensor PETR must provide
    with pytest.raises(ConversionError, match=r"not in the checkpoint.*cls_branches\.1\.bias"):
        convert_official_state_dict(
            src, arch="petr", coco_to_posetrack=True, target_state_dict=fresh, init_state_dict=fresh
        )


def test_petr_without_slicing_gives_a_hint(official_keys, converted):
    src = fake_state_dict(petr_keys(official_keys), seed=6)
    fresh = _fresh_model_sd(converted[0])
    with pytest.raises(ConversionError, match="coco-to-posetrack"):
        convert_official_state_dict(
            src, arch="petr", target_state_dict=fresh, init_state_dict=fresh
        )


# ---------------------------------------------------------------------------------------------
def test_wrong_architecture_errors(official_keys, official_sd):
    petr = fake_state_dict(
        petr_keys(official_keys)[:40]
        + [
            (
                "bbox_head.transformer.decoder.layers.0.attentions.1.sampling_offsets.weight",
                (1088, 256),
            ),
            ("bbox_head.transformer.refine_query_embedding.weight", (17, 512)),
        ],
        seed=7,
    )
    with pytest.raises(ConversionError, match="PETR.*--arch petr"):
        convert_official_state_dict(petr, arch="pavenet")
    with pytest.raises(ConversionError, match="3-frame PAVE-Net.*arch='pavenet'"):
        convert_official_state_dict(official_sd, arch="petr")
    backbone_only = OrderedDict((k, v) for k, v in official_sd.items() if k.startswith("backbone."))
    with pytest.raises(ConversionError, match="bbox_head"):
        convert_official_state_dict(backbone_only)
    with pytest.raises(ConversionError, match="converted already"):
        convert_official_state_dict({"model": {"backbone.stem.conv1.weight": torch.zeros(1)}})
    with pytest.raises(ConversionError, match="17-joint"):
        convert_official_state_dict(official_sd, coco_to_posetrack=True)


def test_unmapped_source_tensor_fails(official_sd):
    sd = OrderedDict(official_sd)
    sd["roi_head.fc.weight"] = torch.zeros(2, 2)
    sd["backbone.layer1.0.se.fc.weight"] = torch.zeros(2, 2)
    with pytest.raises(ConversionError, match=r"2 source tensors.*roi_head\.fc\.weight"):
        convert_official_state_dict(sd)
    out = convert_official_state_dict(sd, extra_ignore=[r"^roi_head\.", r"\.se\."])
    assert "roi_head.fc.weight" not in out


def test_target_check_reports_missing_unexpected_and_shapes(official_sd, converted):
    out = converted[0]
    target = OrderedDict(out)
    target["head.extra.weight"] = torch.zeros(3)
    with pytest.raises(
        ConversionError, match=r"1 model tensors are not in the checkpoint.*head\.extra\.weight"
    ):
        convert_official_state_dict(official_sd, target_state_dict=target)
    target = OrderedDict((k, v) for k, v in out.items() if k != "head.fc_hm.bias")
    with pytest.raises(
        ConversionError, match=r"1 checkpoint tensors are not in the model.*fc_hm\.bias"
    ):
        convert_official_state_dict(official_sd, target_state_dict=target)
    target = OrderedDict(out)
    target["head.cls_branches.0.weight"] = torch.zeros(2, 256)
    with pytest.raises(
        ConversionError, match=r"1 tensors differ in shape.*cls_branches\.0\.weight"
    ):
        convert_official_state_dict(official_sd, target_state_dict=target)
    target = OrderedDict((k, v) for k, v in out.items() if "pre_" not in k and "next_" not in k)
    with pytest.raises(ConversionError, match="NUM_FRAMES"):
        convert_official_state_dict(official_sd, target_state_dict=target)
    ok = convert_official_state_dict(official_sd, target_state_dict=OrderedDict(out))
    assert list(ok) == list(out)


# ---------------------------------------------------------------------------------------------
SWIN_L = dict(embed=192, depths=(2, 2, 18, 2), heads=(6, 12, 24, 48), window=7)


def mmdet_swin_keys(embed, depths, heads, window):
    """mmdet SwinTransformer (out_indices (1,2,3)) state_dict names and shapes."""
    e, w2, keys = embed, window * window, []
    keys += [
        ("backbone.patch_embed.projection.weight", (e, 3, 4, 4)),
        ("backbone.patch_embed.projection.bias", (e,)),
        ("backbone.patch_embed.norm.weight", (e,)),
        ("backbone.patch_embed.norm.bias", (e,)),
    ]
    for s, (depth, nh) in enumerate(zip(depths, heads)):
        d = e * 2**s
        for j in range(depth):
            p = f"backbone.stages.{s}.blocks.{j}."
            keys += [
                (p + "norm1.weight", (d,)),
                (p + "norm1.bias", (d,)),
                (p + "attn.w_msa.relative_position_bias_table", ((2 * window - 1) ** 2, nh)),
                (p + "attn.w_msa.relative_position_index", (w2, w2)),
                (p + "attn.w_msa.qkv.weight", (3 * d, d)),
                (p + "attn.w_msa.qkv.bias", (3 * d,)),
                (p + "attn.w_msa.proj.weight", (d, d)),
                (p + "attn.w_msa.proj.bias", (d,)),
                (p + "norm2.weight", (d,)),
                (p + "norm2.bias", (d,)),
                (p + "ffn.layers.0.0.weight", (4 * d, d)),
                (p + "ffn.layers.0.0.bias", (4 * d,)),
                (p + "ffn.layers.1.weight", (d, 4 * d)),
                (p + "ffn.layers.1.bias", (d,)),
            ]
        if s < len(depths) - 1:
            p = f"backbone.stages.{s}.downsample."
            keys += [
                (p + "norm.weight", (4 * d,)),
                (p + "norm.bias", (4 * d,)),
                (p + "reduction.weight", (2 * d, 4 * d)),
            ]
    for i in (1, 2, 3):
        keys += [(f"backbone.norm{i}.weight", (e * 2**i,)), (f"backbone.norm{i}.bias", (e * 2**i,))]
    return keys


def swin_l_keys():
    return mmdet_swin_keys(**SWIN_L)


def test_swin_l_renaming(official_keys):
    neck_in = {
        "neck.convs.0.conv.weight": (256, 384, 1, 1),
        "neck.convs.1.conv.weight": (256, 768, 1, 1),
        "neck.convs.2.conv.weight": (256, 1536, 1, 1),
        "neck.extra_convs.0.conv.weight": (256, 1536, 3, 3),
    }
    keys = swin_l_keys() + [
        (n, neck_in.get(n, s)) for n, s in official_keys if not n.startswith("backbone.")
    ]
    sd = fake_state_dict(keys, seed=8)
    out, report = convert_official_state_dict_with_report(sd, target_state_dict=None)
    out = OrderedDict(
        (
            k.replace("backbone.body.layers_", "backbone.layers.").replace(
                "backbone.body.", "backbone."
            ),
            v,
        )
        for k, v in out.items()
    )  # default layout = our TimmSwinBackbone; compare in timm's own names
    assert report.backbone == "swin"
    p = "backbone.stages.2.blocks.17."
    assert torch.equal(
        out["backbone.layers.2.blocks.17.attn.qkv.weight"], sd[p + "attn.w_msa.qkv.weight"]
    )
    assert torch.equal(out["backbone.layers.2.blocks.17.mlp.fc2.bias"], sd[p + "ffn.layers.1.bias"])
    assert torch.equal(
        out["backbone.layers.2.blocks.17.attn.relative_position_bias_table"],
        sd[p + "attn.w_msa.relative_position_bias_table"],
    )
    assert torch.equal(
        out["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.projection.weight"]
    )
    assert torch.equal(out["backbone.norm3.weight"], sd["backbone.norm3.weight"])
    assert torch.equal(out["neck.convs.2.conv.weight"], sd["neck.convs.2.conv.weight"])
    # merging moves from the end of stage s (mmdet) to the start of stage s+1 (timm), reordered
    perm = swin_merge_permutation(4 * 384)
    assert torch.equal(
        out["backbone.layers.2.downsample.reduction.weight"],
        sd["backbone.stages.1.downsample.reduction.weight"][:, perm],
    )
    perm = swin_merge_permutation(4 * 768)
    assert torch.equal(
        out["backbone.layers.3.downsample.norm.bias"],
        sd["backbone.stages.2.downsample.norm.bias"][perm],
    )
    assert not any(k.startswith("backbone.layers.0.downsample") for k in out)
    n_mapped_backbone = sum(k.startswith("backbone.") for k in report.mapped)
    assert n_mapped_backbone == len(swin_l_keys())  # no target given: index buffers are kept too
    # with a target that lacks the (non-persistent in timm) index buffers they are ignored, not errors;
    # the layout (timm's classifier names here) is read off the target
    target = OrderedDict(
        (k, v) for k, v in out.items() if not k.endswith("relative_position_index")
    )
    out2, report2 = convert_official_state_dict_with_report(sd, target_state_dict=target)
    assert set(out2) == set(target)
    assert sum(k.endswith("relative_position_index") for k in report2.ignored) == sum(
        SWIN_L["depths"]
    )


def test_swin_merge_permutation_is_functional():
    """mmdet's Unfold-based merge with mmdet weights == timm's reshape-based merge with converted weights."""
    g = torch.Generator().manual_seed(9)
    B, Hh, Ww, C = 2, 6, 4, 5
    x = torch.randn(B, Hh, Ww, C, generator=g)
    w = torch.randn(2 * C, 4 * C, generator=g)
    gamma, beta = torch.randn(4 * C, generator=g), torch.randn(4 * C, generator=g)
    # mmdet: nn.Unfold(kernel 2, stride 2) on (B, C, H, W) -> (B, C*4, L), feature index c*4 + dy*2 + dx
    mm = torch.nn.functional.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).transpose(1, 2)
    y_mm = torch.nn.functional.layer_norm(mm, (4 * C,), gamma, beta) @ w.t()
    # timm / original Swin: cat of x0=(0,0), x1=(1,0), x2=(0,1), x3=(1,1) as (dy, dx)
    tm = torch.cat(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1
    ).reshape(B, -1, 4 * C)
    p = swin_merge_permutation(4 * C)
    y_tm = torch.nn.functional.layer_norm(tm, (4 * C,), gamma[p], beta[p]) @ w[:, p].t()
    torch.testing.assert_close(y_tm, y_mm, rtol=1e-5, atol=1e-5)


def test_swin_target_layout_is_read_off_the_model(official_keys):
    """timm features_only names stages layers_N; output norms may live anywhere, indexed from 0."""
    sd = fake_state_dict(
        swin_l_keys()[:60]
        + [(n, s) for n, s in swin_l_keys() if n.startswith("backbone.norm")]
        + [
            (n, s)
            for n, s in official_keys
            if n.startswith("bbox_head.transformer.decoder.layers.0.")
            or n == "bbox_head.transformer.refine_query_embedding.weight"
        ],
        seed=10,
    )
    plain = convert_official_state_dict(sd)  # default layout: our TimmSwinBackbone (body.layers_N)
    assert torch.equal(
        plain["backbone.body.layers_1.blocks.0.attn.qkv.bias"],
        sd["backbone.stages.1.blocks.0.attn.w_msa.qkv.bias"],
    )
    target = (
        OrderedDict()
    )  # another layout: timm's classifier names under `swin.`, norms indexed from 0
    for k, v in plain.items():
        m = re.match(r"^backbone\.norm(\d)\.(.+)$", k)
        if m:
            target[f"backbone.out_norms.{int(m.group(1)) - 1}.{m.group(2)}"] = v
        elif k.startswith("backbone.body."):
            target[
                "backbone.swin."
                + re.sub(r"^layers_(\d+)", r"layers.\1", k[len("backbone.body.") :])
            ] = v
        else:
            target[k] = v
    out = convert_official_state_dict(sd, target_state_dict=target)
    assert set(out) == set(target)
    assert torch.equal(out["backbone.out_norms.0.weight"], sd["backbone.norm1.weight"])
    assert torch.equal(out["backbone.out_norms.2.bias"], sd["backbone.norm3.bias"])
    assert torch.equal(
        out["backbone.swin.layers.1.blocks.0.attn.qkv.bias"],
        sd["backbone.stages.1.blocks.0.attn.w_msa.qkv.bias"],
    )
    # a Swin target without output norms is a clear error (the official model normalises each output)
    target = OrderedDict((k, v) for k, v in target.items() if "out_norms" not in k)
    with pytest.raises(ConversionError, match="no output LayerNorms"):
        convert_official_state_dict(sd, target_state_dict=target)


def test_swin_names_match_timm_if_available():
    """Every tensor of timm's features_only Swin (what our backbone wraps) is named by the renaming, with its shape."""
    timm = pytest.importorskip("timm")
    cfg = dict(embed=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7)
    body = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, features_only=True, out_indices=(1, 2, 3)
    )
    tgt = {"backbone.body." + k: v for k, v in body.state_dict().items()}
    for i, c in zip((1, 2, 3), body.feature_info.channels()):
        tgt[f"backbone.norm{i}.weight"], tgt[f"backbone.norm{i}.bias"] = (
            torch.ones(c),
            torch.zeros(c),
        )
    layout = _swin_target_layout(tgt, [1, 2, 3])
    assert layout.prefix == "backbone.body." and layout.stage_format == "layers_{s}"
    mapped = {}
    for n, shape in mmdet_swin_keys(**cfg):
        new = rename_official_key(n, backbone="swin", swin=layout)
        assert new is not None, n
        mapped[new] = shape
    optional = {
        k for k in mapped if k.endswith("relative_position_index")
    }  # non-persistent in timm
    assert set(tgt) - set(mapped) == set()
    assert set(mapped) - set(tgt) <= optional
    assert all(tuple(tgt[k].shape) == mapped[k] for k in tgt)


# ---------------------------------------------------------------------------------------------
def test_checkpoint_io_roundtrip_truncation_and_pickle(tmp_path, converted):
    out = converted[0]
    dst = tmp_path / "sub" / "ours.pth"
    save_converted_checkpoint(out, str(dst))
    loaded = torch.load(dst, map_location="cpu", weights_only=True)
    assert list(loaded) == ["model"] and list(loaded["model"]) == list(out)
    assert torch.equal(
        loaded["model"]["head.kpt_branches.3.6.weight"], out["head.kpt_branches.3.6.weight"]
    )
    assert not [p for p in dst.parent.iterdir() if p.name != "ours.pth"]  # no temp file left behind

    small = OrderedDict((k, v) for k, v in list(out.items())[:20])
    src = tmp_path / "official.pth"
    torch.save(
        {"state_dict": small, "meta": {"epoch": 3, "hook_msgs": {"best_score": np.float64(0.77)}}},
        src,
    )
    ck = load_official_checkpoint(str(src))  # numpy scalars in meta load without a full unpickle
    assert torch.equal(
        ck["state_dict"]["backbone.stem.conv1.weight"], small["backbone.stem.conv1.weight"]
    )

    data = src.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match="truncated"):
        load_official_checkpoint(str(cut))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointReadError, match="empty"):
        load_official_checkpoint(str(tmp_path / "empty.pth"))
    with pytest.raises(CheckpointReadError, match="not found"):
        load_official_checkpoint(str(tmp_path / "nope.pth"))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": small, "meta": {"config": argparse.Namespace(lr=2e-5)}}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match="--allow-pickle"):
        load_official_checkpoint(str(unsafe))
    ck = load_official_checkpoint(str(unsafe), allow_pickle=True)
    assert ck["meta"]["config"].lr == 2e-5


def test_cli_no_verify_and_errors(tmp_path, official_sd, converted, capsys):
    src = tmp_path / "pavenet_r50.pth"
    torch.save({"state_dict": official_sd, "meta": {"epoch": 20}}, src)
    dst = tmp_path / "ours.pth"
    assert cli_main(["--src", str(src), "--dst", str(dst), "--no-verify"]) == 0
    loaded = torch.load(dst, map_location="cpu", weights_only=True)["model"]
    assert list(loaded) == list(converted[0])
    assert torch.equal(
        loaded["backbone.res3.3.conv3.weight"], official_sd["backbone.layer2.3.conv3.weight"]
    )

    assert (
        cli_main(
            [
                "--src",
                str(src),
                "--dst",
                str(tmp_path / "x.pth"),
                "--num-frames",
                "5",
                "--no-verify",
            ]
        )
        == 2
    )
    assert "num_frames=5" in capsys.readouterr().err
    assert (
        cli_main(
            ["--src", str(src), "--dst", str(tmp_path / "x.pth"), "--arch", "petr", "--no-verify"]
        )
        == 2
    )
    assert "petr" in capsys.readouterr().err
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src.read_bytes()[:100000])
    assert cli_main(["--src", str(cut), "--dst", str(tmp_path / "x.pth"), "--no-verify"]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_cli_names_a_bad_target_config(tmp_path, official_sd, capsys):
    torch.save({"state_dict": official_sd}, tmp_path / "official.pth")
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  PAVENET:\n    NOT_A_KEY: 1\n")
    for cfg_file, needle in (
        (str(bad), "NOT_A_KEY"),
        (str(tmp_path / "missing.yaml"), "not found"),
    ):
        rc = cli_main(
            [
                "--src",
                str(tmp_path / "official.pth"),
                "--dst",
                str(tmp_path / "out.pth"),
                "--config-file",
                cfg_file,
            ]
        )
        err = capsys.readouterr().err
        assert rc == 2 and cfg_file in err and needle in err, err
    assert not (tmp_path / "out.pth").exists()
