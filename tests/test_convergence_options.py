"""Training options beyond the paper (MODEL.PAVENET.OKS_QUALITY_TARGET, ONE_TO_MANY_*, DENOISING_*; EMA_DECAY has
tests/test_ema.py) on hand-made cases, their absence from the official recipe, and the demo's reproducibility
(a fixed SEED)."""

import dataclasses
import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from torchvision.ops import sigmoid_focal_loss

import pavenet.modeling  # noqa: F401
from pavenet.config import add_pavenet_config, load_pavenet_config
from pavenet.data.keypoint_meta import POSETRACK_OKS_SIGMAS
from pavenet.modeling.criterion import PAVENetCriterion
from pavenet.modeling.denoising import denoising_attention_mask, sample_denoising_queries
from pavenet.modeling.matcher import PoseHungarianMatcher
from pavenet.modeling.rle import RealNVP

from conftest import REPO_ROOT, TINY_CONFIG, load_tiny_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")
K = 15
SWITCHES = {
    "OKS_QUALITY_TARGET": False,
    "ONE_TO_MANY_QUERIES": 0,
    "DENOISING_GROUPS": 0,
    "EMA_DECAY": 0.0,
}


# ---------------------------------------------------------------- hand-made poses
def _person(cx, cy, spread=0.1):
    """A (K, 2) pose in normalised coordinates: joints on a small ring around (cx, cy)."""
    ang = torch.arange(K, dtype=torch.float32) * (2 * math.pi / K)
    return torch.stack([cx + spread * torch.cos(ang), cy + spread * torch.sin(ang)], -1)


def _hand_oks(pred, gt, area, image_size):
    """OKS over all joints (all visible) written out: mean_k exp(-d_k^2 / (2 area (2 sigma_k)^2)), pixels."""
    h, w = image_size
    total = 0.0
    for j in range(K):
        dx = (pred[j, 0] - gt[j, 0]).item() * w
        dy = (pred[j, 1] - gt[j, 1]).item() * h
        total += math.exp(-(dx * dx + dy * dy) / (2 * area * (2 * POSETRACK_OKS_SIGMAS[j]) ** 2))
    return total / K


def _case():
    """One clip (100 x 200 px), two people; queries 0 and 2 sit near person 1 and person 0 with known offsets,
    query 1 is far from both."""
    gt = torch.stack([_person(0.3, 0.4), _person(0.7, 0.6)])
    pred = torch.stack([gt[1] + 0.01, _person(0.5, 0.1), gt[0] - torch.tensor([0.02, 0.0])])
    target = {
        "keypoints": gt,
        "visible": torch.ones(2, K),
        "areas": torch.tensor([900.0, 1600.0]),
        "image_size": (100, 200),
    }
    layer = {
        "keypoints": pred[None].clone().requires_grad_(),
        "sigma": torch.full((1, 3, K, 2), 0.1),
        "logits": torch.tensor([[[0.5], [-1.0], [0.2]]], requires_grad=True),
    }
    return layer, [target]


def test_quality_target_is_the_oks_of_the_matched_prediction():
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, quality_target=True)
    layer, targets = _case()
    idx = crit.match(layer, targets)
    assert idx[0][0].tolist() == [0, 2] and idx[0][1].tolist() == [1, 0]
    q = crit.matched_oks(layer, idx, targets)[0]
    gt, pred, areas = targets[0]["keypoints"], layer["keypoints"][0].detach(), targets[0]["areas"]
    expected = [
        _hand_oks(pred[0], gt[1], areas[1].item(), (100, 200)),
        _hand_oks(pred[2], gt[0], areas[0].item(), (100, 200)),
    ]
    assert q.tolist() == pytest.approx(expected, rel=1e-5)
    assert 0.05 < min(expected) and max(expected) < 0.95  # a real soft target, neither 0 nor 1

    # The classification loss uses exactly these targets: alpha_t |t - p|^gamma BCE(p, t), / #matched.
    loss = crit._loss_cls_for(layer, idx, targets)
    logits = layer["logits"].detach()[0, :, 0]
    t = torch.tensor([expected[0], 0.0, expected[1]])
    p = logits.sigmoid()
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    alpha = torch.tensor([0.25, 0.75, 0.25])
    assert loss.item() == pytest.approx(
        (alpha * (t - p).abs() ** 2 * bce).sum().item() / 2, rel=1e-5
    )
    # The target is detached: no gradient reaches the keypoints through the classification loss.
    loss.backward()
    assert layer["keypoints"].grad is None and layer["logits"].grad is not None


