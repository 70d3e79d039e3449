"""The duplicate report (evaluation/duplicates.py): what duplicate detections cost under poseval's score-free
person assignment, pinned by hand-made frames."""

import json

import numpy as np
import pytest
from test_eval_poseval import gt_ann, gt_seq, pose, pred_person, pred_seq

from pavenet.evaluation import poseval
from pavenet.evaluation.duplicates import duplicate_report
from pavenet.evaluation.posetrack import main as eval_cli
from pavenet.evaluation.poseval import GTSequence, parse_predictions

NAME = "000001_mpii_test"


def _off(xy, joints, by=(60.0, 0.0)):
    """`xy` with `joints` moved 60 px (4 PCKh radii) away: misses."""
    out = xy.copy()
    out[list(joints)] += by
    return out


def _report(gt, pred):
    frames, ignores, images = poseval.parse_posetrack(gt, f"{NAME}.json")
    seq = GTSequence(NAME, frames, ignores, images, f"gt/{NAME}.json")
    return duplicate_report([seq], [parse_predictions(pred, f"pred/{NAME}.json", seq)])


def test_a_better_placed_low_scoring_copy_takes_the_person_and_costs_ap():
    a = pose()
    match = pred_person(_off(a, range(10, 15)), 0.9, 1)  # 10 of 15 joints right, best score
    copy = pred_person(_off(a, range(12, 15)), 0.2, 2)  # 12 of 15 right, low score
    gt = gt_seq(NAME, [[gt_ann(a, 1)]])
    r = _report(gt, pred_seq(gt, [[match, copy]]))
    assert (r.frames, r.gt_people, r.predictions, r.duplicates, r.steals, r.ranking) == (
        1,
        1,
        2,
        1,
        1,
        0,
    )
    # As is: poseval gives the person to the copy, so the match's 10 right joints rank first as false
    # positives (AP 50 on the 12 joints the copy has right, 0 on 3). Without the copy: AP 100 on 10 joints.
    assert r.ap == pytest.approx(12 * 50.0 / 15)
    assert r.ap_without_duplicates == pytest.approx(10 * 100.0 / 15)


def test_a_worse_placed_low_scoring_copy_is_a_duplicate_that_costs_nothing():
    a = pose()
    match = pred_person(_off(a, range(12, 15)), 0.9, 1)  # 12 right
    copy = pred_person(_off(a, range(8, 15)), 0.2, 2)  # 8 right: the match keeps the person
    gt = gt_seq(NAME, [[gt_ann(a, 1)]])
    r = _report(gt, pred_seq(gt, [[match, copy]]))
    assert (r.duplicates, r.steals) == (1, 0)
    # The copy's joints are false positives ranked below every true positive: AP unchanged.
    assert r.ap == pytest.approx(r.ap_without_duplicates) == pytest.approx(12 * 100.0 / 15)


def test_a_copy_that_outscores_another_persons_match_is_counted_as_ranking():
    a, b = pose((100, 100)), pose((500, 500))
    preds = [pred_person(a, 0.9, 1), pred_person(_off(a, [0]), 0.5, 2), pred_person(b, 0.3, 3)]
    gt = gt_seq(NAME, [[gt_ann(a, 1), gt_ann(b, 2)]])
    r = _report(gt, pred_seq(gt, [preds]))
    assert (r.gt_people, r.duplicates, r.ranking, r.steals) == (2, 1, 1, 0)


def test_far_off_predictions_and_frames_without_gt_are_not_duplicates():
    a = pose()
    stray = pred_person(pose((900, 900)), 0.8, 2)  # on nobody: a false positive, not a duplicate
    gt = gt_seq(NAME, [[gt_ann(a, 1)], []])
    r = _report(gt, pred_seq(gt, [[pred_person(a, 0.9), stray], [pred_person(a, 0.9)]]))
    assert (r.frames, r.predictions, r.duplicates, r.steals) == (1, 2, 0, 0)
    assert r.ap == pytest.approx(r.ap_without_duplicates)


def test_cli_reports_duplicates_in_the_json(tmp_path, capsys):
    a = pose()
    gt = gt_seq(NAME, [[gt_ann(a, 1)]])
    pred = pred_seq(
        gt,
        [
            [
                pred_person(_off(a, range(10, 15)), 0.9, 1),
                pred_person(_off(a, range(12, 15)), 0.2, 2),
            ]
        ],
    )
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / f"{NAME}.json").write_text(json.dumps(gt))
    (tmp_path / "pred" / f"{NAME}.json").write_text(json.dumps(pred))
    out = tmp_path / "m.json"
    assert (
        eval_cli(
            [
                "--gt-dir",
                str(tmp_path / "gt"),
                "--pred-dir",
                str(tmp_path / "pred"),
                "--no-track",
                "--duplicates",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert "1 people taken by a duplicate" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["duplicates"]["steals"] == 1
    assert metrics["duplicates"]["ap"] == pytest.approx(metrics["ap"]["total"])
    assert np.isclose(metrics["duplicates"]["ap_without_duplicates"], 10 * 100.0 / 15)
