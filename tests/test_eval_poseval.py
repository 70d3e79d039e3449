"""poseval re-implementation: each rule of docs/POSETRACK_METRICS.md pinned by a hand-computed case."""

import json
import math
import os
import re

import numpy as np
import pytest

from pavenet.data.keypoint_meta import (
    POSETRACK18_SLOT_NAMES,
    POSETRACK_KEYPOINT_NAMES,
    POSEVAL_ID_FOR_15,
)
from pavenet.evaluation import poseval
from pavenet.evaluation.poseval import (
    GTSequence,
    MOTAccumulator,
    PoseTrackFormatError,
    assign_people,
    evaluate,
    evaluate_dirs,
    parse_predictions,
    points_strictly_inside,
    read_gt,
)
from pavenet.evaluation.writer import build_posetrack18_sequence

J = {n: i for i, n in enumerate(POSETRACK_KEYPOINT_NAMES)}
HEAD = (0.0, 0.0, 30.0, 40.0)  # diagonal 50 -> head size 30 -> PCKh@0.5 radius 15 px


def pose(origin=(100.0, 100.0), spacing=40.0):
    """(15, 2) a person whose joints lie on a grid far apart (> 15 px) so no joint matches another."""
    x0, y0 = origin
    return np.array(
        [[x0 + spacing * (k % 5), y0 + spacing * (k // 5)] for k in range(15)], dtype=float
    )


def gt_ann(xy, track_id, head=HEAD, drop=()):
    """A PoseTrack18 GT annotation (17 slots) from (15, 2) positions; joints in `drop` are (0, 0, 0)."""
    kp = np.zeros((17, 3))
    for k, name in enumerate(POSETRACK_KEYPOINT_NAMES):
        if name in drop:
            continue
        s = POSETRACK18_SLOT_NAMES.index(name)
        kp[s] = (xy[k, 0], xy[k, 1], 1)
    x1, y1, x2, y2 = head
    return {
        "keypoints": kp.reshape(-1).tolist(),
        "track_id": track_id,
        "bbox_head": [x1, y1, x2 - x1, y2 - y1],
        "category_id": 1,
        "scores": [],
    }


def gt_seq(name, frames, ignore=None):
    """frames[i]: list of GT annotations for frame i; ignore: {frame: [(xs, ys), ...]}."""
    images, anns = [], []
    for i, people in enumerate(frames):
        im = {
            "id": 10000000000 + i,
            "file_name": f"images/val/{name}/{i:06d}.jpg",
            "is_labeled": bool(people),
            "nframes": len(frames),
            "vid_id": name.split("_")[0],
            "frame_id": 10000000000 + i,
        }
        if ignore and i in ignore:
            im["ignore_regions_x"] = [list(map(float, xs)) for xs, _ in ignore[i]]
            im["ignore_regions_y"] = [list(map(float, ys)) for _, ys in ignore[i]]
        images.append(im)
        for a in people:
            anns.append(dict(a, image_id=im["id"]))
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK18_SLOT_NAMES)}],
    }


def pred_person(xy, score=0.9, track_id=0, joint_scores=None, absent=(), v_zero=()):
    kp = np.zeros((15, 3))
    kp[:, :2] = xy
    kp[:, 2] = score if joint_scores is None else joint_scores
    return {
        "keypoints": kp,
        "score": score,
        "track_id": track_id,
        "_absent": absent,
        "_vzero": v_zero,
    }


def pred_seq(gt, frames):
    """PoseTrack18 prediction dict over the GT images; honours `_absent` (0,0,0) and `_vzero` (x, y, 0)."""
    data = build_posetrack18_sequence(
        gt["images"],
        [
            [{k: v for k, v in p.items() if not k.startswith("_")} for p in people]
            for people in frames
        ],
    )
    flat = [p for people in frames for p in people]
    for ann, p in zip(data["annotations"], flat):
        for name in p["_absent"]:
            s = POSETRACK18_SLOT_NAMES.index(name)
            ann["keypoints"][3 * s : 3 * s + 3] = [0, 0, 0]
        for name in p["_vzero"]:
            s = POSETRACK18_SLOT_NAMES.index(name)
            ann["keypoints"][3 * s + 2] = 0
    return data


def run(gt, pred, eval_track=True, name="000001_mpii_test"):
    frames, ignores, images = poseval.parse_posetrack(gt, f"{name}.json")
    seq = GTSequence(name, frames, ignores, images, f"gt/{name}.json")
    preds = parse_predictions(pred, f"pred/{name}.json", seq)
    return evaluate([seq], [preds], eval_track=eval_track)


# ---------------------------------------------------------------------------------------------------
def test_perfect_predictions_give_100_ap_and_mota():
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]] * 3)
    pred = pred_seq(gt, [[pred_person(a, 0.9, 5), pred_person(b, 0.8, 6)]] * 3)
    res = run(gt, pred)
    np.testing.assert_allclose(res.ap, 100.0)
    np.testing.assert_allclose(res.mota, 100.0)
    assert res.summary()["AP"]["Mean"] == 100.0
    assert res.num_frames == 3
    # 2 objects per joint in each of the first two frames (the last frame is skipped)
    np.testing.assert_array_equal(res.mot_counts["objects"], 4)