def test_quality_focal_loss_equals_the_focal_loss_for_unit_targets():
    crit = PAVENetCriterion(PoseHungarianMatcher(), K)
    logits = torch.randn(2, 9, 1)
    idx = [
        (torch.tensor([1, 4]), torch.tensor([0, 1])),
        (torch.tensor([0, 3, 8]), torch.tensor([2, 0, 1])),
    ]
    ones = [torch.ones(2), torch.ones(3)]
    onehot = torch.zeros_like(logits)
    for b, (i, _) in enumerate(idx):
        onehot[b, i] = 1
    focal = sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum") / 5
    assert crit.loss_cls(logits, idx).item() == pytest.approx(focal.item(), rel=1e-6)
    assert crit.loss_cls(logits, idx, ones).item() == pytest.approx(focal.item(), rel=1e-5)
    # A lower quality target on a confident positive costs more than target 1 would.
    confident = torch.full((1, 2, 1), 3.0)
    one = [(torch.tensor([0]), torch.tensor([0]))]
    assert crit.loss_cls(confident, one, [torch.tensor([0.3])]) > crit.loss_cls(
        confident, one, [torch.tensor([1.0])]
    )


def test_one_to_many_matching_gives_each_person_its_k_nearest_queries():
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, one_to_many_k=2)
    gt = torch.stack([_person(0.3, 0.3), _person(0.7, 0.7)])
    # Queries 0, 3 near person 0 (offset 0.01, 0.02), 1, 4 near person 1, 2 and 5 far away.
    pred = torch.stack(
        [
            gt[0] + 0.01,
            gt[1] + 0.01,
            _person(0.1, 0.9),
            gt[0] + 0.02,
            gt[1] - 0.02,
            _person(0.9, 0.1),
        ]
    )
    layer = {"keypoints": pred[None], "logits": torch.zeros(1, 6, 1)}
    target = {
        "keypoints": gt,
        "visible": torch.ones(2, K),
        "areas": torch.tensor([1000.0, 1000.0]),
        "image_size": (64, 64),
    }
    ((pi, gi),) = crit.match_one_to_many(layer, [target], 2)
    assert dict(zip(pi.tolist(), gi.tolist())) == {0: 0, 3: 0, 1: 1, 4: 1}
    # k = 1 is the ordinary one-to-one matching; more repeats than queries match every query.
    assert [t.tolist() for t in crit.match_one_to_many(layer, [target], 1)[0]] == [
        t.tolist() for t in crit.match(layer, [target])[0]
    ]
    ((pi, gi),) = crit.match_one_to_many(layer, [target], 5)
    assert pi.tolist() == list(range(6)) and set(gi.tolist()) == {0, 1}
    empty = dict(
        target, keypoints=torch.zeros(0, K, 2), visible=torch.zeros(0, K), areas=torch.zeros(0)
    )
    assert crit.match_one_to_many(layer, [empty], 3)[0][0].numel() == 0


def test_one_to_many_losses_are_named_weighted_and_use_their_own_matching():
    layer, targets = _case()
    aux = [
        {
            "keypoints": torch.cat([layer["keypoints"].detach()] * 2, 1),
            "sigma": torch.full((1, 6, K, 2), 0.1),
            "logits": torch.zeros(1, 6, 1),
        }
    ]
    outputs = {"pose_layers": [layer], "aux_pose_layers": aux}
    flows = dict(enc_flow=RealNVP(), dec_flow=RealNVP(), flow=RealNVP())
    l1 = PAVENetCriterion(PoseHungarianMatcher(), K, one_to_many_k=2)(outputs, targets, **flows)
    l3 = PAVENetCriterion(PoseHungarianMatcher(), K, one_to_many_k=2, one_to_many_weight=3.0)(
        outputs, targets, **flows
    )
    assert {"loss_cls_o2m_d0", "loss_kpt_o2m_d0"} <= set(l1)
    assert l3["loss_cls_o2m_d0"].item() == pytest.approx(3 * l1["loss_cls_o2m_d0"].item(), rel=1e-5)
    assert l3["loss_cls"].item() == pytest.approx(l1["loss_cls"].item(), rel=1e-6)
    # 4 of the 6 auxiliary queries are positives (both people twice): focal loss of logit 0 for those.
    p = torch.tensor(0.5)
    pos, neg = 0.25 * (1 - p) ** 2 * -torch.log(p), 0.75 * p**2 * -torch.log(1 - p)
    assert l1["loss_cls_o2m_d0"].item() == pytest.approx(
        0.5 * (4 * pos + 2 * neg).item() / 4, rel=1e-5
    )


