"""PoseTrackEvaluator end to end (registered tiny split, fake model outputs) and the PoseTrack18 writer."""

import json
import os
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from pavenet.data.keypoint_meta import (
    POSETRACK18_SLOT_NAMES,
    POSETRACK_KEYPOINT_NAMES,
    posetrack_metadata,
)
from pavenet.evaluation import poseval
from pavenet.evaluation.posetrack_evaluator import PoseTrackEvaluator
from pavenet.evaluation.writer import (
    atomic_write_json,
    build_posetrack18_sequence,
    write_coco_keypoint_results,
)

HEAD = [0.0, 0.0, 30.0, 40.0]  # head size 30 -> 15 px radius
EARS = [POSETRACK18_SLOT_NAMES.index("left_ear"), POSETRACK18_SLOT_NAMES.index("right_ear")]


def _pose(ox, oy):
    return np.array([[ox + 40.0 * (k % 5), oy + 40.0 * (k // 5)] for k in range(15)])


def _people(seq_idx, frame):
    """Two people per frame, drifting slowly; track ids 0 and 1."""
    return [
        _pose(100 + 3 * frame + 500 * seq_idx, 100),
        _pose(100 + 3 * frame + 500 * seq_idx, 400),
    ]


def _write_gt(root, n_seqs=2, n_frames=4):
    names = []
    for s in range(n_seqs):
        name = f"00000{s + 1}_mpii_test"
        images, anns = [], []
        for f in range(n_frames):
            image_id = int(f"1{s + 1:06d}{f:04d}")
            images.append(
                {
                    "id": image_id,
                    "file_name": f"images/val/{name}/{f:06d}.jpg",
                    "is_labeled": f != 1,
                    "nframes": n_frames,
                    "frame_id": image_id,
                    "vid_id": f"{s + 1:06d}",
                }
            )
            if f == 1:
                continue  # an unlabeled frame: no GT people
            for t, xy in enumerate(_people(s, f)):
                kp = np.zeros((17, 3))
                for k, n in enumerate(POSETRACK_KEYPOINT_NAMES):
                    kp[POSETRACK18_SLOT_NAMES.index(n)] = (*xy[k], 1)
                anns.append(
                    {
                        "image_id": image_id,
                        "track_id": t,
                        "keypoints": kp.reshape(-1).tolist(),
                        "bbox_head": [HEAD[0], HEAD[1], HEAD[2] - HEAD[0], HEAD[3] - HEAD[1]],
                        "category_id": 1,
                        "scores": [],
                    }
                )
        data = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK18_SLOT_NAMES)}],
        }
        (root / f"{name}.json").write_text(json.dumps(data))
        names.append(name)
    return names


@pytest.fixture
def tiny_split(tmp_path):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    names = _write_gt(gt_dir)
    name = f"posetrack_eval_test_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        evaluator_type="posetrack",
        annotations=str(gt_dir),
        image_root=str(tmp_path),
        **posetrack_metadata(),
    )
    yield name, gt_dir, names
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _run(
    evaluator,
    names,
    n_frames=4,
    jitter=0.0,
    with_tracks=True,
    swap_track_at=None,
    use_file_name=True,
):
    evaluator.reset()
    rng = np.random.default_rng(0)
    for s, name in enumerate(names):
        for f in range(n_frames):
            xy = (
                np.stack(_people(s, f)) + rng.normal(0, jitter, (2, 15, 2))
                if jitter
                else np.stack(_people(s, f))
            )
            kp = np.concatenate([xy, np.full((2, 15, 1), 0.8)], axis=2)
            inst = Instances((720, 1280))
            inst.pred_keypoints = torch.tensor(kp, dtype=torch.float32)
            inst.scores = torch.tensor([0.9, 0.8])
            inst.pred_boxes = Boxes(torch.zeros(2, 4))
            inst.pred_classes = torch.zeros(2, dtype=torch.int64)
            if with_tracks:
                ids = [0, 1] if swap_track_at is None or f < swap_track_at else [1, 0]
                inst.pred_track_ids = torch.tensor(ids)
            inp = {
                "image_id": int(f"1{s + 1:06d}{f:04d}") if use_file_name else f"x{s}{f}",
                "video_id": name,
                "frame_index": f,
            }
            if use_file_name:
                inp["file_name"] = f"/data/posetrack/images/val/{name}/{f:06d}.jpg"
            evaluator.process([inp], [{"instances": inst}])
    return evaluator.evaluate()


