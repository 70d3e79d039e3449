"""RealNVP, RLE loss and PAVENetCriterion (docs/REFERENCE.md §7, §8)."""

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from pavenet.modeling.criterion import PAVENetCriterion, build_criterion, targets_from_instances
from pavenet.modeling.matcher import PoseHungarianMatcher
from pavenet.modeling.rle import RealNVP, rle_loss

from conftest import BASE_CONFIG

K = 15


# ---------------------------------------------------------------- RealNVP
def _small_flow(scale=0.3, seed=0):
    torch.manual_seed(seed)
    flow = RealNVP()
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(scale)
    return flow


def test_realnvp_state_dict_matches_official_names(official_keys_file):
    official = {}
    for line in official_keys_file.read_text().splitlines():
        if line.startswith("bbox_head.enc_flow."):
            name, shape = line.split(" ", 1)
            official[name[len("bbox_head.enc_flow.") :]] = tuple(
                int(v) for v in shape.strip("[] ").split(",")
            )
    ours = {k: tuple(v.shape) for k, v in RealNVP().state_dict().items()}
    assert ours == official


def test_realnvp_mask_and_default_init():
    flow = RealNVP()
    assert flow.mask.tolist() == [[0, 1], [1, 0]] * 3
    assert isinstance(flow.s[0][5], torch.nn.Tanh) and len(flow.t[0]) == 5
    # PyTorch's default Linear init (U(+-1/sqrt(fan_in))), not the unused official xavier(gain 0.01) _init.
    w = flow.s[2][4].weight
    assert 0.05 < w.abs().max().item() <= 1 / math.sqrt(64) + 1e-6