# ---------------------------------------------------------------- the training-only query group
def _tiny_cfg(**over):
    return load_tiny_cfg(*[x for item in over.items() for x in item])


def _clip(h, w, n=2, seed=0):
    from detectron2.structures import Instances, Keypoints

    g = torch.Generator().manual_seed(seed)
    inst = Instances((h, w))
    kp = torch.rand(n, K, 3, generator=g) * torch.tensor([w, h, 1.0])
    kp[..., 2] = 2.0
    inst.gt_keypoints = Keypoints(kp)
    inst.gt_areas = torch.full((n,), 0.3 * h * w)
    return {
        "images": torch.randint(0, 255, (3, 3, h, w), generator=g, dtype=torch.uint8),
        "instances": inst,
    }


def test_one_to_many_group_is_training_only_and_never_reaches_the_one_to_one_outputs():
    torch.manual_seed(0)
    plain = build_model(_tiny_cfg())
    hybrid = build_model(_tiny_cfg(**{"MODEL.PAVENET.ONE_TO_MANY_QUERIES": 45}))
    # No parameters of its own: the same state dict (names, shapes), so the same inference cost and weights.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in hybrid.state_dict().items()
    }
    hybrid.load_state_dict(plain.state_dict())

    clip = _clip(96, 128, seed=1)
    x, hw = plain.preprocess_frames(clip["images"])
    with torch.no_grad():
        feats = plain.eval().encode_frames(
            x, hw
        )  # eval: batch-norm statistics stay those of the weights
        ref = plain.head.train().decode_pose(feats)
        out = hybrid.head.train().decode_pose(feats)
    assert "aux_pose_layers" not in ref and len(out["aux_pose_layers"]) == len(out["pose_layers"])
    assert out["aux_pose_layers"][0]["logits"].shape == (1, 45, 1)
    assert out["aux_pose_layers"][0]["references"].shape == (1, 3, 45, 2 * K)
    # The one-to-one queries cannot see the auxiliary ones: their outputs are those of the plain model.
    for a, b in zip(ref["pose_layers"], out["pose_layers"]):
        assert set(a) == set(b)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5)
    assert torch.equal(out["enc"]["topk"], ref["enc"]["topk"])
    torch.testing.assert_close(
        out["input_references"], ref["input_references"], rtol=1e-5, atol=1e-5
    )

    # Inference: the group does not exist, outputs are identical.
    hybrid.eval(), plain.eval()
    with torch.no_grad():
        assert "aux_pose_layers" not in hybrid.head.decode_pose(feats)
        a = plain([dict(clip)])[0]["instances"]
        b = hybrid([dict(clip)])[0]["instances"]
    assert torch.equal(a.pred_keypoints, b.pred_keypoints) and torch.equal(a.scores, b.scores)

    # Training: the one-to-many losses appear and every trainable parameter still gets a gradient.
    hybrid.train()
    losses = hybrid([_clip(96, 128, seed=2), _clip(80, 112, n=3, seed=3)])
    assert {"loss_cls_o2m_d0", "loss_kpt_o2m_d2"} <= set(losses)
    sum(losses.values()).backward()
    assert not [n for n, p in hybrid.named_parameters() if p.requires_grad and p.grad is None]


def test_too_many_auxiliary_queries_for_the_image_is_a_clear_error():
    model = build_model(_tiny_cfg(**{"MODEL.PAVENET.ONE_TO_MANY_QUERIES": 100000})).train()
    with pytest.raises(ValueError, match="ONE_TO_MANY_QUERIES"):
        model([_clip(96, 128)])


# ---------------------------------------------------------------- denoising queries
def _dn_targets():
    """Clip 0: two people (person 1 has joints 0-2 invisible, placed far away); clip 1: one person."""
    p0, p1, p2 = _person(0.3, 0.4, 0.1), _person(0.7, 0.6, 0.05), _person(0.5, 0.5, 0.2)
    vis1 = torch.ones(K)
    vis1[:3] = 0
    p1[:3] = 0.95  # where nothing is labelled: must not move the person's centre or extent
    t0 = {
        "keypoints": torch.stack([p0, p1]),
        "visible": torch.stack([torch.ones(K), vis1]),
        "areas": torch.tensor([900.0, 400.0]),
        "image_size": (100, 200),
    }
    t1 = {
        "keypoints": p2[None],
        "visible": torch.ones(1, K),
        "areas": torch.tensor([2000.0]),
        "image_size": (100, 200),
    }
    return [t0, t1]