def test_known_jitter_threshold_is_inclusive_and_uses_gt_head_size():
    a = pose()
    jitter = a.copy()
    jitter[:7] += (9.0, 12.0)  # exactly 15 px = 0.5 head sizes -> a match (<= is inclusive)
    jitter[7:] += (9.0, 12.5)  # 15.3 px -> a miss
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)]])
    res = run(gt, pred_seq(gt, [[pred_person(jitter)]]), eval_track=False)
    np.testing.assert_allclose(res.ap[:7], 100.0)
    np.testing.assert_allclose(res.ap[7:], 0.0)
    # Same offsets with a head box twice as big: everything matches.
    gt2 = gt_seq("000001_mpii_test", [[gt_ann(a, 1, head=(0, 0, 60, 80))]])
    np.testing.assert_allclose(
        run(gt2, pred_seq(gt2, [[pred_person(jitter)]]), eval_track=False).ap, 100.0
    )


def test_duplicates_are_false_positives_and_ranking_is_global():
    # pA correct (0.9), pB wrong (0.8), pC a duplicate of A (0.95): per joint, ranked FP, TP, FP over 2 GT
    # -> rec (0, .5, .5), prec (0, .5, 1/3) -> VOC AP = 0.5 * 0.5 = 25.
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]])
    pred = pred_seq(
        gt, [[pred_person(a, 0.9, 0), pred_person(b + 100, 0.8, 1), pred_person(a + 1, 0.95, 2)]]
    )
    res = run(gt, pred, eval_track=False)
    np.testing.assert_allclose(res.ap, 25.0)
    np.testing.assert_allclose(res.precision, 100 / 3)
    np.testing.assert_allclose(res.recall, 50.0)


def test_greedy_assignment_is_score_free_and_not_reassigned():
    # p0 -> G0 with PCKh 1.0; p1 prefers G0 (0.6) over G1 (0.5): it loses G0 and is NOT moved to G1.
    match = np.zeros((2, 2, 15), dtype=bool)
    match[0, 0, :] = True
    match[1, 0, :9] = True
    match[1, 1, 7:15] = True  # 8 of 15 -> 0.53 < 0.6
    gt_present = np.ones((2, 15), dtype=bool)
    np.testing.assert_array_equal(assign_people(match, gt_present), [0, -1])
    # ties: the first GT for a prediction, the first prediction for a GT
    match = np.ones((2, 2, 15), dtype=bool)
    np.testing.assert_array_equal(assign_people(match, gt_present), [0, -1])
    # PCKh divides by the joints annotated in the GT, not by the joints in common
    match = np.zeros((1, 2, 15), dtype=bool)
    match[0, 0, :3] = True  # 3 of 15 annotated -> 0.2
    match[0, 1, :2] = True  # 2 of 2 annotated -> 1.0
    gt_present = np.ones((2, 15), dtype=bool)
    gt_present[1, 2:] = False
    np.testing.assert_array_equal(assign_people(match, gt_present), [1])


def test_unannotated_joint_is_exactly_zero_triplet():
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2, drop=("left_wrist",))]])
    lw = J["left_wrist"]
    sa = np.full(15, 0.6)
    sb = np.full(15, 0.5)
    sb[lw] = 0.9
    # B predicts a left wrist that B's GT lacks: an FP ranked first -> (FP, TP) over 1 GT -> AP 50.
    res = run(
        gt,
        pred_seq(
            gt,
            [
                [
                    pred_person(a, joint_scores=sa, track_id=0),
                    pred_person(b, joint_scores=sb, track_id=1),
                ]
            ],
        ),
        eval_track=False,
    )
    assert res.ap[lw] == pytest.approx(50.0)
    assert res.num_gt[lw] == 1 and res.num_gt[J["nose"]] == 2
    # Written as (x, y, 0) it is still a prediction (v is ignored) ...
    res = run(
        gt,
        pred_seq(
            gt,
            [
                [
                    pred_person(a, joint_scores=sa, track_id=0),
                    pred_person(b, joint_scores=sb, track_id=1, v_zero=("left_wrist",)),
                ]
            ],
        ),
        eval_track=False,
    )
    assert res.ap[lw] == pytest.approx(50.0)
    # ... only exactly (0, 0, 0) is absent.
    res = run(
        gt,
        pred_seq(
            gt,
            [
                [
                    pred_person(a, joint_scores=sa, track_id=0),
                    pred_person(b, joint_scores=sb, track_id=1, absent=("left_wrist",)),
                ]
            ],
        ),
        eval_track=False,
    )
    assert res.ap[lw] == pytest.approx(100.0)
    # A GT joint (x, y, 0) with coordinates counts as annotated.
    ann = gt_ann(a, 1)
    s = POSETRACK18_SLOT_NAMES.index("nose")
    ann["keypoints"][3 * s + 2] = 0
    frames, _, _ = poseval.parse_posetrack(gt_seq("000001_mpii_test", [[ann]]), "x.json")
    assert frames[0].present[0, J["nose"]]


