"""The ResNet stem's CPU max-pool (`ChannelsLastPoolStem`) gives exactly detectron2's `BasicStem` numbers:
forward, input and weight gradients, with the ties that ReLU zeros create, with and without autograd; and the
ResNet builders construct it, with detectron2's parameter names."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import BasicStem

import pavenet.modeling  # noqa: F401  (fills the registries)
from pavenet.config import load_pavenet_config
from pavenet.modeling.backbone import ChannelsLastPoolStem, build_pavenet_resnet_backbone

from conftest import REPO_ROOT


def _pair(norm="BN"):
    torch.manual_seed(0)
    plain = BasicStem(in_channels=3, out_channels=8, norm=norm)
    fast = ChannelsLastPoolStem(in_channels=3, out_channels=8, norm=norm)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_training_forward_and_gradients_are_bit_identical(norm):
    plain, fast = _pair(norm)
    # Integer-valued inputs and a bias-free conv make many equal values and, after ReLU, runs of zeros: the
    # max-pool's tie-breaking decides which input gets each gradient.
    x = torch.randint(-2, 3, (2, 3, 37, 50)).float()
    grads = []
    for stem in (plain, fast):
        stem.train()
        xi = x.clone().requires_grad_()
        y = stem(xi)
        y.backward(torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape) % 7)
        grads.append((y.detach(), xi.grad, stem.conv1.weight.grad))
    (y0, gx0, gw0), (y1, gx1, gw1) = grads
    assert y1.shape == (2, 8, 10, 13) and y1.is_contiguous()
    assert (y0 == 0).any() and gx0.abs().sum() > 0
    assert torch.equal(y0, y1) and torch.equal(gx0, gx1) and torch.equal(gw0, gw1)


def test_inference_path_is_bit_identical_and_contiguous():
    plain, fast = _pair()
    plain.eval(), fast.eval()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        y0, y1 = plain(x), fast(x)
    assert y1.is_contiguous() and torch.equal(y0, y1)


def test_both_resnet_builders_construct_it_with_detectron2s_parameter_names():
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    for config in (
        "configs/posetrack17/pavenet_r50_3f_pt17.yaml",
        "configs/synthetic/pavenet_tiny.yaml",
    ):
        cfg = load_pavenet_config(
            str(REPO_ROOT / config), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]
        )
        backbone = build_model(cfg).backbone
        assert type(backbone.stem) is ChannelsLastPoolStem, config
        assert all(k.startswith("conv1.") for k in backbone.stem.state_dict()), config
    # The R50: detectron2's own builder's tensors, names and frozen parts, only the stem's class differs.
    reference = build_resnet_backbone(
        cfg := load_pavenet_config(
            str(REPO_ROOT / "configs/Base-PAVENet.yaml"), ["MODEL.DEVICE", "cpu"]
        ),
        ShapeSpec(channels=3),
    )
    ours = build_model(cfg).backbone
    assert type(reference.stem) is BasicStem
    ref_sd, our_sd = reference.state_dict(), ours.state_dict()
    assert {k: v.shape for k, v in ref_sd.items()} == {k: v.shape for k, v in our_sd.items()}
    torch.manual_seed(3)
    reference, after_reference = build_resnet_backbone(cfg, ShapeSpec(channels=3)), torch.rand(4)
    torch.manual_seed(3)
    ours, after_ours = build_pavenet_resnet_backbone(cfg, ShapeSpec(channels=3)), torch.rand(4)
    assert torch.equal(
        after_reference, after_ours
    )  # the rest of a seeded model starts from the same draws
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in reference.state_dict().items())
    assert [n for n, p in reference.named_parameters() if p.requires_grad] == [
        n for n, p in ours.named_parameters() if p.requires_grad
    ]
    assert ours.output_shape() == reference.output_shape()
