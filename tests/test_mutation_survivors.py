"""Cases for changes that survived `make mutate` (docs/TESTING.md): each test names the behaviour a surviving
mutant broke without any other selected test noticing. Hand-computed expectations in the comments.
"""

import json
import warnings

import numpy as np
import pytest
import torch
from detectron2.structures import Instances

from pavenet.data.clip_sampler import clip_file_names, clips_from_frames, frames_for_clips
from pavenet.evaluation.matching import assign_people, pckh_distances, points_strictly_inside
from pavenet.evaluation.mota import MOTAccumulator, clear_mot_metrics
from pavenet.evaluation.poses import Poses
from pavenet.inference.tracker import PoseTracker, pose_oks
from pavenet.modeling.matcher import PoseHungarianMatcher, check_targets
from pavenet.utils.atomic import atomic_path, atomic_write_json

SIGMAS = (0.5, 0.5)
BASE = np.array([[0.0, 0.0], [4.0, 3.0]])


# ------------------------------------------------------------------------------------------------ tracker
def _still(n_windows_missing, **kw):
    """Track ids of one person seen in window 0, missing for `n_windows_missing` windows, then seen again
    at the same place (OKS 1)."""
    tracker = PoseTracker(3, SIGMAS, **kw)
    person = np.broadcast_to(BASE, (1, 3, 2, 2))
    first = tracker.update(person)
    for _ in range(n_windows_missing):
        tracker.update(np.zeros((0, 3, 2, 2)))
    return first.tolist() + tracker.update(person).tolist()


def test_default_patience_is_two_windows():
    # A track survives `patience` windows without a match: missing 2 windows keeps id 0, missing 3 starts
    # id 1 (PoseTracker's documented default, and TEST.POSETRACK.TRACK_PATIENCE's).
    assert _still(2) == [0, 0]
    assert _still(3) == [0, 1]
    assert _still(0, patience=0) == [0, 0] and _still(1, patience=0) == [0, 1]


def test_bad_settings_name_the_option():
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        PoseTracker(0)
    with pytest.raises(ValueError, match="patience must be >= 0, got -1"):
        PoseTracker(3, patience=-1)


@pytest.mark.parametrize("make", [lambda a: a, lambda a: torch.tensor(a, requires_grad=True)])
def test_update_instances_takes_numpy_and_tensors_that_require_grad(make):
    # Instances fields may be numpy arrays, and a tensor from a training-mode forward still carries grad.
    inst = Instances((10, 10))
    inst.pred_frame_keypoints = make(
        np.broadcast_to(BASE, (2, 3, 2, 2)) + np.array([[[[0.0]]], [[[50.0]]]])
    )
    tracker = PoseTracker(3, SIGMAS)
    ids = tracker.update_instances(inst).pred_track_ids
    assert ids.dtype == torch.int64 and ids.tolist() == [0, 1]


def test_pose_oks_floors_the_scale_of_collapsed_poses_at_one_pixel():
    # Every joint at one point: keypoint-extent area 0, scale floored at 1 px^2. With sigmas 0.5 (variance 1)
    # and a 1 px shift: OKS = exp(-1 / (2 x 1 x 1)) = exp(-1/2); the same pose gives exactly 1 (not 0/0).
    dot = np.zeros((1, 2, 2))
    assert pose_oks(dot, dot, SIGMAS)[0, 0] == 1.0
    assert pose_oks(dot, dot + [1.0, 0.0], SIGMAS)[0, 0] == pytest.approx(np.exp(-0.5), rel=1e-12)


# ------------------------------------------------------------------------------------------------ ignore regions
def test_points_inside_a_triangle_and_a_single_point():
    # A triangle is the smallest polygon: (1, 1) is strictly inside (0, 0), (4, 0), (0, 4); (3, 3) is outside
    # (x + y = 6 > 4). One point alone is answered too.
    tri = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    assert points_strictly_inside(np.array([[1.0, 1.0], [3.0, 3.0]]), tri).tolist() == [True, False]
    assert points_strictly_inside(np.array([[1.0, 1.0]]), tri).tolist() == [True]
    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    assert points_strictly_inside(np.array([[5.0, 5.0]]), square).tolist() == [True]


def test_points_inside_a_slanted_polygon_by_hand():
    # The diamond |x - 12| + |y - 7| < 2 (vertices (10, 7), (12, 5), (14, 7), (12, 9): every edge slanted, no
    # vertex at y = 0). Inside iff |dx| + |dy| < 2; on an edge (= 2) is outside, like a vertex.
    #   (12, 7) 0 in; (11, 7.5) 1.5 in; (10.6, 7.2) 1.6 in; (13.9, 7.05) 1.95 in;
    #   (13.5, 8) 2.5 out; (13.9, 7.2) 2.1 out; (9, 7), (15, 7) on the vertices' row, outside;
    #   (13, 6), (11, 8) on edges; (12, 9) a vertex.
    diamond = np.array([[10.0, 7.0], [12.0, 5.0], [14.0, 7.0], [12.0, 9.0]])
    pts = np.array(
        [
            [12.0, 7.0],
            [11.0, 7.5],
            [10.6, 7.2],
            [13.9, 7.05],
            [13.5, 8.0],
            [13.9, 7.2],
            [9.0, 7.0],
            [15.0, 7.0],
            [13.0, 6.0],
            [11.0, 8.0],
            [12.0, 9.0],
        ]
    )
    expected = [True, True, True, True] + [False] * 7
    assert points_strictly_inside(pts, diamond).tolist() == expected
    # Horizontal edges divide by zero in the crossing formula (expected, so silent): a point on an edge's line
    # outside the square (12, 0), one on the top edge (5, 10), one on the left edge (0, 3).
    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = points_strictly_inside(
            np.array([[5.0, 5.0], [12.0, 0.0], [5.0, 10.0], [0.0, 3.0]]), square
        )
    assert got.tolist() == [True, False, False, False]


