"""Training options beyond the paper (MODEL.PAVENET.OKS_QUALITY_TARGET, ONE_TO_MANY_*) on hand-made cases,
their absence from the official recipe, and the demo's reproducibility (a fixed SEED)."""
import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from detectron2.config import get_cfg
from detectron2.modeling import build_model

import pavenet.modeling  # noqa: F401
from conftest import REPO_ROOT
from pavenet.config import add_pavenet_config, load_pavenet_config
from pavenet.data.keypoint_meta import POSETRACK_OKS_SIGMAS
from pavenet.modeling.criterion import PAVENetCriterion
from pavenet.modeling.matcher import PoseHungarianMatcher
from pavenet.modeling.rle import RealNVP

pytestmark = pytest.mark.usefixtures("one_torch_thread")
K = 15
SWITCHES = {"OKS_QUALITY_TARGET": False, "ONE_TO_MANY_QUERIES": 0}


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
    target = {"keypoints": gt, "visible": torch.ones(2, K), "areas": torch.tensor([900.0, 1600.0]),
              "image_size": (100, 200)}
    layer = {"keypoints": pred[None].clone().requires_grad_(), "sigma": torch.full((1, 3, K, 2), 0.1),
             "logits": torch.tensor([[[0.5], [-1.0], [0.2]]], requires_grad=True)}
    return layer, [target]


def test_quality_target_is_the_oks_of_the_matched_prediction():
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, quality_target=True)
    layer, targets = _case()
    idx = crit.match(layer, targets)
    assert idx[0][0].tolist() == [0, 2] and idx[0][1].tolist() == [1, 0]
    q = crit.matched_oks(layer, idx, targets)[0]
    gt, pred, areas = targets[0]["keypoints"], layer["keypoints"][0].detach(), targets[0]["areas"]
    expected = [_hand_oks(pred[0], gt[1], areas[1].item(), (100, 200)), _hand_oks(pred[2], gt[0], areas[0].item(), (100, 200))]
    assert q.tolist() == pytest.approx(expected, rel=1e-5)
    assert 0.05 < min(expected) and max(expected) < 0.95  # a real soft target, neither 0 nor 1

    # The classification loss uses exactly these targets: alpha_t |t - p|^gamma BCE(p, t), / #matched.
    loss = crit._loss_cls_for(layer, idx, targets)
    logits = layer["logits"].detach()[0, :, 0]
    t = torch.tensor([expected[0], 0.0, expected[1]])
    p = logits.sigmoid()
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    alpha = torch.tensor([0.25, 0.75, 0.25])
    assert loss.item() == pytest.approx((alpha * (t - p).abs() ** 2 * bce).sum().item() / 2, rel=1e-5)
    # The target is detached: no gradient reaches the keypoints through the classification loss.
    loss.backward()
    assert layer["keypoints"].grad is None and layer["logits"].grad is not None


def test_quality_focal_loss_equals_the_focal_loss_for_unit_targets():
    crit = PAVENetCriterion(PoseHungarianMatcher(), K)
    logits = torch.randn(2, 9, 1)
    idx = [(torch.tensor([1, 4]), torch.tensor([0, 1])), (torch.tensor([0, 3, 8]), torch.tensor([2, 0, 1]))]
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
    assert crit.loss_cls(confident, one, [torch.tensor([0.3])]) > crit.loss_cls(confident, one, [torch.tensor([1.0])])


