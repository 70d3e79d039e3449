"""Converted official checkpoints load strictly into our PAVENet (no missing / unexpected keys).

The full R50 F=3 model is built once (module fixture); F=5 and PETR -> PAVE-Net are checked
against the head alone, since only the head depends on F and on PETR.
"""

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from test_convert_official import (
    expected_name,
    expected_value,
    f5_keys,
    fake_state_dict,
    petr_keys,
    read_keys,
)

from pavenet.apps.convert_official import main as cli_main
from pavenet.conversion.official import (
    convert_official_state_dict,
    convert_official_state_dict_with_report,
)

REPO = Path(__file__).resolve().parents[1]


def _r50_cfg():
    from detectron2.config import get_cfg

    from pavenet.config import add_pavenet_config

    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs" / "posetrack17" / "pavenet_r50_3f_pt17.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg


@pytest.fixture(scope="module")
def official_keys():
    from conftest import OFFICIAL_KEYS

    if not OFFICIAL_KEYS.is_file():
        pytest.skip(f"official key list not found at {OFFICIAL_KEYS} (set PAVENET_SHARED_DIR)")
    return read_keys(OFFICIAL_KEYS)


@pytest.fixture(scope="module")
def r50_model():
    from detectron2.modeling import build_model

    import pavenet.modeling  # noqa: F401  (registers PAVENet)

    torch.manual_seed(0)
    return build_model(_r50_cfg()).eval()


def _head(num_frames, num_keypoints=15):
    from pavenet.modeling.head import PAVENetHead
    from pavenet.modeling.rle import RealNVP

    torch.manual_seed(0)
    return PAVENetHead(num_frames=num_frames, num_keypoints=num_keypoints, flow_factory=RealNVP)


def _head_part(sd):
    return OrderedDict((k[len("head.") :], v) for k, v in sd.items() if k.startswith("head."))