def test_frames_without_gt_people_are_not_evaluated():
    a = pose()
    # frame 1: unlabeled (no GT people): predictions there are ignored, never FPs
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)], [], [gt_ann(a, 1)]])
    pred = pred_seq(
        gt, [[pred_person(a, 0.5)], [pred_person(a + 300, 0.99)], [pred_person(a, 0.5)]]
    )
    res = run(gt, pred, eval_track=False)
    np.testing.assert_allclose(res.ap, 100.0)
    assert res.num_frames == 2
    # A labeled frame whose only GT person has no annotated joint is evaluated: its predictions are FPs.
    empty_person = gt_ann(a, 1, drop=POSETRACK_KEYPOINT_NAMES)
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)], [empty_person]])
    pred = pred_seq(gt, [[pred_person(a, 0.5)], [pred_person(a, 0.9)]])
    res = run(gt, pred, eval_track=False)
    np.testing.assert_allclose(res.ap, 50.0)  # FP at 0.9, TP at 0.5, one GT


def test_no_predictions_gives_zero_and_missing_scores_fall_back():
    a = pose()
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)]])
    res = run(gt, pred_seq(gt, [[]]), eval_track=False)
    np.testing.assert_allclose(res.ap, 0.0)
    pred = pred_seq(gt, [[pred_person(a)]])
    pred["annotations"][0]["scores"] = []  # no joint scores -> poseval's -9999 fallback
    frames, _, _ = poseval.parse_posetrack(pred, "p.json")
    np.testing.assert_array_equal(frames[0].scores, poseval.MIN_SCORE)


def test_points_strictly_inside_polygon():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    pts = np.array([[5, 5], [0, 5], [10, 10], [5, 0], [11, 5], [-1, -1], [9.999, 0.001]])
    np.testing.assert_array_equal(points_strictly_inside(pts, square), [1, 0, 0, 0, 0, 0, 1])
    # concave "U": the notch is outside
    u = np.array(
        [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]], float
    )
    np.testing.assert_array_equal(
        points_strictly_inside(np.array([[15, 20], [5, 20], [25, 20], [15, 5]]), u), [0, 1, 1, 1]
    )
    assert not points_strictly_inside(np.array([[1, 1]]), np.array([[0, 0], [5, 5]])).any()


def test_ignore_regions_remove_joints_and_people():
    a, b = pose((100, 100)), pose((600, 100))
    # polygon around all of B and around A's nose; A's head_bottom lies exactly on the polygon edge
    box_b = ([550, 800, 800, 550], [50, 50, 300, 300])
    nose = a[J["nose"]]
    box_nose = (
        [nose[0] - 5, nose[0] + 5, nose[0] + 5, nose[0] - 5],
        [nose[1] - 5, nose[1] - 5, nose[1] + 5, nose[1] + 5],
    )
    hb = a[J["head_bottom"]]
    box_edge = (
        [hb[0], hb[0] + 10, hb[0] + 10, hb[0]],
        [hb[1] - 5, hb[1] - 5, hb[1] + 5, hb[1] + 5],
    )
    gt = gt_seq(
        "000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]], ignore={0: [box_b, box_nose, box_edge]}
    )
    # predictions: A perfect except a far-off nose (inside the nose box, so deleted); no prediction for B
    pa = a.copy()
    pa[J["nose"]] += (1, 1)
    res = run(gt, pred_seq(gt, [[pred_person(pa)]]), eval_track=False)
    np.testing.assert_allclose(res.ap[[k for k in range(15) if k != J["nose"]]], 100.0)
    assert res.num_gt[J["nose"]] == 0 and res.num_gt[J["head_bottom"]] == 1  # on-edge joint is kept
    assert (
        math.isnan(res.ap[J["nose"]]) is False and res.ap[J["nose"]] == 0.0
    )  # no prediction left -> 0
    # a prediction for B inside the ignored region is deleted too (no FP)
    res = run(
        gt, pred_seq(gt, [[pred_person(pa, 0.5, 0), pred_person(b, 0.9, 1)]]), eval_track=False
    )
    np.testing.assert_allclose(res.ap[[k for k in range(15) if k != J["nose"]]], 100.0)


def test_head_column_and_mean_are_formed_as_poseval():
    a = pose()
    p = a.copy()
    p[J["nose"]] += 100  # only the nose misses
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)]])
    res = run(gt, pred_seq(gt, [[pred_person(p)]]), eval_track=False)
    g = res.summary()["AP"]
    assert g["Head"] == pytest.approx(200 / 3)
    assert g["Shoulder"] == g["Ankle"] == 100
    assert g["Mean"] == pytest.approx(1400 / 15)  # mean of the 15 joints ...
    assert g["Mean"] != pytest.approx(
        np.mean([g[c] for c in poseval.GROUP_NAMES])
    )  # ... not of the 7 columns
    js = res.to_json()
    assert js["ap"]["total"] == pytest.approx(1400 / 15)
    assert js["ap"]["per_joint"]["nose"] == 0.0 and js["ap"]["groups"]["Head"] == pytest.approx(
        200 / 3
    )


def test_mota_skips_the_last_frame_of_each_video():
    a = pose()
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)]] * 3)
    # track 7 then 8 (a switch); the last frame has no prediction, which would add a miss and an FP.
    pred = pred_seq(gt, [[pred_person(a, track_id=7)], [pred_person(a, track_id=8)], []])
    res = run(gt, pred)
    np.testing.assert_allclose(res.mota, 50.0)  # 1 - 1 switch / 2 objects
    np.testing.assert_array_equal(res.mot_counts["switches"], 1)
    np.testing.assert_array_equal(res.mot_counts["objects"], 2)


