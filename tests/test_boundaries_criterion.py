"""Loss weights told apart one at a time, and the loss normalisers against hand-counted divisors.

Every shipped config sets several weights equal (class 0.5 = encoder class 0.5; RLE 1 = encoder RLE 1 =
joint RLE 1), so a weight read from the wrong key or applied to the wrong term passes every config. Here
each weight is set alone to 3 and exactly the terms it governs must triple. The normalisers are counted by
hand: RLE terms divide by 2 x the labelled joints of the matched persons (the joint layers by the last
pose layer's count), focal terms by the matched persons, each at least 1; "clip" mode does so per clip.
"""

import pytest
import torch
from detectron2.config import get_cfg
from torchvision.ops import sigmoid_focal_loss

from pavenet.config import add_pavenet_config
from pavenet.modeling.criterion import PAVENetCriterion, build_criterion
from pavenet.modeling.denoising import DenoisingQueries
from pavenet.modeling.matcher import PoseHungarianMatcher
from pavenet.modeling.rle import RealNVP, rle_loss

K = 15
WEIGHTS = (
    "class_weight",
    "enc_class_weight",
    "rle_weight",
    "enc_rle_weight",
    "joint_rle_weight",
    "one_to_many_weight",
    "denoising_weight",
)


def _governs(weight, name):
    """Which loss names a weight multiplies (from the criterion's documented naming)."""
    o2m, dn = "_o2m_" in name, "_dn_" in name
    return {
        "class_weight": name.startswith("loss_cls") and name != "loss_cls_enc",
        "enc_class_weight": name == "loss_cls_enc",
        "rle_weight": name.startswith("loss_kpt")
        and name != "loss_kpt_enc"
        and "refine" not in name,
        "enc_rle_weight": name == "loss_kpt_enc",
        "joint_rle_weight": "refine" in name,
        "one_to_many_weight": o2m,
        "denoising_weight": dn,
    }[weight]


def _targets():
    # Clip 0: 2 persons with 15 and 10 labelled joints; clip 1: 1 person with 5.
    g = torch.Generator().manual_seed(1)
    vis0 = torch.ones(2, K)
    vis0[1, 10:] = 0
    vis1 = torch.zeros(1, K)
    vis1[0, :5] = 1
    return [
        {
            "keypoints": torch.rand(2, K, 2, generator=g),
            "visible": vis0,
            "areas": torch.tensor([900.0, 400.0]),
            "image_size": (64, 96),
        },
        {
            "keypoints": torch.rand(1, K, 2, generator=g),
            "visible": vis1,
            "areas": torch.tensor([600.0]),
            "image_size": (64, 96),
        },
    ]


def _layer(q, seed, logits=True):
    g = torch.Generator().manual_seed(seed)
    out = {
        "keypoints": torch.rand(2, q, K, 2, generator=g),
        "sigma": torch.rand(2, q, K, 2, generator=g) * 0.4 + 0.05,
    }
    if logits:
        out["logits"] = torch.randn(2, q, 1, generator=g)
    return out


def _outputs(criterion, targets):
    """Every output set the criterion supervises (16 losses): encoder, 2 pose layers, 2 joint layers,
    2 one-to-many and 2 denoising layers (denoising: clip 0's GT 0, 1 on queries 0, 1; clip 1's GT 0 on query 2)."""
    pose = [_layer(6, 10 + i) for i in range(2)]
    idx = criterion.match(pose[-1], targets)
    m = sum(len(i) for i, _ in idx)
    joints = [{k: v[0, :m] for k, v in _layer(m, 30 + j, logits=False).items()} for j in range(2)]
    dn_indices = [
        (torch.tensor([0, 1]), torch.tensor([0, 1])),
        (torch.tensor([2]), torch.tensor([0])),
    ]
    dn = DenoisingQueries(
        references=torch.rand(2, 4, K, 2),
        valid=torch.ones(2, 4, dtype=torch.bool),
        group=torch.zeros(4, dtype=torch.long),
        indices=dn_indices,
        negative=torch.zeros(4, dtype=torch.bool),
    )
    return {
        "enc": _layer(20, 5),
        "pose_layers": pose,
        "joint_layers": joints,
        "aux_pose_layers": [_layer(8, 40 + i) for i in range(2)],
        "dn_pose_layers": [_layer(4, 50 + i) for i in range(2)],
        "dn": dn,
    }, idx


def _flows():
    torch.manual_seed(0)
    return dict(enc_flow=RealNVP(), dec_flow=RealNVP(), flow=RealNVP())