def test_evaluator_end_to_end_perfect(tiny_split, tmp_path):
    dataset, gt_dir, names = tiny_split
    out = tmp_path / "inference" / dataset
    ev = PoseTrackEvaluator(dataset, output_dir=str(out), distributed=True, eval_tracking=None)
    res = _run(ev, names)
    assert list(res) == ["posetrack"]
    m = res["posetrack"]
    assert m["AP"] == pytest.approx(100.0) and m["AP-Head"] == pytest.approx(100.0)
    assert m["MOTA"] == pytest.approx(100.0) and m["MOTA-Ankle"] == pytest.approx(100.0)
    assert m["AP-left_wrist"] == pytest.approx(100.0)
    # Files: one PoseTrack18 file per GT sequence covering every GT frame, categories, track ids, empty ears
    for name in names:
        pred = json.loads((out / "posetrack_predictions" / f"{name}.json").read_text())
        gt = json.loads((gt_dir / f"{name}.json").read_text())
        assert [im["file_name"] for im in pred["images"]] == [
            im["file_name"] for im in gt["images"]
        ]
        assert pred["categories"][0]["name"] == "person"
        assert pred["categories"][0]["keypoints"] == list(POSETRACK18_SLOT_NAMES)
        assert len(pred["annotations"]) == 2 * 4
        for ann in pred["annotations"]:
            kp = np.asarray(ann["keypoints"]).reshape(17, 3)
            assert kp[EARS].tolist() == [[0, 0, 0], [0, 0, 0]]
            assert len(ann["scores"]) == 17 and ann["track_id"] in (0, 1)
    coco = json.loads((out / "keypoint_results.json").read_text())
    assert len(coco) == 2 * 4 * 2 and len(coco[0]["keypoints"]) == 51
    # The CLI on the written files gives the evaluator's numbers.
    res_cli = poseval.evaluate_dirs(str(gt_dir), str(out / "posetrack_predictions"))
    assert res_cli.summary()["AP"]["Mean"] == pytest.approx(m["AP"])
    assert res_cli.summary()["MOTA"]["Mean"] == pytest.approx(m["MOTA"])
    written = json.loads((out / "posetrack_metrics.json").read_text())
    assert written["ap"]["total"] == pytest.approx(100.0)
    # The duplicate report rides along: the GT fed back has one prediction per person.
    assert written["duplicates"]["duplicates"] == 0 and written["duplicates"]["steals"] == 0
    assert m["AP-without-duplicates"] == pytest.approx(100.0)


def test_evaluator_tracking_and_jitter(tiny_split, tmp_path):
    dataset, gt_dir, names = tiny_split
    ev = PoseTrackEvaluator(
        dataset, output_dir=str(tmp_path / "o"), distributed=False, eval_tracking=True
    )
    # ids swap at frame 2 (evaluated frames 0, 2, 3; 3 is last and skipped): 2 switches on 4 objects / joint
    m = _run(ev, names, swap_track_at=2)["posetrack"]
    assert m["AP"] == pytest.approx(100.0)
    assert m["MOTA"] == pytest.approx(100.0 * (1 - 4 / 8))
    # big jitter lowers AP; eval_tracking=False gives AP only
    ev = PoseTrackEvaluator(
        dataset, output_dir=str(tmp_path / "o2"), distributed=False, eval_tracking=False
    )
    m = _run(ev, names, jitter=12.0)["posetrack"]
    assert 0 < m["AP"] < 100 and "MOTA" not in m
    # without track ids: AP only even when tracking is asked for
    ev = PoseTrackEvaluator(
        dataset, output_dir=str(tmp_path / "o3"), distributed=False, eval_tracking=True
    )
    m = _run(ev, names, with_tracks=False)["posetrack"]
    assert m["AP"] == pytest.approx(100.0) and "MOTA" not in m