def test_motp_and_tracking_precision_recall_as_poseval():
    a = pose()
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)]] * 3)
    # head size 30: 6 px = distance 0.2, 3 px = 0.1. Frame 0 also has a far-away false positive; frame 2 is skipped.
    pred = pred_seq(
        gt,
        [
            [pred_person(a + [6, 0], track_id=1), pred_person(pose((900, 900)), track_id=2)],
            [pred_person(a + [3, 0], track_id=1)],
            [],
        ],
    )
    res = run(gt, pred)
    np.testing.assert_allclose(res.mota, 50.0)  # 1 - 1 FP / 2 objects
    np.testing.assert_allclose(res.motp, 100 * (1 - (0.2 + 0.1) / 2))  # mean paired distance 0.15
    np.testing.assert_allclose(res.mot_precision, 100 * 2 / 3)  # 2 paired / (2 paired + 1 FP)
    np.testing.assert_allclose(res.mot_recall, 100.0)  # 2 paired / 2 objects
    assert list(res.summary()) == ["AP", "MOTA", "MOTP", "Prec", "Rec"]
    assert res.to_json()["motp"]["total"] == pytest.approx(85.0)


def test_mota_empty_frame_rule_feeds_one_dummy_miss_and_fp():
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]] * 3)
    pred = pred_seq(
        gt,
        [
            [pred_person(a, track_id=1), pred_person(b, track_id=2)],
            [],
            [pred_person(a, track_id=1), pred_person(b, track_id=2)],
        ],
    )
    res = run(gt, pred)
    # frame 1 has no predictions: 1 object, 1 miss, 1 FP per joint, not 2 misses
    np.testing.assert_array_equal(res.mot_counts["objects"], 3)
    np.testing.assert_array_equal(res.mot_counts["misses"], 1)
    np.testing.assert_array_equal(res.mot_counts["false_positives"], 1)
    np.testing.assert_allclose(res.mota, 100 / 3)
    assert res.summary()["MOTA"]["Mean"] == pytest.approx(100 / 3)


def test_person_without_joints_counts_for_the_empty_frame_rule_unless_ignore_regions():
    a = pose((100, 100))
    gt_frames = [[gt_ann(a, 1)]] * 3
    empty = pred_person(a, track_id=3, absent=POSETRACK_KEYPOINT_NAMES)
    frames = [[pred_person(a, track_id=1)], [empty], [pred_person(a, track_id=1)]]
    # Without ignore regions the joint-less prediction survives: a real frame, 1 miss per joint, no FP.
    gt = gt_seq("000001_mpii_test", gt_frames)
    res = run(gt, pred_seq(gt, frames))
    np.testing.assert_array_equal(res.mot_counts["false_positives"], 0)
    np.testing.assert_allclose(res.mota, 50.0)
    # With an (unrelated) ignore region in that frame it is deleted: dummy rule, 1 miss + 1 FP.
    far = ([5000, 5010, 5010, 5000], [0, 0, 10, 10])
    gt = gt_seq("000001_mpii_test", gt_frames, ignore={1: [far]})
    res = run(gt, pred_seq(gt, frames))
    np.testing.assert_array_equal(res.mot_counts["false_positives"], 1)
    np.testing.assert_allclose(res.mota, 0.0)


def test_mota_is_per_joint_without_person_assignment():
    # The prediction swaps two people's left ankles: AP's person assignment would make both FPs, but MOT
    # pairs each joint independently (within 0.5 head sizes), so MOTA stays 100 on that joint.
    a, b = pose((100, 100)), pose((102, 600))
    pa, pb = a.copy(), b.copy()
    la = J["left_ankle"]
    pa[la], pb[la] = b[la], a[la]
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]] * 2)
    res = run(gt, pred_seq(gt, [[pred_person(pa, track_id=1), pred_person(pb, track_id=2)]] * 2))
    assert res.ap[la] == 0.0
    assert res.mota[la] == 100.0


def test_mot_accumulator_semantics():
    acc = MOTAccumulator()
    acc.update(np.array([1, 2]), np.array([10, 20]), np.array([[0.1, np.nan], [np.nan, 0.1]]))
    # carried-over pairing 1-10 is kept even though 1-20 would be cheaper; 2 goes to 30 -> one switch
    acc.update(
        np.array([1, 2]),
        np.array([10, 20, 30]),
        np.array([[0.4, 0.0, np.nan], [np.nan, np.nan, 0.2]]),
    )
    assert (acc.matches, acc.switches, acc.misses, acc.false_positives, acc.objects) == (
        3,
        1,
        0,
        1,
        4,
    )
    # maximum cardinality beats a cheaper single pairing
    acc = MOTAccumulator()
    acc.update(np.array([1, 2]), np.array([10, 20]), np.array([[0.0, 0.3], [0.1, np.nan]]))
    assert acc.matches == 2 and acc.misses == 0