@pytest.mark.parametrize("normalization", ["batch", "clip"])
def test_each_loss_weight_scales_exactly_the_terms_it_governs(normalization):
    targets = _targets()
    base = PAVENetCriterion(
        PoseHungarianMatcher(),
        K,
        one_to_many_k=2,
        normalization=normalization,
        **{w: 1.0 for w in WEIGHTS},
    )
    outputs, idx = _outputs(base, targets)
    flows = _flows()
    with torch.no_grad():
        ref = base(outputs, targets, idx, **flows)
    assert len(ref) == 16 and all(abs(v.item()) > 1e-3 for v in ref.values())
    for weight in WEIGHTS:
        crit = PAVENetCriterion(
            PoseHungarianMatcher(),
            K,
            one_to_many_k=2,
            normalization=normalization,
            **{w: (3.0 if w == weight else 1.0) for w in WEIGHTS},
        )
        with torch.no_grad():
            got = crit(outputs, targets, idx, **flows)
        assert set(got) == set(ref)
        for name, value in got.items():
            factor = 3.0 if _governs(weight, name) else 1.0
            assert value.item() == pytest.approx(factor * ref[name].item(), rel=1e-6), (
                weight,
                name,
            )
        assert any(_governs(weight, name) for name in got), weight


CONFIG_KEYS = {  # MODEL.PAVENET key -> (object, attribute) it must set
    "CLASS_WEIGHT": ("criterion", "class_weight"),
    "ENC_CLASS_WEIGHT": ("criterion", "enc_class_weight"),
    "RLE_WEIGHT": ("criterion", "rle_weight"),
    "ENC_RLE_WEIGHT": ("criterion", "enc_rle_weight"),
    "JOINT_RLE_WEIGHT": ("criterion", "joint_rle_weight"),
    "ONE_TO_MANY_WEIGHT": ("criterion", "one_to_many_weight"),
    "DENOISING_WEIGHT": ("criterion", "denoising_weight"),
    "COST_CLASS": ("matcher", "cost_class"),
    "COST_KPT_L1": ("matcher", "cost_kpt_l1"),
    "COST_OKS": ("matcher", "cost_oks"),
}


def _weights(crit):
    return {("criterion", a): getattr(crit, a) for a in WEIGHTS} | {
        ("matcher", a): getattr(crit.matcher, a) for a in ("cost_class", "cost_kpt_l1", "cost_oks")
    }


def test_each_config_weight_reaches_its_own_attribute_alone():
    cfg = add_pavenet_config(get_cfg())
    base = _weights(build_criterion(cfg))
    for key, target in CONFIG_KEYS.items():
        c = cfg.clone()
        setattr(c.MODEL.PAVENET, key, 123.25)
        got = _weights(build_criterion(c))
        changed = {t for t in got if got[t] != base[t]}
        assert changed == {target} and got[target] == 123.25, key
    # Focal parameters reach both the loss and the matching cost.
    c = cfg.clone()
    c.MODEL.PAVENET.FOCAL_ALPHA, c.MODEL.PAVENET.FOCAL_GAMMA = 0.125, 1.5
    crit = build_criterion(c)
    assert (crit.focal_alpha, crit.focal_gamma) == (0.125, 1.5)
    assert (crit.matcher.focal_alpha, crit.matcher.focal_gamma) == (0.125, 1.5)


def test_matcher_cost_weights_apply_to_their_own_term():
    # cost = cost_class * C_cls + cost_kpt_l1 * C_L1 + cost_oks * C_oks; each weight alone picks its term.
    target = _targets()[0]
    layer = _layer(5, 3)
    logits, kpts = layer["logits"][0], layer["keypoints"][0]
    terms = {
        "cost_class": PoseHungarianMatcher().class_cost(logits, 2),
        "cost_kpt_l1": PoseHungarianMatcher.kpt_l1_cost(
            kpts, target["keypoints"], target["visible"]
        ),
        "cost_oks": PoseHungarianMatcher().oks_cost(
            kpts, target["keypoints"], target["visible"], target["areas"], target["image_size"]
        ),
    }
    for name, term in terms.items():
        weights = {w: (2.5 if w == name else 0.0) for w in terms}
        got = PoseHungarianMatcher(**weights).cost_matrix(logits, kpts, target)
        torch.testing.assert_close(got, 2.5 * term, rtol=1e-6, atol=1e-7)


def test_focal_class_cost_by_hand():
    # logit 0 -> p = 1/2; alpha 1/4, gamma 2: pos = 1/4 * (1/2)^2 * ln 2, neg = 3/4 * (1/2)^2 * ln 2,
    # cost = pos - neg = -ln(2) / 8. gamma 1: (1/4 - 3/4) * 1/2 * ln 2 = -ln(2) / 4. alpha 1/2: 0.
    ln2 = torch.log(torch.tensor(2.0)).item()
    zero = torch.zeros(1, 1)
    assert PoseHungarianMatcher().class_cost(zero, 1).item() == pytest.approx(-ln2 / 8, rel=1e-5)
    assert PoseHungarianMatcher(focal_gamma=1.0).class_cost(zero, 1).item() == pytest.approx(
        -ln2 / 4, rel=1e-5
    )
    assert PoseHungarianMatcher(focal_alpha=0.5).class_cost(zero, 1).item() == pytest.approx(
        0.0, abs=1e-7
    )


