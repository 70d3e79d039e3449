"""Hungarian pose matcher (docs/REFERENCE.md §8): hand-built assignments and hand-computed cost terms."""

import math

import pytest
import torch

from pavenet.data.keypoint_meta import POSETRACK_OKS_SIGMAS
from pavenet.modeling.matcher import PoseHungarianMatcher

K = 15


def _target(kpts, visible=None, areas=None, image_size=(100, 200)):
    kpts = torch.as_tensor(kpts, dtype=torch.float32)
    n = kpts.shape[0]
    return {
        "keypoints": kpts,
        "visible": torch.ones(n, K)
        if visible is None
        else torch.as_tensor(visible, dtype=torch.float32),
        "areas": torch.full((n,), 2000.0)
        if areas is None
        else torch.as_tensor(areas, dtype=torch.float32),
        "image_size": image_size,
    }


def _people(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 1, 2, generator=g) * 0.6 + 0.2
    return (centres + 0.05 * torch.randn(n, K, 2, generator=g)).clamp(0, 1)


def test_obvious_assignment_and_permutation_invariance():
    gt = _people(3)
    # Queries 4, 1, 6 are near-copies of GT 0, 1, 2; the rest are far away.
    preds = torch.rand(1, 8, K, 2) * 0.05
    for q, j in [(4, 0), (1, 1), (6, 2)]:
        preds[0, q] = gt[j] + 0.002
    logits = torch.zeros(1, 8, 1)
    matcher = PoseHungarianMatcher()
    ((pred_idx, gt_idx),) = matcher(logits, preds, [_target(gt)])
    assert dict(zip(pred_idx.tolist(), gt_idx.tolist())) == {1: 1, 4: 0, 6: 2}
    assert pred_idx.tolist() == sorted(pred_idx.tolist())

    # Permuting the queries permutes the result the same way.
    perm = torch.randperm(8)
    ((p2, g2),) = matcher(logits[:, perm], preds[:, perm], [_target(gt)])
    assert {int(perm[p]): int(g) for p, g in zip(p2, g2)} == {1: 1, 4: 0, 6: 2}
    # Permuting the GT permutes the GT indices.
    gperm = torch.tensor([2, 0, 1])
    ((p3, g3),) = matcher(logits, preds, [_target(gt[gperm])])
    assert {int(p): int(gperm[g]) for p, g in zip(p3, g3)} == {1: 1, 4: 0, 6: 2}


def test_classification_cost_breaks_ties():
    gt = _people(1)
    preds = gt[None].repeat(1, 3, 1, 1)  # three identical poses
    logits = torch.tensor([[[-3.0], [4.0], [0.0]]])
    ((pred_idx, gt_idx),) = PoseHungarianMatcher()(logits, preds, [_target(gt)])
    assert pred_idx.tolist() == [1] and gt_idx.tolist() == [0]


def test_empty_gt_and_batch():
    matcher = PoseHungarianMatcher()
    gt = _people(2)
    preds = torch.rand(2, 5, K, 2)
    empty = _target(torch.zeros(0, K, 2), visible=torch.zeros(0, K), areas=torch.zeros(0))
    out = matcher(torch.zeros(2, 5, 1), preds, [empty, _target(gt)])
    assert len(out) == 2
    assert out[0][0].numel() == 0 and out[0][1].numel() == 0 and out[0][0].dtype == torch.int64
    assert sorted(out[1][1].tolist()) == [0, 1]
    # More GT than queries: every query is used once.
    ((p, g),) = matcher(torch.zeros(1, 2, 1), preds[:1, :2], [_target(_people(4))])
    assert sorted(p.tolist()) == [0, 1] and len(set(g.tolist())) == 2


def test_valid_mask_excludes_rows_even_if_nan():
    gt = _people(1)
    preds = torch.rand(1, 4, K, 2)
    preds[0, 0] = gt[0]  # the perfect proposal ...
    preds[0, 3] = float("nan")  # ... and a garbage one, both invalid
    preds[0, 2] = gt[0] + 0.01
    valid = torch.tensor([[False, True, True, False]])
    ((p, g),) = PoseHungarianMatcher()(torch.zeros(1, 4, 1), preds, [_target(gt)], valid=valid)
    assert p.tolist() == [2] and g.tolist() == [0]
    # Without the mask the perfect one wins (and the nan row does not crash scipy).
    ((p, g),) = PoseHungarianMatcher()(torch.zeros(1, 4, 1), preds, [_target(gt)])
    assert p.tolist() == [0]