def test_mot_accumulator_agrees_with_py_motmetrics():
    mm = pytest.importorskip("motmetrics")
    rng = np.random.default_rng(0)
    for trial in range(30):
        ours, ref = MOTAccumulator(), mm.MOTAccumulator(auto_id=True)
        for _ in range(12):
            no, nh = rng.integers(0, 4), rng.integers(0, 4)
            oids = rng.choice(5, no, replace=False)
            hids = rng.choice(6, nh, replace=False) + 100
            d = rng.uniform(0, 1, (no, nh))
            d[d > 0.5] = np.nan
            ours.update(oids, hids, d)
            ref.update(list(oids), list(hids), d)
        m = mm.metrics.create().compute(
            ref,
            metrics=["num_misses", "num_switches", "num_false_positives", "num_objects"],
            return_dataframe=False,
        )
        assert (ours.misses, ours.switches, ours.false_positives, ours.objects) == (
            m["num_misses"],
            m["num_switches"],
            m["num_false_positives"],
            m["num_objects"],
        )


# --------------------------------------------------------------------------------------------------- formats
def _to_2017(gt18):
    """The same GT in the PoseTrack 2017 annolist format (every scalar wrapped in a list)."""
    by_img = {}
    for ann in gt18["annotations"]:
        by_img.setdefault(ann["image_id"], []).append(ann)
    annolist = []
    for im in gt18["images"]:
        rects = []
        for ann in by_img.get(im["id"], []):
            kp = np.asarray(ann["keypoints"]).reshape(17, 3)
            pts = []
            for k, name in enumerate(POSETRACK_KEYPOINT_NAMES):
                x, y, v = kp[POSETRACK18_SLOT_NAMES.index(name)]
                if (x, y, v) != (0, 0, 0):
                    pts.append(
                        {"id": [POSEVAL_ID_FOR_15[k]], "x": [x], "y": [y], "is_visible": [int(v)]}
                    )
            rect = {"track_id": [ann["track_id"]], "annopoints": [{"point": pts}] if pts else []}
            if "bbox_head" in ann:
                x, y, w, h = ann["bbox_head"]
                rect.update({"x1": [x], "y1": [y], "x2": [x + w], "y2": [y + h]})
            rects.append(rect)
        fr = {
            "image": [{"name": im["file_name"]}],
            "imgnum": [1 + len(annolist)],
            "annorect": rects,
            "is_labeled": [1 if rects else 0],
        }
        if "ignore_regions_x" in im:
            fr["ignore_regions"] = [
                {"point": [{"x": [x], "y": [y]} for x, y in zip(xs, ys)]}
                for xs, ys in zip(im["ignore_regions_x"], im["ignore_regions_y"])
            ]
        annolist.append(fr)
    return {"annolist": annolist}


def test_posetrack2017_and_2018_gt_give_the_same_numbers(tmp_path):
    a, b = pose((100, 100)), pose((400, 400))
    p = a.copy()
    p[:5] += 14
    gt = gt_seq(
        "000001_mpii_test",
        [[gt_ann(a, 1), gt_ann(b, 2, drop=("nose", "left_knee"))]] * 3,
        ignore={1: [([390, 410, 410, 390], [390, 390, 410, 410])]},
    )
    frames = [
        [pred_person(p, 0.7, 1), pred_person(b, 0.8, 2)],
        [pred_person(a, 0.6, 1)],
        [pred_person(b, 0.9, 1), pred_person(a, 0.5, 2)],
    ]
    pred = pred_seq(gt, frames)
    for sub in ("gt18", "gt17", "pred"):
        (tmp_path / sub).mkdir()
    (tmp_path / "gt18" / "000001_mpii_test.json").write_text(json.dumps(gt))
    (tmp_path / "gt17" / "000001_mpii_test.json").write_text(json.dumps(_to_2017(gt)))
    (tmp_path / "pred" / "000001_mpii_test.json").write_text(json.dumps(pred))
    r18 = evaluate_dirs(str(tmp_path / "gt18"), str(tmp_path / "pred"))
    r17 = evaluate_dirs(str(tmp_path / "gt17"), str(tmp_path / "pred"))
    np.testing.assert_allclose(r17.ap, r18.ap)
    np.testing.assert_allclose(r17.mota, r18.mota)
    assert 0 < r18.summary()["AP"]["Mean"] < 100
    # 2017-format predictions (DCPose / PAVE-Net style) read the same
    pred17 = _to_2017(pred)
    for fr, people in zip(pred17["annolist"], frames):
        for rect, person in zip(fr["annorect"], people):
            for pt in rect["annopoints"][0]["point"]:
                pt["score"] = [float(person["keypoints"][POSEVAL_ID_FOR_15.index(pt["id"][0]), 2])]
    (tmp_path / "pred" / "000001_mpii_test.json").write_text(json.dumps(pred17))
    r = evaluate_dirs(str(tmp_path / "gt18"), str(tmp_path / "pred"))
    np.testing.assert_allclose(r.ap, r18.ap)
    np.testing.assert_allclose(r.mota, r18.mota)


def test_2017_person_without_annopoints_is_dropped():
    data = {
        "annolist": [
            {
                "image": [{"name": "images/x/000001_mpii/00000001.jpg"}],
                "annorect": [
                    {
                        "x1": [0],
                        "y1": [0],
                        "x2": [30],
                        "y2": [40],
                        "track_id": [0],
                        "annopoints": [],
                    },
                    {
                        "x1": [0],
                        "y1": [0],
                        "x2": [30],
                        "y2": [40],
                        "track_id": [1],
                        "annopoints": [
                            {
                                "point": [
                                    {"id": [13], "x": [5], "y": [6]},
                                    {"id": [13], "x": [99], "y": [99]},
                                ]
                            }
                        ],
                    },
                ],
            }
        ]
    }
    frames, _, _ = poseval.parse_posetrack(data, "x.json")
    np.testing.assert_array_equal(frames[0].has_points, [False, True])
    assert frames[0].present[1].sum() == 1
    np.testing.assert_array_equal(frames[0].xy[1, J["nose"]], [5, 6])  # first point with an id wins