def test_a_degenerate_polygon_contains_nothing_as_a_bool_per_point():
    # Fewer than 3 vertices: nothing inside; the answer is still one bool per point (it is OR-ed into masks).
    out = points_strictly_inside(
        np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), np.array([[0.0, 0.0], [4.0, 4.0]])
    )
    assert out.dtype == bool and out.tolist() == [False, False, False]


def test_person_assignment_normalises_by_each_gts_annotated_joints():
    # GT 0 has 1 annotated joint, GT 1 has 15. The prediction hits GT 0's joint (PCKh 1/1 = 1) and 10 of GT 1's
    # joints (10/15 = 0.67): it prefers GT 0. (Dividing GT 0 by max(1, 2) = 2 would make it prefer GT 1.)
    gt_present = np.zeros((2, 15), dtype=bool)
    gt_present[0, 0] = True
    gt_present[1] = True
    match = np.zeros((1, 2, 15), dtype=bool)
    match[0, 0, 0] = True
    match[0, 1, :10] = True
    assert assign_people(match, gt_present).tolist() == [0]


def test_pckh_distance_is_inf_where_a_joint_is_missing_and_quiet_for_a_zero_head_box():
    # Joint 3 is not annotated in the GT and joint 4 not predicted: inf even though the coordinates agree.
    # A zero-size head box (as written for some GT people): distance 6 / 0 = inf, and 0 / 0 = NaN for a
    # prediction exactly on the joint; neither matches, and neither warns.
    gt, pred = Poses.allocate(1), Poses.allocate(1)
    gt.xy[0] = pred.xy[0] = np.arange(30.0).reshape(15, 2)
    gt.present[0], pred.present[0] = True, True
    gt.present[0, 3] = pred.present[0, 4] = False
    gt.head[0] = (0.0, 0.0, 30.0, 40.0)
    d = pckh_distances(gt, pred)[0, 0]
    assert np.isinf(d[3]) and np.isinf(d[4]) and (np.delete(d, [3, 4]) == 0).all()
    gt.head[0] = (5.0, 5.0, 5.0, 5.0)
    pred.xy[0, 0] += (6.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = pckh_distances(gt, pred)[0, 0]
    assert np.isinf(d[0]) and np.isnan(d[1])


# ------------------------------------------------------------------------------------------------ MOT formulas
def test_clear_mot_metrics_by_hand():
    # Three joints' summed counters:
    #  joint 0: 5 objects, 3 matches, 1 switch, 1 miss, 2 FPs, distance 0.8 -> paired 4;
    #    MOTA 100 (1 - (1 + 1 + 2) / 5) = 20, MOTP 100 (1 - 0.8 / 4) = 80, precision 100 x 4 / 6, recall 80.
    #  joint 1: 1 object matched once at distance 0.25 -> MOTA 100, MOTP 75, precision and recall 100.
    #  joint 2: no object, 2 FPs, nothing paired -> MOTA, MOTP, recall NaN; precision 0 / 2 = 0.
    counts = {
        "objects": np.array([5, 1, 0]),
        "matches": np.array([3, 1, 0]),
        "switches": np.array([1, 0, 0]),
        "misses": np.array([1, 0, 0]),
        "false_positives": np.array([2, 0, 2]),
    }
    out = clear_mot_metrics(counts, np.array([0.8, 0.25, 0.0]))
    np.testing.assert_allclose(out["mota"], [20.0, 100.0, np.nan])
    np.testing.assert_allclose(out["motp"], [80.0, 75.0, np.nan])
    np.testing.assert_allclose(out["mot_precision"], [100 * 4 / 6, 100.0, 0.0])
    np.testing.assert_allclose(out["mot_recall"], [80.0, 100.0, np.nan])


def test_mot_accumulator_with_duplicate_hypothesis_ids():
    # py-motmetrics keeps a pairing with the FIRST still-free hypothesis carrying the previous id.
    # t0: object 1 - hypothesis 10 (0.1): match. t1: hypotheses 20, 10, 10 at 0.3, 0.4, 0.1: the pairing is kept
    # with the first 10 (0.4, not the cheaper second one): match, 2 FPs. t2: hypotheses 30, 30 (0.2, 0.3): the
    # old id is gone, the min-cost pairing takes the first 30 (0.2): a switch, 1 FP.
    # Totals: 2 matches, 1 switch, 0 misses, 3 FPs, 3 objects, distance 0.1 + 0.4 + 0.2 = 0.7.
    acc = MOTAccumulator()
    acc.update(np.array([1]), np.array([10]), np.array([[0.1]]))
    acc.update(np.array([1]), np.array([20, 10, 10]), np.array([[0.3, 0.4, 0.1]]))
    acc.update(np.array([1]), np.array([30, 30]), np.array([[0.2, 0.3]]))
    assert (acc.matches, acc.switches, acc.misses, acc.false_positives, acc.objects) == (
        2,
        1,
        0,
        3,
        3,
    )
    assert acc.total_distance == pytest.approx(0.7)


def test_mot_accumulator_prefers_more_pairs_at_any_distance():
    # Object 2 may only pair with hypothesis 10, so the maximum cardinality is 1-20 and 2-10 (6 in all), although
    # 1-10 alone is as cheap: a forbidden pair must cost more than any allowed assignment, whatever the scale.
    acc = MOTAccumulator()
    acc.update(np.array([1, 2]), np.array([10, 20]), np.array([[3.0, 3.0], [3.0, np.nan]]))
    assert (acc.matches, acc.misses, acc.false_positives, acc.total_distance) == (2, 0, 0, 6.0)


# ------------------------------------------------------------------------------------------------ clip sampler
def test_strided_clips_are_read_and_built_with_their_stride():
    # F = 3, stride 2, 8 frames: key 1 -> frames 0 (1-2 clamped), 1, 3; key 4 -> 2, 4, 6.
    assert frames_for_clips([1, 4], 3, 8, stride=2) == [0, 1, 2, 3, 4, 6]
    clips = list(clips_from_frames(((i, f"f{i}") for i in range(8)), [1, 4], 3, 8, stride=2))
    assert clips == [(1, ["f0", "f1", "f3"]), (4, ["f2", "f4", "f6"])]


def test_frames_that_end_early_name_the_missing_position_and_key():
    # Key 4 of a 10-frame video with F = 3 needs frames 3, 4, 5; the source stops after frame 4.
    with pytest.raises(ValueError, match="frames ended before position 5 needed by key frame 4"):
        list(clips_from_frames(((i, i) for i in range(5)), [4], 3, 10))


def test_clip_file_names_replicate_borders_and_follow_the_stride():
    names = ["a", "b", "c", "d"]
    assert clip_file_names(names, 0, 3) == ["a", "a", "b"]  # t-1 clamped to frame 0
    assert clip_file_names(names, 3, 3) == ["c", "d", "d"]
    assert clip_file_names(names, 1, 3, stride=2) == ["a", "b", "d"]  # 1-2 -> 0, 1, 1+2 = 3


# ------------------------------------------------------------------------------------------------ atomic outputs
def test_atomic_path_keeps_the_extension_and_publishes_only_on_success(tmp_path):
    final = tmp_path / "clip.mp4"
    with atomic_path(str(final)) as tmp:
        assert (
            tmp.endswith(".mp4") and ".partial-" in tmp
        )  # writers pick the container by the extension
        assert tmp != str(final)
        open(tmp, "w").write("new")
    assert final.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(str(final)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash")
    assert final.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_atomic_write_json_honours_indent(tmp_path):
    obj = {"a": [1, 2]}
    atomic_write_json(str(tmp_path / "x.json"), obj, indent=2)
    assert (tmp_path / "x.json").read_text() == json.dumps(obj, indent=2)
    atomic_write_json(str(tmp_path / "y.json"), obj)
    assert (tmp_path / "y.json").read_text() == json.dumps(obj)


# ------------------------------------------------------------------------------------------------ matcher
def test_matcher_defaults_are_the_official_costs():
    m = PoseHungarianMatcher()
    assert (m.cost_class, m.cost_kpt_l1, m.cost_oks, m.focal_alpha, m.focal_gamma) == (
        2.0,
        70.0,
        7.0,
        0.25,
        2.0,
    )


def _target(n=2, k=15):
    return {
        "keypoints": torch.zeros(n, k, 2),
        "visible": torch.ones(n, k),
        "areas": torch.ones(n),
        "image_size": (8, 8),
    }


def test_malformed_targets_are_refused_naming_the_clip_and_the_shapes():
    with pytest.raises(KeyError, match=r"targets\[1\] lacks \['areas'\]"):
        check_targets([_target(), {k: v for k, v in _target().items() if k != "areas"}], 15)
    bad = dict(_target(), areas=torch.ones(3))  # only the areas are wrong
    shapes = r"targets\[0\]: keypoints \(2, 15, 2\), visible \(2, 15\), areas \(3,\) must be"
    with pytest.raises(ValueError, match=shapes):
        check_targets([bad], 15)
    bad = dict(_target(), visible=torch.ones(2, 14))  # only the visibility is wrong
    with pytest.raises(ValueError, match="visible"):
        check_targets([bad], 15)