# ------------------------------------------------------------------------------------------------ normalisers
def _matched(layer, idx, targets, clips):
    pred = torch.cat([layer["keypoints"][b, idx[b][0]] for b in clips])
    sigma = torch.cat([layer["sigma"][b, idx[b][0]] for b in clips])
    tgt = torch.cat([targets[b]["keypoints"][idx[b][1]] for b in clips])
    vis = torch.cat([targets[b]["visible"][idx[b][1]] for b in clips])
    return pred, sigma, tgt, vis


def _focal(logits, idx, clips):
    onehot = torch.zeros_like(logits)
    for b in clips:
        onehot[b, idx[b][0]] = 1
    return sigmoid_focal_loss(logits[clips], onehot[clips], alpha=0.25, gamma=2.0, reduction="sum")


def test_batch_normalisers_by_hand():
    # Matched persons: 3 (2 + 1) -> focal / 3. Labelled joints 15 + 10 + 5 = 30 -> RLE / (2 x 30) = / 60,
    # for the last pose layer and (its normaliser) for every joint layer.
    targets = _targets()
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, class_weight=1.0, normalization="batch")
    outputs, idx = _outputs(crit, targets)
    del outputs["aux_pose_layers"], outputs["dn_pose_layers"], outputs["dn"]
    flows = _flows()
    with torch.no_grad():
        got = crit(outputs, targets, idx, **flows)
        last = outputs["pose_layers"][-1]
        pred, sigma, tgt, vis = _matched(last, idx, targets, [0, 1])
        assert vis.sum().item() == 30
        assert got["loss_kpt"].item() == pytest.approx(
            rle_loss(pred, sigma, tgt, vis, flows["dec_flow"], 60.0).item(), rel=1e-6
        )
        assert got["loss_cls"].item() == pytest.approx(
            _focal(last["logits"], idx, [0, 1]).item() / 3, rel=1e-6
        )
        for j, layer in enumerate(outputs["joint_layers"]):
            want = rle_loss(layer["keypoints"], layer["sigma"], tgt, vis, flows["flow"], 60.0)
            assert got[f"loss_kpt_refine_d{j}"].item() == pytest.approx(want.item(), rel=1e-6)


def test_clip_normalisers_by_hand():
    # "clip": clip 0 alone (2 persons, 25 joints -> / 2 and / 50), clip 1 alone (1 person, 5 joints -> / 1 and
    # / 10), then the mean of the two clips.
    targets = _targets()
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, class_weight=1.0, normalization="clip")
    outputs, idx = _outputs(crit, targets)
    flows = _flows()
    with torch.no_grad():
        got = crit(outputs, targets, idx, **flows)
        last = outputs["pose_layers"][-1]
        kpt = [
            rle_loss(*_matched(last, idx, targets, [b]), flows["dec_flow"], n).item()
            for b, n in ((0, 50.0), (1, 10.0))
        ]
        cls = [_focal(last["logits"], idx, [b]).item() / n for b, n in ((0, 2), (1, 1))]
        rows = [slice(0, 2), slice(2, 3)]
        ref = [
            rle_loss(
                outputs["joint_layers"][1]["keypoints"][rows[b]],
                outputs["joint_layers"][1]["sigma"][rows[b]],
                *_matched(last, idx, targets, [b])[2:],
                flows["flow"],
                n,
            ).item()
            for b, n in ((0, 50.0), (1, 10.0))
        ]
    assert got["loss_kpt"].item() == pytest.approx(sum(kpt) / 2, rel=1e-6)
    assert got["loss_cls"].item() == pytest.approx(sum(cls) / 2, rel=1e-6)
    assert got["loss_kpt_refine_d1"].item() == pytest.approx(sum(ref) / 2, rel=1e-6)


def test_a_clip_without_people_divides_by_one():
    # No GT: nothing matched, the focal loss of all 6 queries as negatives divided by max(0, 1) = 1.
    empty = {
        "keypoints": torch.zeros(0, K, 2),
        "visible": torch.zeros(0, K),
        "areas": torch.zeros(0),
        "image_size": (64, 96),
    }
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, class_weight=1.0, normalization="clip")
    layer = {k: v[:1] for k, v in _layer(6, 3).items()}
    with torch.no_grad():
        got = crit({"pose_layers": [layer]}, [empty], None, **_flows())
    want = sigmoid_focal_loss(
        layer["logits"], torch.zeros_like(layer["logits"]), alpha=0.25, gamma=2.0, reduction="sum"
    )
    assert got["loss_cls"].item() == pytest.approx(want.item(), rel=1e-6)
    assert got["loss_kpt"].item() == 0.0