def test_denoising_queries_are_positives_and_negatives_at_the_documented_distances():
    targets = _dn_targets()
    dn = sample_denoising_queries(
        targets, groups=3, noise=0.3, jitter=0.0, generator=torch.Generator().manual_seed(0)
    )
    n = 2
    assert dn.num_queries == 3 * 2 * n and dn.references.shape == (2, 12, K, 2)
    assert dn.group.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert dn.negative.tolist() == [False, False, True, True] * 3
    # Clip 1 has one person: its second slot of each half is padding.
    assert dn.valid[0].all() and dn.valid[1].tolist() == [True, False, True, False] * 3
    assert [t.tolist() for t in dn.indices[0]] == [[0, 1, 4, 5, 8, 9], [0, 1, 0, 1, 0, 1]]
    assert [t.tolist() for t in dn.indices[1]] == [[0, 4, 8], [0, 0, 0]]
    for ci, t in enumerate(targets):
        for d in range(12):
            if not dn.valid[ci, d]:
                continue
            i = d % n
            vis = t["visible"][i] > 0
            gt = t["keypoints"][i]
            extent = gt[vis].max(0)[0] - gt[vis].min(0)[0]
            centre = gt[vis].mean(0)
            shift = (
                dn.references[ci, d, vis] - gt[vis]
            )  # without jitter: one rigid shift for every joint
            torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=0, atol=1e-6)
            r = (shift[0] / extent).norm().item()  # shift = r * extent * (cos, sin)
            assert (0.3 <= r < 0.6) if dn.negative[d] else (0 <= r < 0.3), (ci, d, r)
            # Unlabelled joints start at the labelled joints' centre, shifted alike.
            torch.testing.assert_close(
                dn.references[ci, d, ~vis], (centre + shift[0]).expand(int((~vis).sum()), 2)
            )
    # The jitter moves each joint by at most jitter x extent around the rigid shift.
    jit = sample_denoising_queries(
        targets, 1, 0.3, jitter=0.05, generator=torch.Generator().manual_seed(1)
    )
    d = jit.references[1, 0] - targets[1]["keypoints"][0]
    extent = targets[1]["keypoints"][0].max(0)[0] - targets[1]["keypoints"][0].min(0)[0]
    spread = (d - d.mean(0)) / extent
    assert spread.abs().max() <= 0.1 + 1e-6 and spread.abs().max() > 0.01
    # No person in the batch: no denoising queries.
    empty = dict(
        targets[1], keypoints=torch.zeros(0, K, 2), visible=torch.zeros(0, K), areas=torch.zeros(0)
    )
    assert sample_denoising_queries([empty, empty], 2, 0.3) is None
    with pytest.raises(ValueError, match="DENOISING_GROUPS"):
        sample_denoising_queries(targets, 0, 0.3)


def test_denoising_attention_mask_separates_groups_and_hides_padding():
    dn = sample_denoising_queries(
        _dn_targets(), groups=2, noise=0.3
    )  # D = 8; clip 1 pads slots 1, 3, 5, 7
    plain = torch.tensor([0, 0, 0, 1, 1])  # 3 matching queries, 2 one-to-many queries
    mask = denoising_attention_mask(5, plain, dn, num_heads=4)
    assert mask.shape == (2 * 4, 13, 13)
    assert all(torch.equal(mask[4 * b + h], mask[4 * b]) for b in range(2) for h in range(4))
    m0, m1 = mask[0], mask[4]
    blocked = lambda m, rows, cols: bool(m[rows][:, cols].all())  # noqa: E731
    open_ = lambda m, rows, cols: not bool(m[rows][:, cols].any())  # noqa: E731
    match, o2m, g0, g1 = [0, 1, 2], [3, 4], [5, 6, 7, 8], [9, 10, 11, 12]
    for m in (m0, m1):
        # The matching queries see each other and nothing else: no denoising query, no one-to-many one.
        assert open_(m, match, match) and blocked(m, match, o2m + g0 + g1)
        assert open_(m, o2m, o2m) and blocked(m, o2m, match + g0 + g1)
        assert blocked(m, g0, match + o2m + g1) and blocked(m, g1, match + o2m + g0)
    assert open_(m0, g0, g0) and open_(m0, g1, g1)
    # Clip 1: padding slots (second of each half) are hidden from every other query; each sees itself (a
    # finite softmax) and what its group may see, and no other padding slot.
    real, pad = [5, 7], [6, 8]
    assert open_(m1, real, real) and blocked(m1, real, pad)
    assert [int(i) for i in (~m1[6]).nonzero()] == [5, 6, 7]