def test_coco_style_gt_is_split_per_video(sample_dir):
    seqs = read_gt(str(sample_dir / "annotations" / "test_posetrack18_val.json"))
    per_dir = read_gt(str(sample_dir / "annotations" / "val"))
    assert sorted(s.name for s in seqs) == sorted(s.name for s in per_dir)
    for s, t in zip(sorted(seqs, key=lambda s: s.name), per_dir):
        assert sum(len(f) for f in s.frames) == sum(len(f) for f in t.frames)
        np.testing.assert_array_equal(s.frames[0].present, t.frames[0].present)


# --------------------------------------------------------------------------------------------------- CLI, sample
def _cli(*args):
    from pavenet.evaluation.posetrack import main

    return main([str(a) for a in args])


def test_real_sample_gt_as_predictions_gives_100(sample_dir, tmp_path, capsys):
    gt_dir = sample_dir / "annotations" / "val"
    out = tmp_path / "m.json"
    assert _cli("--gt-dir", gt_dir, "--pred-dir", gt_dir, "--json", out) == 0
    printed = capsys.readouterr().out
    assert "Head" in printed and "Mean" in printed and "100.00" in printed
    js = json.loads(out.read_text())
    assert set(js) == {"ap", "mota", "motp", "mot_precision", "mot_recall"}
    assert set(js["ap"]) == {"per_joint", "groups", "total"}
    assert list(js["ap"]["groups"]) == [
        "Head",
        "Shoulder",
        "Elbow",
        "Wrist",
        "Hip",
        "Knee",
        "Ankle",
    ]
    assert js["ap"]["per_joint"]["head_bottom"] == 100.0 and js["ap"]["total"] == 100.0
    assert set(js["ap"]["per_joint"]) == set(POSETRACK_KEYPOINT_NAMES)
    assert _cli("--gt-dir", gt_dir, "--pred-dir", gt_dir, "--json", out, "--no-track") == 0
    assert set(json.loads(out.read_text())) == {"ap"}


def test_cli_runs_as_a_module(sample_dir, tmp_path):
    import subprocess
    import sys

    gt_dir = sample_dir / "annotations" / "val"
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pavenet.evaluation.posetrack",
            "--gt-dir",
            str(gt_dir),
            "--pred-dir",
            str(gt_dir),
            "--no-track",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Shoulder" in proc.stdout
    assert json.loads(out.read_text())["ap"]["total"] == 100.0


def test_real_sample_ignore_regions_are_applied(sample_dir):
    seqs = read_gt(str(sample_dir / "annotations" / "val"))
    n_joints = sum(int(f.present.sum()) for s in seqs for f in s.frames)
    res = evaluate(seqs, [s.frames for s in seqs], eval_track=False)
    assert 0 < res.num_gt.sum() <= n_joints


def test_bad_inputs_name_the_file(tmp_path, capsys):
    a = pose()
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)], [gt_ann(a, 1)]])
    gt2 = gt_seq("000002_mpii_test", [[gt_ann(a, 1)], [gt_ann(a, 1)]])
    gdir, pdir = tmp_path / "gt", tmp_path / "pred"
    gdir.mkdir(), pdir.mkdir()
    (gdir / "000001_mpii_test.json").write_text(json.dumps(gt))
    (gdir / "000002_mpii_test.json").write_text(json.dumps(gt2))
    good = pred_seq(gt, [[pred_person(a)], [pred_person(a)]])
    (pdir / "000001_mpii_test.json").write_text(json.dumps(good))
    # missing sequence file: a warning naming it, and its frames count as misses (recall 1/2)
    with pytest.warns(UserWarning, match="000002_mpii_test.json"):
        res = evaluate_dirs(str(gdir), str(pdir), eval_track=False)
    np.testing.assert_allclose(res.ap, 50.0)
    good2 = pred_seq(gt2, [[pred_person(a)], [pred_person(a)]])
    (pdir / "000002_mpii_test.json").write_text(json.dumps(good2))
    np.testing.assert_allclose(evaluate_dirs(str(gdir), str(pdir), eval_track=False).ap, 100.0)
    # frame-count mismatch
    short = pred_seq(gt2, [[pred_person(a)], []])
    short["images"] = short["images"][:1]
    (pdir / "000002_mpii_test.json").write_text(json.dumps(short))
    with pytest.raises(
        PoseTrackFormatError, match=r"000002_mpii_test\.json.*1 prediction frames.*has 2"
    ):
        evaluate_dirs(str(gdir), str(pdir), eval_track=False)
    # malformed JSON (through the CLI: exit code 2, message on stderr)
    (pdir / "000002_mpii_test.json").write_text('{"images": [')
    assert _cli("--gt-dir", gdir, "--pred-dir", pdir) == 2
    assert "000002_mpii_test.json: malformed JSON" in capsys.readouterr().err
    # keypoint array of the wrong size
    bad = json.loads(json.dumps(good2))
    bad["annotations"][0]["keypoints"] = bad["annotations"][0]["keypoints"][:-3]
    (pdir / "000002_mpii_test.json").write_text(json.dumps(bad))
    with pytest.raises(
        PoseTrackFormatError, match=r"000002_mpii_test\.json.*48 keypoint values, expected 51"
    ):
        evaluate_dirs(str(gdir), str(pdir), eval_track=False)