def test_one_to_many_matching_gives_each_person_its_k_nearest_queries():
    crit = PAVENetCriterion(PoseHungarianMatcher(), K, one_to_many_k=2)
    gt = torch.stack([_person(0.3, 0.3), _person(0.7, 0.7)])
    # Queries 0, 3 near person 0 (offset 0.01, 0.02), 1, 4 near person 1, 2 and 5 far away.
    pred = torch.stack([gt[0] + 0.01, gt[1] + 0.01, _person(0.1, 0.9), gt[0] + 0.02, gt[1] - 0.02,
                        _person(0.9, 0.1)])
    layer = {"keypoints": pred[None], "logits": torch.zeros(1, 6, 1)}
    target = {"keypoints": gt, "visible": torch.ones(2, K), "areas": torch.tensor([1000.0, 1000.0]),
              "image_size": (64, 64)}
    (pi, gi), = crit.match_one_to_many(layer, [target], 2)
    assert dict(zip(pi.tolist(), gi.tolist())) == {0: 0, 3: 0, 1: 1, 4: 1}
    # k = 1 is the ordinary one-to-one matching; more repeats than queries match every query.
    assert [t.tolist() for t in crit.match_one_to_many(layer, [target], 1)[0]] == \
        [t.tolist() for t in crit.match(layer, [target])[0]]
    (pi, gi), = crit.match_one_to_many(layer, [target], 5)
    assert pi.tolist() == list(range(6)) and set(gi.tolist()) == {0, 1}
    empty = dict(target, keypoints=torch.zeros(0, K, 2), visible=torch.zeros(0, K), areas=torch.zeros(0))
    assert crit.match_one_to_many(layer, [empty], 3)[0][0].numel() == 0


def test_one_to_many_losses_are_named_weighted_and_use_their_own_matching():
    layer, targets = _case()
    aux = [{"keypoints": torch.cat([layer["keypoints"].detach()] * 2, 1), "sigma": torch.full((1, 6, K, 2), 0.1),
            "logits": torch.zeros(1, 6, 1)}]
    outputs = {"pose_layers": [layer], "aux_pose_layers": aux}
    flows = dict(enc_flow=RealNVP(), dec_flow=RealNVP(), flow=RealNVP())
    l1 = PAVENetCriterion(PoseHungarianMatcher(), K, one_to_many_k=2)(outputs, targets, **flows)
    l3 = PAVENetCriterion(PoseHungarianMatcher(), K, one_to_many_k=2, one_to_many_weight=3.0)(outputs, targets, **flows)
    assert {"loss_cls_o2m_d0", "loss_kpt_o2m_d0"} <= set(l1)
    assert l3["loss_cls_o2m_d0"].item() == pytest.approx(3 * l1["loss_cls_o2m_d0"].item(), rel=1e-5)
    assert l3["loss_cls"].item() == pytest.approx(l1["loss_cls"].item(), rel=1e-6)
    # 4 of the 6 auxiliary queries are positives (both people twice): focal loss of logit 0 for those.
    p = torch.tensor(0.5)
    pos, neg = 0.25 * (1 - p) ** 2 * -torch.log(p), 0.75 * p ** 2 * -torch.log(1 - p)
    assert l1["loss_cls_o2m_d0"].item() == pytest.approx(0.5 * (4 * pos + 2 * neg).item() / 4, rel=1e-5)


# ---------------------------------------------------------------- the training-only query group
def _tiny_cfg(**over):
    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.merge_from_list([x for item in over.items() for x in item])
    return cfg


def _clip(h, w, n=2, seed=0):
    from detectron2.structures import Instances, Keypoints

    g = torch.Generator().manual_seed(seed)
    inst = Instances((h, w))
    kp = torch.rand(n, K, 3, generator=g) * torch.tensor([w, h, 1.0])
    kp[..., 2] = 2.0
    inst.gt_keypoints = Keypoints(kp)
    inst.gt_areas = torch.full((n,), 0.3 * h * w)
    return {"images": torch.randint(0, 255, (3, 3, h, w), generator=g, dtype=torch.uint8), "instances": inst}


def test_one_to_many_group_is_training_only_and_never_reaches_the_one_to_one_outputs():
    torch.manual_seed(0)
    plain = build_model(_tiny_cfg())
    hybrid = build_model(_tiny_cfg(**{"MODEL.PAVENET.ONE_TO_MANY_QUERIES": 45}))
    # No parameters of its own: the same state dict (names, shapes), so the same inference cost and weights.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in hybrid.state_dict().items()}
    hybrid.load_state_dict(plain.state_dict())

    clip = _clip(96, 128, seed=1)
    x, hw = plain.preprocess_frames(clip["images"])
    with torch.no_grad():
        feats = plain.eval().encode_frames(x, hw)  # eval: batch-norm statistics stay those of the weights
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
    torch.testing.assert_close(out["input_references"], ref["input_references"], rtol=1e-5, atol=1e-5)

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