def test_realnvp_log_prob_equals_change_of_variables_by_autograd():
    flow = _small_flow(scale=1.0, seed=1)
    x = torch.randn(5, 2, dtype=torch.float64)
    flow = flow.double()
    got = flow.log_prob(x)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow.inverse(v[None])[0][0], x[i]
        )  # dz/dx (2, 2)
        z = flow.inverse(x[i][None])[0][0]
        base = torch.distributions.MultivariateNormal(
            torch.full((2,), 0.5, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        )
        expected = base.log_prob(z) + torch.log(torch.det(jac).abs())
        assert got[i].item() == pytest.approx(expected.item(), abs=1e-9)
    # forward_transform is the exact inverse, and log_prob keeps leading dims.
    assert torch.allclose(flow.forward_transform(flow.inverse(x)[0]), x, atol=1e-10)
    assert flow.log_prob(torch.randn(3, 4, 2, dtype=torch.float64)).shape == (3, 4)


def test_realnvp_density_integrates_to_one():
    flow = _small_flow(scale=0.3, seed=2).double()
    lin = torch.linspace(-7.5, 8.5, 321, dtype=torch.float64)
    gx, gy = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([gx, gy], -1).reshape(-1, 2)
    cell = (lin[1] - lin[0]) ** 2
    with torch.no_grad():
        mass = (flow.log_prob(pts).exp().sum() * cell).item()
    assert mass == pytest.approx(1.0, abs=2e-3)
    # The base mean is 0.5: with identity couplings the mode sits at (0.5, 0.5).
    ident = RealNVP()
    for p in ident.parameters():
        torch.nn.init.zeros_(p)
    lp = ident.log_prob(torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    assert lp[0].item() == pytest.approx(-math.log(2 * math.pi), abs=1e-6)
    assert lp[1].item() == pytest.approx(-math.log(2 * math.pi) - 0.25, abs=1e-6)


# ---------------------------------------------------------------- RLE loss
def _hand_rle(pred, sigma, target, visible, log_phi_fn, normaliser):
    total = 0.0
    for n in range(len(pred)):
        for k in range(len(pred[0])):
            if visible[n][k] == 0:
                continue
            u = [(pred[n][k][d] - target[n][k][d]) / sigma[n][k][d] for d in range(2)]
            lphi = log_phi_fn(u)
            for d in range(2):
                s, mu, y = sigma[n][k][d], pred[n][k][d], target[n][k][d]
                total += visible[n][k] * (
                    math.log(s)
                    - lphi
                    + math.log(s * math.sqrt(2 * math.pi))
                    + abs(y - mu) / (math.sqrt(2) * s + 1e-9)
                )
    return total / normaliser


def test_rle_loss_matches_hand_formula_identity_flow():
    flow = RealNVP()
    for p in flow.parameters():
        torch.nn.init.zeros_(p)

    def log_phi(u):  # N((0.5, 0.5), I)
        return -math.log(2 * math.pi) - 0.5 * ((u[0] - 0.5) ** 2 + (u[1] - 0.5) ** 2)

    g = torch.Generator().manual_seed(3)
    pred, target = torch.rand(2, 3, 2, generator=g), torch.rand(2, 3, 2, generator=g)
    sigma = torch.rand(2, 3, 2, generator=g) * 0.5 + 0.05
    visible = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    got = rle_loss(pred, sigma, target, visible, flow)
    expected = _hand_rle(
        pred.tolist(), sigma.tolist(), target.tolist(), visible.tolist(), log_phi, 2 * 4
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # An explicit normaliser divides instead.
    assert rle_loss(pred, sigma, target, visible, flow, normaliser=3.0).item() == pytest.approx(
        expected * 8 / 3, rel=1e-5
    )


def test_rle_loss_matches_hand_formula_random_flow():
    flow = _small_flow(scale=1.0, seed=4)
    g = torch.Generator().manual_seed(5)
    pred, target = torch.rand(1, 4, 2, generator=g), torch.rand(1, 4, 2, generator=g)
    sigma = torch.rand(1, 4, 2, generator=g) * 0.3 + 0.1
    visible = torch.tensor([[1.0, 1.0, 0.0, 1.0]])

    def log_phi(u):
        return flow.log_prob(torch.tensor([u])).item()

    got = rle_loss(pred, sigma, target, visible, flow)
    expected = _hand_rle(
        pred.tolist(), sigma.tolist(), target.tolist(), visible.tolist(), log_phi, 6
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_rle_loss_decreases_toward_gt_and_ignores_invisible_nan():
    flow = _small_flow(scale=0.5, seed=6)
    target = torch.rand(2, K, 2)
    sigma = torch.full((2, K, 2), 0.1)
    visible = torch.ones(2, K)
    offset = torch.randn(2, K, 2) * 0.2
    losses = [
        rle_loss(target + a * offset, sigma, target, visible, flow).item() for a in (1.0, 0.5, 0.1)
    ]
    assert losses[0] > losses[1] > losses[2]
    # An invisible joint with a nan prediction changes nothing and leaves the gradient finite.
    visible[0, 3] = 0
    pred = (target + 0.1 * offset).clone()
    base = rle_loss(pred, sigma, target, visible, flow)
    pred[0, 3] = float("nan")
    pred.requires_grad_(True)
    loss = rle_loss(pred, sigma, target, visible, flow)
    loss.backward()
    assert loss.item() == pytest.approx(base.item(), rel=1e-6)
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 3].abs().sum() == 0
    # Nothing visible: zero loss that still reaches the flow parameters (DDP-safe).
    flow.zero_grad()
    zero = rle_loss(pred.detach(), sigma, target, torch.zeros(2, K), flow)
    zero.backward()
    assert zero.item() == 0.0 and all(p.grad is not None for p in flow.parameters())


# ---------------------------------------------------------------- criterion
def _layer(b, q, seed, with_logits=True):
    g = torch.Generator().manual_seed(seed)
    out = {
        "keypoints": torch.rand(b, q, K, 2, generator=g).requires_grad_(),
        "sigma": (torch.rand(b, q, K, 2, generator=g) * 0.5 + 0.05).requires_grad_(),
    }
    if with_logits:
        out["logits"] = torch.randn(b, q, 1, generator=g).requires_grad_()
    return out


def _targets():
    g = torch.Generator().manual_seed(7)
    vis = (torch.rand(3, K, generator=g) > 0.3).float()
    vis[:, 0] = 1
    return [
        {
            "keypoints": torch.rand(3, K, 2, generator=g),
            "visible": vis,
            "areas": torch.tensor([900.0, 2500, 400]),
            "image_size": (64, 96),
        },
        {
            "keypoints": torch.zeros(0, K, 2),
            "visible": torch.zeros(0, K),
            "areas": torch.zeros(0),
            "image_size": (80, 64),
        },  # an empty-GT clip
    ]


def _outputs(criterion, targets, s=40, q=12, num_layers=3, num_joint_layers=2):
    enc = _layer(2, s, 10)
    valid = torch.ones(2, s, dtype=torch.bool)
    valid[:, -8:] = False
    with (
        torch.no_grad()
    ):  # invalid tokens carry inf proposals as in the official code (sigmoid(inf) = 1)
        enc["keypoints"][:, -8:] = float("inf")
        enc["sigma"][:, -8:] = float("nan")
    enc["valid"] = valid
    pose = [_layer(2, q, 20 + i) for i in range(num_layers)]
    idx = criterion.match(pose[-1], targets)
    m = sum(len(i) for i, _ in idx)
    joints = [_layer(1, m, 30 + j, with_logits=False) for j in range(num_joint_layers)]
    joints = [{k: v[0].detach().requires_grad_() for k, v in jl.items()} for jl in joints]
    return {"enc": enc, "pose_layers": pose, "joint_layers": joints}, idx


def _flows():
    return RealNVP(), RealNVP(), RealNVP()


def test_criterion_losses_finite_with_gradients_everywhere():
    criterion = PAVENetCriterion(PoseHungarianMatcher(), K)
    targets = _targets()
    outputs, idx = _outputs(criterion, targets)
    enc_flow, dec_flow, flow = _flows()
    losses = criterion(outputs, targets, idx, enc_flow=enc_flow, dec_flow=dec_flow, flow=flow)
    assert set(losses) == {
        "loss_cls_enc",
        "loss_kpt_enc",
        "loss_cls_d0",
        "loss_kpt_d0",
        "loss_cls_d1",
        "loss_kpt_d1",
        "loss_cls",
        "loss_kpt",
        "loss_kpt_refine_d0",
        "loss_kpt_refine_d1",
    }
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    tensors = [outputs["enc"]["logits"]] + [
        t for layer in outputs["pose_layers"] + outputs["joint_layers"] for t in layer.values()
    ]
    for t in tensors:
        assert t.grad is not None and torch.isfinite(t.grad).all()
    enc_grad = outputs["enc"]["keypoints"].grad
    assert enc_grad[:, -8:].abs().sum() == 0  # invalid tokens never matched
    for f in (enc_flow, dec_flow, flow):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in f.parameters())


def test_cls_loss_is_focal_sum_over_matched_count_and_weights_apply():
    targets = _targets()
    crit1 = PAVENetCriterion(PoseHungarianMatcher(), K, class_weight=1.0, normalization="batch")
    crit3 = PAVENetCriterion(
        PoseHungarianMatcher(), K, class_weight=3.0, rle_weight=2.0, normalization="batch"
    )
    outputs, idx = _outputs(crit1, targets)
    flows = dict(zip(("enc_flow", "dec_flow", "flow"), _flows()))
    l1 = crit1(outputs, targets, idx, **flows)
    l3 = crit3(outputs, targets, idx, **flows)
    logits = outputs["pose_layers"][-1]["logits"]
    onehot = torch.zeros_like(logits)
    for b, (p, _) in enumerate(idx):
        onehot[b, p] = 1
    expected = (
        sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum") / 3
    )  # 3 matched
    assert l1["loss_cls"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert l3["loss_cls"].item() == pytest.approx(3 * l1["loss_cls"].item(), rel=1e-5)
    assert l3["loss_kpt"].item() == pytest.approx(2 * l1["loss_kpt"].item(), rel=1e-5)
    assert l3["loss_kpt_enc"].item() == pytest.approx(l1["loss_kpt_enc"].item(), rel=1e-5)


def test_clip_normalization_is_the_mean_of_each_clip_alone():
    """ "clip" (official: 1 clip per step, N accumulation steps): every term is the mean over clips of that
    clip's own loss; "batch" normalises by the whole batch's counts, which differs when counts differ."""
    targets = _targets()
    g = torch.Generator().manual_seed(11)
    targets[1] = {
        "keypoints": torch.rand(1, K, 2, generator=g),
        "visible": torch.ones(1, K),
        "areas": torch.tensor([700.0]),
        "image_size": (80, 64),
    }
    per_clip = PAVENetCriterion(PoseHungarianMatcher(), K, normalization="clip")
    batch = PAVENetCriterion(PoseHungarianMatcher(), K, normalization="batch")
    outputs, idx = _outputs(per_clip, targets)
    flows = dict(zip(("enc_flow", "dec_flow", "flow"), _flows()))
    got = per_clip(outputs, targets, idx, **flows)
    rows = [len(i) for i, _ in idx]
    alone = []
    for b in range(2):
        one = {
            "enc": {k: v[b : b + 1] for k, v in outputs["enc"].items()},
            "pose_layers": [
                {k: v[b : b + 1] for k, v in layer.items()} for layer in outputs["pose_layers"]
            ],
            "joint_layers": [
                {k: v[sum(rows[:b]) : sum(rows[: b + 1])] for k, v in layer.items()}
                for layer in outputs["joint_layers"]
            ],
        }
        alone.append(batch(one, [targets[b]], [idx[b]], **flows))
    for name, value in got.items():
        assert value.item() == pytest.approx(
            (alone[0][name] + alone[1][name]).item() / 2, rel=1e-5
        ), name
    whole = batch(outputs, targets, idx, **flows)
    assert abs(whole["loss_cls"].item() - got["loss_cls"].item()) > 1e-3 * got["loss_cls"].item()
    with pytest.raises(ValueError, match="LOSS_NORMALIZATION"):
        PAVENetCriterion(PoseHungarianMatcher(), K, normalization="sample")


def test_joint_layers_reuse_last_layer_matching():
    criterion = PAVENetCriterion(PoseHungarianMatcher(), K)
    targets = _targets()
    outputs, idx = _outputs(criterion, targets)
    flows = dict(zip(("enc_flow", "dec_flow", "flow"), _flows()))
    # Joint rows exactly at the GT of their matched person (in last_layer_indices order) beat shuffled rows.
    gt = torch.cat([t["keypoints"][j] for t, (_, j) in zip(targets, idx)])
    for layer in outputs["joint_layers"]:
        layer["keypoints"] = gt.clone().requires_grad_()
        layer["sigma"] = torch.full_like(gt, 0.05).requires_grad_()
    good = criterion(outputs, targets, idx, **flows)["loss_kpt_refine_d1"].item()
    outputs["joint_layers"][1]["keypoints"] = gt[[1, 2, 0]].clone().requires_grad_()
    bad = criterion(outputs, targets, idx, **flows)["loss_kpt_refine_d1"].item()
    assert good < bad
    # Computing the last-layer matching internally gives the same losses.
    again = criterion(outputs, targets, None, **flows)
    assert again["loss_kpt_refine_d1"].item() == pytest.approx(bad, rel=1e-6)
    # Wrong number of joint rows is a clear error.
    outputs["joint_layers"][0]["keypoints"] = gt[:2].clone()
    with pytest.raises(ValueError, match="matched persons"):
        criterion(outputs, targets, idx, **flows)


def test_all_empty_gt_and_no_deep_supervision():
    criterion = PAVENetCriterion(PoseHungarianMatcher(), K, deep_supervision=False)
    targets = [_targets()[1], _targets()[1]]
    outputs, idx = _outputs(criterion, targets)
    # Joint outputs with nobody matched (a caller's; PAVENet itself passes no joint layers then).
    outputs["joint_layers"] = [
        {k: v.new_zeros(1, K, 2).requires_grad_() for k, v in jl.items()}
        for jl in outputs["joint_layers"]
    ]
    flows = dict(zip(("enc_flow", "dec_flow", "flow"), _flows()))
    losses = criterion(outputs, targets, idx, **flows)
    assert set(losses) == {
        "loss_cls_enc",
        "loss_kpt_enc",
        "loss_cls",
        "loss_kpt",
        "loss_kpt_refine_d1",
    }
    assert losses["loss_kpt"].item() == 0 and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert outputs["pose_layers"][-1]["keypoints"].grad is not None
    assert all(p.grad is not None for p in flows["flow"].parameters())


def test_training_signal_decreases_loss():
    """A few SGD steps on free predictions lower every loss term (the losses point the right way)."""
    criterion = PAVENetCriterion(PoseHungarianMatcher(), K)
    targets = _targets()[:1]
    torch.manual_seed(0)
    params = {
        "logits": torch.zeros(1, 6, 1, requires_grad=True),
        "kpt": torch.zeros(1, 6, K, 2, requires_grad=True),
        "sig": torch.zeros(1, 6, K, 2, requires_grad=True),
    }
    flows = dict(zip(("enc_flow", "dec_flow", "flow"), _flows()))
    opt = torch.optim.Adam(list(params.values()), lr=0.05)

    def step():
        layer = {
            "logits": params["logits"],
            "keypoints": params["kpt"].sigmoid(),
            "sigma": params["sig"].sigmoid(),
        }
        return criterion({"pose_layers": [layer]}, targets, None, **flows)

    first = {k: v.item() for k, v in step().items()}
    for _ in range(60):
        opt.zero_grad()
        sum(step().values()).backward()
        opt.step()
    last = {k: v.item() for k, v in step().items()}
    assert set(first) == {"loss_cls", "loss_kpt"}
    assert all(last[k] < first[k] for k in first), (first, last)


def test_build_from_config_and_targets_from_instances():
    from detectron2.config import get_cfg
    from detectron2.structures import Boxes, Instances, Keypoints

    from pavenet.config import add_pavenet_config

    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(BASE_CONFIG))
    cfg.MODEL.PAVENET.CLASS_WEIGHT = 2.0
    crit = build_criterion(cfg)
    assert (
        crit.class_weight == 2.0
        and crit.matcher.cost_kpt_l1 == 70.0
        and len(crit.matcher.oks_sigmas) == 15
    )
    cfg.MODEL.PAVENET.NUM_KEYPOINTS = 17
    assert len(build_criterion(cfg).matcher.oks_sigmas) == 17

    inst = Instances((50, 100))
    kp = torch.zeros(2, K, 3)
    kp[0, :, 0], kp[0, :, 1], kp[0, :4, 2] = 50.0, 25.0, 2.0  # person 0: 4 visible joints
    inst.gt_keypoints = Keypoints(kp)  # person 1: nothing visible -> dropped
    inst.gt_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [0, 0, 5, 5]]))
    inst.gt_areas = torch.tensor([321.0, 5.0])
    t = targets_from_instances(inst)
    assert t["image_size"] == (50, 100)
    assert t["keypoints"].shape == (1, K, 2) and torch.allclose(
        t["keypoints"][0, 0], torch.tensor([0.5, 0.5])
    )
    assert t["visible"].sum().item() == 4 and t["areas"].tolist() == [321.0]