def test_denoising_losses_supervise_the_noised_targets_and_skip_padding():
    targets = _dn_targets()
    dn = sample_denoising_queries(
        targets, groups=1, noise=0.3
    )  # D = 4: [pos0, pos1, neg0, neg1] per clip
    g = torch.Generator().manual_seed(3)
    layer = {
        "logits": torch.randn(2, 4, 1, generator=g),
        "keypoints": torch.rand(2, 4, K, 2, generator=g),
        "sigma": torch.full((2, 4, K, 2), 0.1),
    }
    plain = {
        "logits": torch.zeros(2, 3, 1),
        "keypoints": torch.rand(2, 3, K, 2, generator=g),
        "sigma": torch.full((2, 3, K, 2), 0.1),
    }
    flows = dict(enc_flow=RealNVP(), dec_flow=RealNVP(), flow=RealNVP())
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, denoising_weight=2.0, normalization="batch")
    losses = crit({"pose_layers": [plain], "dn_pose_layers": [layer], "dn": dn}, targets, **flows)
    # Classification: positives are slots 0, 1 of clip 0 and slot 0 of clip 1; clip 1's slots 1 and 3 are padding.
    onehot = torch.zeros(2, 4, 1)
    onehot[0, :2] = 1
    onehot[1, 0] = 1
    focal = sigmoid_focal_loss(layer["logits"], onehot, alpha=0.25, gamma=2.0, reduction="none")
    focal[1, [1, 3]] = 0
    assert losses["loss_cls_dn_d0"].item() == pytest.approx(
        2.0 * 0.5 * focal.sum().item() / 3, rel=1e-5
    )
    # Keypoints: the positives' predictions against their own GT person (not a matched one).
    from pavenet.modeling.rle import rle_loss

    pred = torch.stack(
        [layer["keypoints"][0, 0], layer["keypoints"][0, 1], layer["keypoints"][1, 0]]
    )
    gt = torch.stack(
        [targets[0]["keypoints"][0], targets[0]["keypoints"][1], targets[1]["keypoints"][0]]
    )
    vis = torch.stack(
        [targets[0]["visible"][0], targets[0]["visible"][1], targets[1]["visible"][0]]
    )
    expected = rle_loss(
        pred, torch.full_like(pred, 0.1), gt, vis, flows["dec_flow"], 2.0 * vis.sum().item()
    )
    assert losses["loss_kpt_dn_d0"].item() == pytest.approx(2.0 * expected.item(), rel=1e-5)
    # Per-clip normalisation ("clip", the official recipe) slices the denoising queries per clip as well.
    per_clip = PAVENetCriterion(PoseHungarianMatcher(), K)(
        {"pose_layers": [plain], "dn_pose_layers": [layer], "dn": dn}, targets, **flows
    )
    one = PAVENetCriterion(PoseHungarianMatcher(), K)
    sliced = dataclasses.replace(
        dn, references=dn.references[1:], valid=dn.valid[1:], indices=dn.indices[1:]
    )
    clip1 = one(
        {
            "pose_layers": [{k: v[1:] for k, v in plain.items()}],
            "dn_pose_layers": [{k: v[1:] for k, v in layer.items()}],
            "dn": sliced,
        },
        targets[1:],
        **flows,
    )
    clip0 = one(
        {
            "pose_layers": [{k: v[:1] for k, v in plain.items()}],
            "dn_pose_layers": [{k: v[:1] for k, v in layer.items()}],
            "dn": dataclasses.replace(
                dn, references=dn.references[:1], valid=dn.valid[:1], indices=dn.indices[:1]
            ),
        },
        targets[:1],
        **flows,
    )
    for key in ("loss_cls_dn_d0", "loss_kpt_dn_d0"):
        assert per_clip[key].item() == pytest.approx(
            (clip0[key].item() + clip1[key].item()) / 2, rel=1e-5
        )