# ---------------------------------------------------------------- off in the official recipe
def _official_configs():
    files = [REPO_ROOT / "configs" / "Base-PAVENet.yaml"]
    for folder in ("posetrack17", "posetrack18", "posetrack21", "coco_pretrain"):
        files += sorted((REPO_ROOT / "configs" / folder).glob("*.yaml"))
    # The opt-in recipes (named *_hybrid*) are not the paper's; every other config there is.
    return [f for f in files if "_hybrid" not in f.name]


def test_new_switches_default_off_and_off_in_every_official_config():
    defaults = add_pavenet_config(get_cfg()).MODEL.PAVENET
    assert {k: defaults[k] for k in SWITCHES} == SWITCHES
    files = _official_configs()
    assert len(files) >= 12
    for f in files:
        P = load_pavenet_config(str(f)).MODEL.PAVENET
        assert {k: P[k] for k in SWITCHES} == SWITCHES, f


def test_opt_in_recipes_are_the_official_ones_plus_the_switches():
    variants = sorted((REPO_ROOT / "configs").glob("posetrack1[78]/*_hybrid*.yaml"))
    assert {v.parent.name for v in variants} == {"posetrack17", "posetrack18"}
    for v in variants:
        base = v.with_name(v.name.replace("_hybrid", ""))
        assert f'_BASE_: "{base.name}"' in v.read_text(), v
        on, off = load_pavenet_config(str(v)), load_pavenet_config(str(base))
        assert on.MODEL.PAVENET.OKS_QUALITY_TARGET and on.MODEL.PAVENET.ONE_TO_MANY_QUERIES > 0
        for key in (*SWITCHES, "ONE_TO_MANY_K", "ONE_TO_MANY_WEIGHT"):  # the switches and their settings
            on.MODEL.PAVENET[key] = off.MODEL.PAVENET[key]
        on.OUTPUT_DIR = off.OUTPUT_DIR
        assert on.dump() == off.dump(), v  # nothing else differs


# ---------------------------------------------------------------- reproducible main job
def _short_demo_training(out, seed):
    """The demo's seeding + config (with its data-loader worker and augmentation) for 2 iterations of 1 clip."""
    from detectron2.engine import HookBase

    from pavenet.data.synthetic import ensure_synthetic_dataset
    from pavenet.engine.demo_job import DemoTrainer, demo_cfg, seed_run

    ensure_synthetic_dataset()
    cfg = demo_cfg(str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml"), str(out), eval_period=0,
                   opts=["SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 1, "SEED", seed])
    seed_run(cfg)
    losses = []

    class Record(HookBase):
        def after_step(self):
            losses.append(self.trainer.storage.history("total_loss").latest())

    trainer = DemoTrainer(cfg)
    trainer.register_hooks([Record()])
    trainer.resume_or_load(resume=False)
    trainer.train()
    return losses, trainer.model.state_dict()


def test_two_short_demo_trainings_with_one_seed_are_identical(tmp_path, monkeypatch):
    torch.set_num_threads(2)  # as `make demo` on a 2-core machine (restored by the fixture)
    monkeypatch.chdir(REPO_ROOT)  # the synthetic data lives under $DETECTRON2_DATASETS (default: ./datasets)
    from pavenet.engine.demo_job import DemoTrainer

    # detectron2's EvalHook evaluates after the last iteration whatever the period; the demo's two full
    # evaluations of the synthetic val set (NMS-free and OKS-NMS) took ~95% of this test's time and do
    # not touch the seeded training it checks.
    monkeypatch.setattr(DemoTrainer, "_eval_and_record", lambda self: {})
    assert load_pavenet_config(str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml")).SEED == 42
    torch.manual_seed(123)  # whatever the process did before (different here), the run's seed decides
    l1, w1 = _short_demo_training(tmp_path / "a", 42)
    torch.manual_seed(456)
    l2, w2 = _short_demo_training(tmp_path / "b", 42)
    assert len(l1) == 2 and l1 == l2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