def test_evaluator_places_frames_by_video_and_index_and_counts_missing_sequences(
    tiny_split, tmp_path
):
    dataset, gt_dir, names = tiny_split
    ev = PoseTrackEvaluator(dataset, output_dir=str(tmp_path / "o"), distributed=False)
    m = _run(ev, names, use_file_name=False)["posetrack"]
    assert m["AP"] == pytest.approx(100.0)
    # predictions for the first sequence only: the second's people count as misses (recall 1/2)
    m = _run(ev, names[:1])["posetrack"]
    assert m["AP"] == pytest.approx(50.0)
    pred = json.loads((tmp_path / "o" / "posetrack_predictions" / f"{names[1]}.json").read_text())
    assert len(pred["images"]) == 4 and pred["annotations"] == []


def test_evaluator_rejects_keypoints_in_another_layout(tiny_split):
    dataset, _, _ = tiny_split
    ev = PoseTrackEvaluator(dataset, distributed=False)
    inst = Instances((10, 10))
    inst.pred_keypoints = torch.zeros(1, 17, 3)
    inst.scores = torch.ones(1)
    with pytest.raises(ValueError, match=r"\(k, 15, 3\).*got \(1, 17, 3\) for a\.jpg"):
        ev.process([{"image_id": 1, "file_name": "a.jpg"}], [{"instances": inst}])


def test_evaluator_without_gt_writes_files_and_returns_empty(tmp_path):
    name = f"posetrack_eval_test_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(evaluator_type="posetrack", **posetrack_metadata())
    try:
        ev = PoseTrackEvaluator(name, output_dir=str(tmp_path), distributed=False)
        assert _run(ev, ["000001_mpii_test"], n_frames=1) == {}
        assert len(json.loads((tmp_path / "keypoint_results.json").read_text())) == 2
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_writer_slots_threshold_and_atomic_replace(tmp_path):
    images = [
        {"id": 7, "file_name": "images/val/000001_mpii_test/000000.jpg", "extra": 1},
        {"id": 8},
    ]
    kp = np.zeros((15, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.arange(15) + 1, 2.0, np.linspace(0.05, 0.95, 15)
    data = build_posetrack18_sequence(
        images, [[{"keypoints": kp, "score": 0.5, "track_id": 3}], []], joint_score_thresh=0.5
    )
    assert [im["id"] for im in data["images"]] == [7, 8] and "extra" not in data["images"][0]
    (ann,) = data["annotations"]
    slots = np.asarray(ann["keypoints"]).reshape(17, 3)
    scores = np.asarray(ann["scores"])
    nose, lw = POSETRACK18_SLOT_NAMES.index("nose"), POSETRACK18_SLOT_NAMES.index("right_ankle")
    assert slots[nose].tolist() == [0, 0, 0]  # below the joint threshold -> absent
    assert slots[lw].tolist() == [15.0, 2.0, 1.0] and scores[lw] == pytest.approx(0.95)
    assert slots[EARS].sum() == 0 and scores[EARS].sum() == 0
    assert ann["track_id"] == 3 and ann["image_id"] == 7 and ann["id"] == 700
    # atomic: replaces an existing file, leaves no temp file behind, and keeps the old file on failure
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(str(path), {"a": 1})
    atomic_write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"a": object()})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(path.parent) == ["x.json"]
    res = write_coco_keypoint_results(
        str(tmp_path / "c.json"),
        [{"image_id": 7, "keypoints": kp[None], "scores": [0.5], "track_ids": [3]}],
    )
    assert res[0]["track_id"] == 3 and res[0]["keypoints"][3 * EARS[0] : 3 * EARS[0] + 3] == [
        0,
        0,
        0,
    ]
