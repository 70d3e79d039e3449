"""AP ranking and PCKh geometry at the unit level, each number computed by hand in the comments.

The cases are chosen so that a plausible one-line bug changes the number: a false positive ranked above
true positives (the precision envelope and the sort direction matter), a joint that is not predicted but
carries a high score (it must not be ranked), and head boxes whose x1 != y1 and w != h (a mixed-up
coordinate changes the head size).
"""

import math
import warnings

import numpy as np
import pytest
from test_eval_poseval import gt_ann, gt_seq, pose, pred_person, pred_seq, run

from pavenet.evaluation import poseval
from pavenet.evaluation.ap import pooled_joint_ap, voc_ap
from pavenet.evaluation.matching import pckh_distances
from pavenet.evaluation.poses import Poses


# ------------------------------------------------------------------------------------------------ voc_ap
def test_false_positive_ranked_first_uses_the_precision_envelope():
    # Input order TP, FP, TP with scores 0.7, 0.9, 0.8: ranked by score FP (0.9), TP (0.8), TP (0.7), 2 GT.
    # cumulative TP 0, 1, 2 -> recall 0, 1/2, 1; precision 0, 1/2, 2/3.
    # envelope (max of precision to the right): 2/3, 2/3, 2/3.
    # AP = (1/2 - 0) * 2/3 + (1 - 1/2) * 2/3 = 2/3.
    # (no envelope: 1/2 * 1/2 + 1/2 * 2/3 = 7/12; ascending sort TP, TP, FP: 1; input order: 5/6)
    ap, prec, rec = voc_ap(np.array([0.7, 0.9, 0.8]), np.array([True, False, True]), 2.0)
    assert ap == pytest.approx(100 * 2 / 3)
    assert prec == pytest.approx(100 * 2 / 3)  # last precision: 2 TP of 3
    assert rec == pytest.approx(100.0)


def test_partial_recall_counts_only_up_to_the_last_true_positive():
    # Ranked FP (0.9), TP (0.8), FP (0.3); 4 GT -> recall 0, 1/4, 1/4; precision 0, 1/2, 1/3.
    # Recall steps: 0 -> 1/4 at precision envelope 1/2, then the closing step 1/4 -> 1 at precision 0.
    # AP = 1/4 * 1/2 = 1/8.
    ap, prec, rec = voc_ap(np.array([0.3, 0.8, 0.9]), np.array([False, True, False]), 4.0)
    assert ap == pytest.approx(12.5)
    assert prec == pytest.approx(100 / 3)
    assert rec == pytest.approx(25.0)


def test_empty_cases_follow_poseval():
    assert voc_ap(np.zeros(0), np.zeros(0, dtype=bool), 3.0) == (
        0.0,
        0.0,
        0.0,
    )  # no prediction -> 0
    ap, _, _ = voc_ap(np.array([0.5]), np.array([False]), 0.0)  # no GT -> NaN
    assert math.isnan(ap)


def test_a_joint_without_gt_is_nan_without_numpy_warnings():
    # n_gt = 0 (a joint no GT annotates, e.g. a video without ankles): every prediction of it is a false
    # positive, recall is 0/0 -> NaN, AP NaN, precision 0; the 0/0 is expected, so no RuntimeWarning escapes.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ap, prec, rec = voc_ap(np.array([0.9, 0.5]), np.array([False, False]), 0.0)
    assert math.isnan(ap) and math.isnan(rec) and prec == 0.0


def test_pooled_ranking_is_global_and_skips_joints_not_predicted():
    # Two frames, one person each, K = 2 joints; GT joints: joint 0 in both frames, joint 1 in frame A only.
    # joint 0: frame A scores 0.9 and misses, frame B scores 0.8 and hits -> ranked FP, TP over 2 GT:
    #   recall 0, 1/2; precision 0, 1/2 -> AP = 1/2 * 1/2 = 25, last precision 50, recall 50.
    # joint 1: frame A scores 0.9 and hits; frame B's joint 1 is NOT predicted (its 0.95 is never ranked)
    #   -> TP over 1 GT: AP 100 (ranking it would give FP, TP -> 50).
    scores = [np.array([[0.9, 0.9]]), np.array([[0.8, 0.95]])]
    labels = [np.array([[False, True]]), np.array([[True, False]])]
    predicted = [np.array([[True, True]]), np.array([[True, False]])]
    ap, pre, rec = pooled_joint_ap(scores, labels, predicted, np.array([2.0, 1.0]))
    np.testing.assert_allclose(ap, [25.0, 100.0])
    np.testing.assert_allclose(pre, [50.0, 100.0])
    np.testing.assert_allclose(rec, [50.0, 100.0])
    # No evaluated frame with a prediction: AP 0 for every joint (poseval), shaped (K,).
    ap, pre, rec = pooled_joint_ap([], [], [], np.array([2.0, 1.0]))
    np.testing.assert_array_equal(ap, [0.0, 0.0])
    np.testing.assert_array_equal(rec, [0.0, 0.0])