def _corrupt(pred, what):
    pred = json.loads(json.dumps(pred))
    ann = pred["annotations"][0]
    if what == "other_sequence":
        for im in pred["images"]:
            im["file_name"] = im["file_name"].replace("000001_mpii_test", "000002_mpii_test")
    elif what == "no_annotations":
        del pred["annotations"]
    elif what == "nan_score":
        ann["scores"] = [float("nan")] * 17
    elif what == "nan_keypoint":
        ann["keypoints"][0] = float("nan")
    else:
        ann["track_id"] = what
    return pred


@pytest.mark.parametrize(
    "what, needle",
    [
        (
            "other_sequence",
            r"frame 0 is .*000002_mpii_test/000000.jpg, of video 000002, but GT sequence 000001_mpii_test",
        ),
        (
            "no_annotations",
            r"expected PoseTrack18 'images' and 'annotations' lists \(got fields \['categories', 'images'\]\)",
        ),
        ("nan_score", r"annotation 0 of image \d+: non-finite value in field 'scores'"),
        ("nan_keypoint", r"annotation 0 of image \d+: non-finite value in field 'keypoints'"),
        (1.5, r"field 'track_id' = 1.5 is not an integer"),
        (float("inf"), r"field 'track_id' = inf is not an integer"),
        ("p7", r"field 'track_id' = 'p7' is not an integer"),
    ],
)
def test_predictions_that_cannot_be_right_are_refused_naming_file_and_field(tmp_path, what, needle):
    a = pose()
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)], [gt_ann(a, 1)]])
    (tmp_path / "gt").mkdir(), (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "000001_mpii_test.json").write_text(json.dumps(gt))
    pred = tmp_path / "pred" / "000001_mpii_test.json"
    pred.write_text(json.dumps(_corrupt(pred_seq(gt, [[pred_person(a, track_id=1)], []]), what)))
    with pytest.raises(PoseTrackFormatError, match=re.escape(str(pred)) + ": " + needle):
        evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"))


def test_gt_without_annotations_is_refused(tmp_path):
    gt = gt_seq("000001_mpii_test", [[gt_ann(pose(), 1)]])
    del gt["annotations"]
    (tmp_path / "000001_mpii_test.json").write_text(json.dumps(gt))
    with pytest.raises(
        PoseTrackFormatError,
        match=r"000001_mpii_test\.json: expected PoseTrack18 'images' and 'annotations'",
    ):
        read_gt(str(tmp_path))


def test_track_id_rules(tmp_path):
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]] * 2)
    (tmp_path / "gt").mkdir(), (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "000001_mpii_test.json").write_text(json.dumps(gt))
    path = tmp_path / "pred" / "000001_mpii_test.json"
    # duplicate track ids within a frame are refused (even for AP, as poseval HEAD does)
    dup = pred_seq(gt, [[pred_person(a, track_id=4), pred_person(b, track_id=4)], []])
    path.write_text(json.dumps(dup))
    with pytest.raises(
        PoseTrackFormatError, match=r"000001_mpii_test\.json: non-unique track ids \[4\] in frame 0"
    ):
        evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"), eval_track=False)
    dup = pred_seq(gt, [[pred_person(a, track_id=-1), pred_person(b, track_id=-1)], []])
    path.write_text(json.dumps(dup))
    with pytest.raises(PoseTrackFormatError, match=r"non-unique track ids \[-1\]"):
        evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"), eval_track=False)
    # the same id in different frames is fine
    path.write_text(
        json.dumps(pred_seq(gt, [[pred_person(a, track_id=4)], [pred_person(a, track_id=4)]]))
    )
    evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"))
    # missing track ids: fine for AP, refused for MOTA
    ok = pred_seq(gt, [[pred_person(a), pred_person(b, track_id=1)]] * 2)
    del ok["annotations"][0]["track_id"]
    path.write_text(json.dumps(ok))
    assert (
        evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"), eval_track=False).ap[0] == 100.0
    )
    with pytest.raises(PoseTrackFormatError, match="without track_id in frame 0"):
        evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"), eval_track=True)
    # ids must be < 10000
    big = pred_seq(gt, [[pred_person(a, track_id=10000)], []])
    path.write_text(json.dumps(big))
    with pytest.raises(PoseTrackFormatError, match="track_id 10000"):
        evaluate_dirs(str(tmp_path / "gt"), str(tmp_path / "pred"))