def test_denoising_queries_are_training_only_and_never_reach_the_matching_outputs():
    torch.manual_seed(0)
    plain = build_model(_tiny_cfg())
    dn_model = build_model(_tiny_cfg(**{"MODEL.PAVENET.DENOISING_GROUPS": 3}))
    # No parameters of their own: the same weights, so the same inference cost.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in dn_model.state_dict().items()
    }
    dn_model.load_state_dict(plain.state_dict())
    clip = _clip(96, 128, seed=1)
    x, hw = plain.preprocess_frames(clip["images"])
    targets = [
        {
            "keypoints": torch.stack([_person(0.3, 0.4), _person(0.6, 0.5)]),
            "visible": torch.ones(2, K),
            "areas": torch.tensor([500.0, 500.0]),
            "image_size": hw,
        }
    ]
    dn = sample_denoising_queries(targets, 3, 0.3)
    with torch.no_grad():
        feats = plain.eval().encode_frames(x, hw)
        ref = plain.head.train().decode_pose(feats)
        out = dn_model.head.train().decode_pose(feats, denoising=dn)
        evaluated = dn_model.head.eval().decode_pose(feats, denoising=dn)
    assert "dn_pose_layers" not in ref and len(out["dn_pose_layers"]) == len(out["pose_layers"])
    assert out["dn_pose_layers"][0]["logits"].shape == (1, 12, 1)
    # Each denoising query starts from its noised pose (copied to every frame, as a proposal's pose).
    assert out["dn_pose_layers"][0]["references"].shape == (1, 3, 12, 2 * K)
    for a, b in zip(ref["pose_layers"], out["pose_layers"]):
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        out["input_references"], ref["input_references"], rtol=1e-5, atol=1e-5
    )
    # In eval mode the queries are not built even when passed, and the model's forward never passes them.
    assert "dn_pose_layers" not in evaluated
    for a, b in zip(ref["pose_layers"], evaluated["pose_layers"]):
        torch.testing.assert_close(b["logits"], a["logits"], rtol=1e-5, atol=1e-5)
    plain.eval(), dn_model.eval()
    with torch.no_grad():
        a = plain([dict(clip)])[0]["instances"]
        b = dn_model([dict(clip)])[0]["instances"]
    assert torch.equal(a.pred_keypoints, b.pred_keypoints) and torch.equal(a.scores, b.scores)
    # Training: denoising losses for every pose layer; every trainable parameter gets a gradient.
    dn_model.train()
    losses = dn_model([_clip(96, 128, seed=2), _clip(80, 112, n=3, seed=3)])
    assert {f"loss_{t}_dn_d{i}" for t in ("cls", "kpt") for i in range(3)} <= set(losses)
    sum(losses.values()).backward()
    assert not [n for n, p in dn_model.named_parameters() if p.requires_grad and p.grad is None]


def test_bad_denoising_settings_are_clear_errors():
    with pytest.raises(ValueError, match="DENOISING_GROUPS"):
        build_model(_tiny_cfg(**{"MODEL.PAVENET.DENOISING_GROUPS": -1}))
    with pytest.raises(ValueError, match="DENOISING_NOISE"):
        build_model(
            _tiny_cfg(**{"MODEL.PAVENET.DENOISING_GROUPS": 2, "MODEL.PAVENET.DENOISING_NOISE": 0.0})
        )


# ---------------------------------------------------------------- off in the official recipe
def _official_configs():
    files = [REPO_ROOT / "configs" / "Base-PAVENet.yaml"]
    for folder in ("posetrack17", "posetrack18", "posetrack21", "coco_pretrain"):
        files += sorted((REPO_ROOT / "configs" / folder).glob("*.yaml"))
    # The opt-in recipes (named *_hybrid* / *_nmsfree*) are not the paper's; every other config there is.
    return [f for f in files if "_hybrid" not in f.name and "_nmsfree" not in f.name]


def test_new_switches_default_off_and_off_in_every_official_config():
    defaults = add_pavenet_config(get_cfg()).MODEL.PAVENET
    assert {k: defaults[k] for k in SWITCHES} == SWITCHES
    files = _official_configs()
    assert len(files) >= 12
    for f in files:
        P = load_pavenet_config(str(f)).MODEL.PAVENET
        assert {k: P[k] for k in SWITCHES} == SWITCHES, f
        assert P.COST_CLASS == 2.0, (
            f
        )  # the official matching cost (the demo and *_nmsfree raise it)
        assert P.FOCAL_GAMMA == 2.0, f  # the official focal gamma (the demo and *_nmsfree lower it)