def test_class_cost_hand_computed():
    m = PoseHungarianMatcher(focal_alpha=0.25, focal_gamma=2.0)
    x = 0.7
    p = 1 / (1 + math.exp(-x))
    expected = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-12) - 0.75 * p**2 * -math.log(1 - p + 1e-12)
    c = m.class_cost(torch.tensor([[x], [x]]), 3)
    assert c.shape == (2, 3)
    assert torch.allclose(c, torch.full((2, 3), expected), atol=1e-6)


def test_l1_cost_hand_computed_with_invisible_joints():
    pred = torch.full((1, K, 2), 0.5)
    gt = torch.full((1, K, 2), 0.4)
    vis = torch.zeros(1, K)
    vis[0, :3] = 1  # 3 visible joints, each |0.1|+|0.1|
    pred[0, 5] = 100.0  # far-off prediction of an invisible joint must cost nothing
    c = PoseHungarianMatcher.kpt_l1_cost(pred, gt * vis[..., None], vis)
    assert c.shape == (1, 1)
    assert c.item() == pytest.approx(3 * 0.2 / (2 * 3), abs=1e-6)
    # No visible joint: the normaliser is clamped to 1 and the cost is 0.
    assert PoseHungarianMatcher.kpt_l1_cost(pred, gt, torch.zeros(1, K)).item() == 0.0


def test_oks_cost_hand_computed_in_pixels():
    m = PoseHungarianMatcher()
    h, w = 100, 200
    gt = torch.full((1, K, 2), 0.5)
    pred = gt.clone()
    pred[0, 0, 0] += 3.0 / w  # joint 0 is 3 px off in x
    pred[0, 1, 1] += 4.0 / h  # joint 1 is 4 px off in y
    vis = torch.zeros(1, K)
    vis[0, :4] = 1
    area = 900.0
    c = m.oks_cost(pred[None][0], gt, vis, torch.tensor([area]), (h, w))
    s = POSETRACK_OKS_SIGMAS
    e0 = 9.0 / (area * (2 * s[0]) ** 2 * 2)
    e1 = 16.0 / (area * (2 * s[1]) ** 2 * 2)
    expected = -(math.exp(-e0) + math.exp(-e1) + 1 + 1) / 4
    assert c.item() == pytest.approx(expected, rel=1e-5)


def test_total_cost_is_the_weighted_sum():
    m = PoseHungarianMatcher(cost_class=2.0, cost_kpt_l1=70.0, cost_oks=7.0)
    gt = _people(2)
    vis = (torch.rand(2, K) > 0.3).float()
    vis[:, 0] = 1
    tgt = _target(gt, visible=vis, areas=[1500.0, 3000.0])
    logits, preds = torch.randn(6, 1), torch.rand(6, K, 2)
    total = m.cost_matrix(logits, preds, tgt)
    gz = gt * vis[..., None]
    expected = (
        2.0 * m.class_cost(logits, 2)
        + 70.0 * m.kpt_l1_cost(preds, gz, vis)
        + 7.0 * m.oks_cost(preds, gz, vis, tgt["areas"], tgt["image_size"])
    )
    assert torch.allclose(total, expected, atol=1e-5)
    # And the assignment minimises it: brute force over all injective maps of 2 GT into 6 queries.
    ((p, g),) = m(logits[None], preds[None], [tgt])
    best = min(total[a, 0] + total[b, 1] for a in range(6) for b in range(6) if a != b)
    got = sum(total[pi, gi] for pi, gi in zip(p.tolist(), g.tolist()))
    assert float(got) == pytest.approx(float(best), abs=1e-5)


def test_bad_targets_raise_clear_errors():
    m = PoseHungarianMatcher()
    with pytest.raises(KeyError, match="areas"):
        m(
            torch.zeros(1, 2, 1),
            torch.rand(1, 2, K, 2),
            [
                {
                    "keypoints": torch.rand(1, K, 2),
                    "visible": torch.ones(1, K),
                    "image_size": (10, 10),
                }
            ],
        )
    with pytest.raises(ValueError, match="OKS sigmas"):
        m(
            torch.zeros(1, 2, 1),
            torch.rand(1, 2, 17, 2),
            [
                {
                    "keypoints": torch.rand(1, 17, 2),
                    "visible": torch.ones(1, 17),
                    "areas": torch.ones(1),
                    "image_size": (10, 10),
                }
            ],
        )