def test_official_r50_f3_loads_strictly_value_for_value(official_keys, r50_model):
    src = fake_state_dict(official_keys, seed=11)
    out = convert_official_state_dict({"state_dict": src}, target_state_dict=r50_model.state_dict())
    result = r50_model.load_state_dict(out, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours = r50_model.state_dict()
    for k, v in src.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(ours[expected_name(k)], expected_value(src, k)), k


def test_cli_output_loads_with_the_checkpointer(tmp_path, official_keys, r50_model, monkeypatch):
    """The CLI's file loads through MODEL.WEIGHTS' checkpointer with no missing/unexpected keys."""
    import detectron2.modeling

    from pavenet.checkpoint import PAVENetCheckpointer

    built = {}

    def fake_build_model(cfg):  # reuse the module's model; check what the CLI asked for
        built["cfg"] = cfg.clone()
        return r50_model

    monkeypatch.setattr(detectron2.modeling, "build_model", fake_build_model)
    src = fake_state_dict(official_keys, seed=12)
    torch.save(
        {"meta": {"epoch": 20, "CLASSES": ("person",)}, "state_dict": src},
        tmp_path / "official.pth",
    )
    dst = tmp_path / "pavenet_r50_d2.pth"
    assert cli_main(["--src", str(tmp_path / "official.pth"), "--dst", str(dst)]) == 0
    assert (
        built["cfg"].MODEL.PAVENET.NUM_FRAMES == 3
        and built["cfg"].MODEL.PAVENET.NUM_KEYPOINTS == 15
    )
    assert built["cfg"].MODEL.BACKBONE.NAME == "build_pavenet_resnet_backbone"

    # no missing / unexpected keys, no shape mismatches: the file holds exactly the model's tensors
    saved = torch.load(dst, map_location="cpu", weights_only=True)["model"]
    expected_shapes = {k: tuple(v.shape) for k, v in r50_model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in saved.items()} == expected_shapes

    # ... and MODEL.WEIGHTS' checkpointer loads every one of them (public `load` only: detectron2 main
    # refuses `_load_file` outside `load`)
    with torch.no_grad():
        for t in r50_model.state_dict().values():
            t.zero_()
    PAVENetCheckpointer(r50_model).load(str(dst))
    ours = r50_model.state_dict()
    for k, v in saved.items():
        assert torch.equal(ours[k], v), k
    for k in (
        "backbone.layer3.2.bn1.running_var",
        "bbox_head.transformer.decoder.layers.2.attentions.1.pre_sampling_offsets.weight",
        "bbox_head.dec_fc_sigma_branches.1.2.linear.bias",
        "neck.extra_convs.0.gn.weight",
    ):
        assert torch.equal(ours[expected_name(k)], src[k]), k


def test_official_f5_loads_into_an_f5_head(official_keys):
    src = fake_state_dict(f5_keys(official_keys), seed=13)
    head = _head(5)
    out = convert_official_state_dict(src, num_frames=5)
    result = head.load_state_dict(_head_part(out), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    key = "transformer.refine_decoder.layers.1.attentions.1.next_next_attention_weights.weight"
    assert torch.equal(head.state_dict()[key], src["bbox_head." + key])


def _ring(num_heads=8, num_levels=4, num_points=4):
    """Deformable-DETR offset-bias init, written out: head h along 2*pi*h/H scaled to max-abs 1, point j x (j+1)."""
    out = torch.zeros(num_heads, num_levels, num_points, 2)
    for h in range(num_heads):
        c, s = math.cos(2 * math.pi * h / num_heads), math.sin(2 * math.pi * h / num_heads)
        m = max(abs(c), abs(s))
        for j in range(num_points):
            out[h, :, j] = torch.tensor([c / m * (j + 1), s / m * (j + 1)])
    return out


def test_petr_to_pavenet_initialises_the_new_parts_as_spec7(official_keys, r50_model):
    src = fake_state_dict(petr_keys(official_keys, k=17), seed=14)
    # a freshly built model: constructor init of the head (the backbone/neck come from the checkpoint)
    fresh = OrderedDict(
        (k, v.clone()) for k, v in r50_model.state_dict().items() if not k.startswith("head.")
    )
    fresh.update(("head." + k, v.clone()) for k, v in _head(3).state_dict().items())
    out, report = convert_official_state_dict_with_report(
        src, arch="petr", coco_to_posetrack=True, init_state_dict=fresh, target_state_dict=fresh
    )
    result = r50_model.load_state_dict(out, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    head = r50_model.head
    sd = head.state_dict()
    for layer in range(
        3
    ):  # pose attention: zero offsets and weights -> sample on the reference, uniform weights
        for name in (
            "pre_sampling_offsets",
            "next_sampling_offsets",
            "pre_attention_weights",
            "next_attention_weights",
        ):
            for p in ("weight", "bias"):
                assert not sd[f"transformer.decoder.layers.{layer}.attentions.1.{name}.{p}"].any()
    for layer in range(2):  # joint attention: zero offset / weight linears for the new frames ...
        a = f"transformer.refine_decoder.layers.{layer}.attentions.1."
        for pre in ("pre_", "next_"):
            assert not sd[a + pre + "sampling_offsets.weight"].any()
            assert not sd[a + pre + "attention_weights.weight"].any()
            # ... and, as in the official model (one bias storage for all frames, PETR fills the key
            # frame's), every frame's offset bias is PETR's key-frame one, not the ring init
            assert torch.equal(
                sd[a + pre + "sampling_offsets.bias"], src[f"bbox_head.{a}sampling_offsets.bias"]
            )
        assert torch.equal(
            sd[a + "sampling_offsets.bias"], src[f"bbox_head.{a}sampling_offsets.bias"]
        )
    # the fresh model's tied joint bias starts as the ring pattern, identical for all frames (docs/REFERENCE.md §6)
    fresh_head = _head(3).state_dict()
    for pre in ("pre_", "", "next_"):
        torch.testing.assert_close(
            fresh_head[
                f"transformer.refine_decoder.layers.0.attentions.1.{pre}sampling_offsets.bias"
            ].view(8, 4, 4, 2),
            _ring(),
        )
    # key-frame pose offsets: PETR's rows of the 15 kept joints (left shoulder = COCO 5)
    so = "transformer.decoder.layers.0.attentions.1.sampling_offsets.weight"
    assert torch.equal(
        sd[so].view(32, 15, 2, 256)[:, 3], src["bbox_head." + so].view(32, 17, 2, 256)[:, 5]
    )
    assert len(report.initialised) > 0 and all(k in fresh for k in report.initialised)