def test_a_val_sized_run_counts_every_sequence_frame_and_person():
    """170 sequences x 12 frames x 5 people (val-sized): every frame and person is counted once, and the
    constant track ids give no switches. (Its speed is a benchmark matter, not a unit-test assertion.)"""
    rng = np.random.default_rng(0)
    seqs, preds = [], []
    for v in range(170):
        people = [pose((100 + 300 * p, 100 + 50 * p)) for p in range(5)]
        frames = [[gt_ann(x, p) for p, x in enumerate(people)] for _ in range(12)]
        gt = gt_seq(f"{v:06d}_mpii_test", frames)
        pf = [
            [
                pred_person(x + rng.normal(0, 8, x.shape), float(rng.uniform()), p)
                for p, x in enumerate(people)
            ]
            for _ in range(12)
        ]
        fr, ig, im = poseval.parse_posetrack(gt, "g.json")
        seq = GTSequence(f"{v:06d}", fr, ig, im, "g.json")
        seqs.append(seq)
        preds.append(parse_predictions(pred_seq(gt, pf), "p.json", seq))
    res = evaluate(seqs, preds, eval_track=True)
    assert res.num_frames == 170 * 12 and res.num_sequences == 170
    assert res.num_gt.tolist() == [170 * 12 * 5] * 15
    # poseval's MOT accumulators skip each video's last frame
    assert res.mot_counts["objects"].tolist() == [170 * 11 * 5] * 15
    assert not res.mot_counts["switches"].any()
    assert 0 < res.summary()["AP"]["Mean"] < 100


def test_empty_or_unrelated_folders_are_refused_by_the_cli(tmp_path, capsys):
    """Empty GT / prediction folders and a prediction folder of another split: exit status 2 and one line
    naming the folder and what was expected, instead of a table of zeros (or NaN)."""
    a = pose()
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)], [gt_ann(a, 1)]])
    gdir, pdir, empty = tmp_path / "gt", tmp_path / "pred", tmp_path / "empty"
    for d in (gdir, pdir, empty):
        d.mkdir()
    (gdir / "000001_mpii_test.json").write_text(json.dumps(gt))

    def err(*args):
        assert _cli(*args) == 2
        out = capsys.readouterr()
        assert out.out == "" and len(out.err.strip().splitlines()) == 1
        return out.err.strip()

    assert (
        err("--gt-dir", empty, "--pred-dir", pdir)
        == f"error: {empty}: no *.json GT files (expected one "
        "PoseTrack JSON per sequence, or pass one COCO-style JSON file)"
    )
    assert err("--gt-dir", tmp_path / "nope", "--pred-dir", pdir).startswith(
        f"error: {tmp_path / 'nope'}: GT path does not exist"
    )
    assert err("--gt-dir", gdir, "--pred-dir", empty) == (
        f"error: {empty}: no *.json prediction files; expected one per GT sequence, named like the GT files "
        "(e.g. 000001_mpii_test.json)"
    )
    (pdir / "000777_mpii_test.json").write_text(json.dumps(pred_seq(gt, [[], []])))
    msg = err("--gt-dir", gdir, "--pred-dir", pdir)
    assert msg.startswith(
        f"error: {pdir}: none of its 1 prediction files is named like a GT sequence of {gdir}"
    )
    assert "found 000777_mpii_test.json; expected e.g. 000001_mpii_test.json" in msg
    # GT whose frames have no people: nothing to evaluate (AP would be NaN everywhere)
    (gdir / "000001_mpii_test.json").write_text(json.dumps(gt_seq("000001_mpii_test", [[], []])))
    (pdir / "000001_mpii_test.json").write_text(json.dumps(pred_seq(gt, [[], []])))
    assert err("--gt-dir", gdir, "--pred-dir", pdir).startswith(
        f"error: {gdir}: no GT frame has a person"
    )


@pytest.mark.parametrize("side", ["gt", "pred"])
def test_missing_track_ids_when_mota_is_asked_for_name_file_person_frame_and_the_way_out(
    tmp_path, capsys, side
):
    a, b = pose((100, 100)), pose((400, 400))
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1), gt_ann(b, 2)]] * 2)
    pred = pred_seq(gt, [[pred_person(a, track_id=1), pred_person(b, track_id=2)]] * 2)
    if side == "gt":
        del gt["annotations"][3]["track_id"]  # frame 1, person 1
    else:
        del pred["annotations"][3]["track_id"]
    (tmp_path / "gt").mkdir(), (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "000001_mpii_test.json").write_text(json.dumps(gt))
    (tmp_path / "pred" / "000001_mpii_test.json").write_text(json.dumps(pred))
    assert _cli("--gt-dir", tmp_path / "gt", "--pred-dir", tmp_path / "pred") == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith(f"error: {tmp_path / side / '000001_mpii_test.json'}: ")
    assert "person 1 without track_id in frame 1 (images/val/000001_mpii_test/000001.jpg)" in msg
    assert "field 'track_id'" in msg and "--no-track" in msg
    # AP alone does not need track ids
    assert _cli("--gt-dir", tmp_path / "gt", "--pred-dir", tmp_path / "pred", "--no-track") == 0
    capsys.readouterr()
    # an unwritable --json: one line naming the option and the path, status 2, nothing written
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    assert (
        _cli(
            "--gt-dir",
            tmp_path / "gt",
            "--pred-dir",
            tmp_path / "pred",
            "--no-track",
            "--json",
            blocker / "m.json",
        )
        == 2
    )
    assert capsys.readouterr().err.startswith(
        f"error: --json {blocker / 'm.json'}: cannot write it ("
    )