def test_opt_in_recipes_are_the_official_ones_plus_the_switches():
    variants = sorted((REPO_ROOT / "configs").glob("posetrack1[78]/*_hybrid*.yaml"))
    assert {v.parent.name for v in variants} == {"posetrack17", "posetrack18"}
    for v in variants:
        base = v.with_name(v.name.replace("_hybrid", ""))
        assert f'_BASE_: "{base.name}"' in v.read_text(), v
        on, off = load_pavenet_config(str(v)), load_pavenet_config(str(base))
        assert on.MODEL.PAVENET.OKS_QUALITY_TARGET and on.MODEL.PAVENET.ONE_TO_MANY_QUERIES > 0
        for key in (
            *SWITCHES,
            "ONE_TO_MANY_K",
            "ONE_TO_MANY_WEIGHT",
        ):  # the switches and their settings
            on.MODEL.PAVENET[key] = off.MODEL.PAVENET[key]
        on.OUTPUT_DIR = off.OUTPUT_DIR
        assert on.dump() == off.dump(), v  # nothing else differs


def test_nmsfree_recipes_are_the_official_ones_with_the_demos_class_cost_and_focal_gamma():
    demo = load_pavenet_config(str(TINY_CONFIG)).MODEL.PAVENET
    variants = sorted((REPO_ROOT / "configs").glob("posetrack1[78]/*_nmsfree.yaml"))
    assert {v.parent.name for v in variants} == {"posetrack17", "posetrack18"}
    for v in variants:
        base = v.with_name(v.name.replace("_nmsfree", ""))
        assert f'_BASE_: "{base.name}"' in v.read_text(), v
        on, off = load_pavenet_config(str(v)), load_pavenet_config(str(base))
        for key, official in (("COST_CLASS", 2.0), ("FOCAL_GAMMA", 2.0)):
            assert (
                off.MODEL.PAVENET[key] == official
                and on.MODEL.PAVENET[key] == demo[key] != official
            ), (v, key)
            on.MODEL.PAVENET[key] = off.MODEL.PAVENET[key]
        on.OUTPUT_DIR = off.OUTPUT_DIR
        assert on.dump() == off.dump(), v  # nothing else differs


# ---------------------------------------------------------------- reproducible main job
def _short_demo_training(out, seed):
    """The demo's seeding + config (with its data-loader worker and augmentation) for 2 iterations of 1 clip."""
    from detectron2.engine import HookBase

    from pavenet.apps.quickstart import QuickstartTrainer, quickstart_cfg, seed_run
    from pavenet.data.synthetic import ensure_synthetic_dataset

    ensure_synthetic_dataset()
    cfg = quickstart_cfg(
        str(TINY_CONFIG),
        str(out),
        eval_period=0,
        opts=["SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 1, "SEED", seed],
    )
    seed_run(cfg)
    losses = []

    class Record(HookBase):
        def after_step(self):
            losses.append(self.trainer.storage.history("total_loss").latest())

    trainer = QuickstartTrainer(cfg)
    trainer.register_hooks([Record()])
    trainer.resume_or_load(resume=False)
    trainer.train()
    return losses, trainer.model.state_dict()


def test_two_short_demo_trainings_with_one_seed_are_identical(tmp_path, monkeypatch):
    torch.set_num_threads(2)  # as `make demo` on a 2-core machine (restored by the fixture)
    monkeypatch.chdir(
        REPO_ROOT
    )  # the synthetic data lives under $DETECTRON2_DATASETS (default: ./datasets)
    from pavenet.apps.quickstart import QuickstartTrainer

    # detectron2's EvalHook evaluates after the last iteration whatever the period; the demo's two full
    # evaluations of the synthetic val set (NMS-free and OKS-NMS) took ~95% of this test's time and do
    # not touch the seeded training it checks.
    monkeypatch.setattr(QuickstartTrainer, "_eval_and_record", lambda self: {})
    assert load_pavenet_config(str(TINY_CONFIG)).SEED == 42
    torch.manual_seed(
        123
    )  # whatever the process did before (different here), the run's seed decides
    l1, w1 = _short_demo_training(tmp_path / "a", 42)
    torch.manual_seed(456)
    l2, w2 = _short_demo_training(tmp_path / "b", 42)
    assert len(l1) == 2 and l1 == l2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