def test_poseval_ap_with_a_false_positive_scored_above_two_true_positives():
    # GT: people A and B. Predictions: a person far from both scored 0.95 (FP on every joint), A exactly
    # (0.9), B exactly (0.8). Per joint: ranked FP, TP, TP over 2 GT -> AP 2/3 (first test), precision 2/3,
    # recall 1.
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]])
    pred = pred_seq(
        gt,
        [[pred_person(pose((900, 900)), 0.95, 0), pred_person(a, 0.9, 1), pred_person(b, 0.8, 2)]],
    )
    res = run(gt, pred, eval_track=False)
    np.testing.assert_allclose(res.ap, 100 * 2 / 3)
    np.testing.assert_allclose(res.precision, 100 * 2 / 3)
    np.testing.assert_allclose(res.recall, 100.0)
    assert res.summary()["AP"]["Mean"] == pytest.approx(100 * 2 / 3)


# ------------------------------------------------------------------------------------------------ head boxes
HEAD_XYXY = (
    10.0,
    50.0,
    40.0,
    90.0,
)  # x1 != y1, w = 30 != h = 40: diagonal 50 -> head size 0.6 * 50 = 30


def _poses(xy, head=None):
    p = Poses.allocate(1)
    p.xy[0] = xy
    p.present[0] = True
    if head is not None:
        p.head[0] = head
    return p


def test_pckh_distance_uses_the_gt_head_diagonal_with_x1_not_y1():
    # Joint offsets of (9, 12) px = 15 px and (0, 6) px: distances 15 / 30 = 0.5 and 6 / 30 = 0.2.
    # A mixed-up coordinate, e.g. (x2 - y1, y2 - x1) = (-10, 80), gives head size 0.6 * 80.6 = 48.4.
    gt_xy = pose((200, 200))
    pred_xy = gt_xy.copy()
    pred_xy[:7] += (9.0, 12.0)
    pred_xy[7:] += (0.0, 6.0)
    d = pckh_distances(_poses(gt_xy, HEAD_XYXY), _poses(pred_xy))
    assert d.shape == (1, 1, 15)
    np.testing.assert_allclose(d[0, 0, :7], 0.5, rtol=1e-12)
    np.testing.assert_allclose(d[0, 0, 7:], 0.2, rtol=1e-12)
    # Only the GT's head box counts (the prediction's is never read).
    d2 = pckh_distances(_poses(gt_xy, HEAD_XYXY), _poses(pred_xy, (0.0, 0.0, 1.0, 1.0)))
    np.testing.assert_array_equal(d, d2)


def test_readers_keep_head_box_corners_in_order_2018_and_2017():
    # 2018: bbox_head [x, y, w, h] = [10, 50, 30, 40] -> (x1, y1, x2, y2) = (10, 50, 40, 90).
    gt = gt_seq("000001_mpii_test", [[gt_ann(pose(), 1, head=HEAD_XYXY)]])
    frames, _, _ = poseval.parse_posetrack(gt, "gt18.json")
    np.testing.assert_array_equal(frames[0].head[0], HEAD_XYXY)
    # 2017: x1, y1, x2, y2 given as such.
    rect = {
        "x1": [10],
        "y1": [50],
        "x2": [40],
        "y2": [90],
        "track_id": [0],
        "annopoints": [{"point": [{"id": [13], "x": [5], "y": [6]}]}],
    }
    data = {
        "annolist": [{"image": [{"name": "images/x/000001_mpii/00000001.jpg"}], "annorect": [rect]}]
    }
    frames, _, _ = poseval.parse_posetrack(data, "gt17.json")
    np.testing.assert_array_equal(frames[0].head[0], HEAD_XYXY)


def test_poseval_threshold_with_a_head_box_off_the_diagonal():
    # Same offsets end to end: 15 px = 0.5 head sizes is a hit (inclusive), 15.3 px (9, 12.5) a miss.
    a = pose()
    jitter = a.copy()
    jitter[:7] += (9.0, 12.0)
    jitter[7:] += (9.0, 12.5)
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1, head=HEAD_XYXY)]])
    res = run(gt, pred_seq(gt, [[pred_person(jitter)]]), eval_track=False)
    np.testing.assert_allclose(res.ap[:7], 100.0)
    np.testing.assert_allclose(res.ap[7:], 0.0)
