"""The COCO pseudo-clip validation path: ground truth fed back as predictions scores AP 100 through
detectron2's COCOEvaluator (pycocotools), as built by `Trainer.build_evaluator`."""

import json
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from pavenet.config import load_pavenet_config
from pavenet.data.datasets.builtin import register_coco_pseudo_clips
from pavenet.engine import Trainer

from conftest import BASE_CONFIG


def _coco_json(path):
    """2 images, 3 people with all 17 joints; category id 1 (COCO's person), which is not the model's 0."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(2):
        images.append({"id": 10 + i, "file_name": f"{i:012d}.jpg", "height": 480, "width": 640})
        for p in range(1 + i):
            x0, y0 = 60 + 250 * p, 40
            kp = np.stack(
                [x0 + rng.uniform(0, 150, 17), y0 + rng.uniform(0, 300, 17), np.full(17, 2)], 1
            )
            kp[:, :2] = np.round(kp[:, :2])
            w, h = np.ptp(kp[:, 0]), np.ptp(kp[:, 1])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 10 + i,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": kp.reshape(-1).tolist(),
                    "num_keypoints": 17,
                    "bbox": [float(kp[:, 0].min()), float(kp[:, 1].min()), float(w), float(h)],
                    "area": float(w * h),
                }
            )
    cats = [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": [f"k{k}" for k in range(17)],
            "skeleton": [],
        }
    ]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _gt_as_outputs(d):
    """The dataset dict's people as model outputs (k, 17, 3): load_coco_json moved them to pixel centres
    (+0.5), which COCOEvaluator's writer undoes, so these are the JSON's exact coordinates."""
    kp = torch.tensor([a["keypoints"] for a in d["annotations"]], dtype=torch.float32).view(
        -1, 17, 3
    )
    kp[..., 2] = 1.0
    inst = Instances((d["height"], d["width"]))
    inst.pred_keypoints = kp
    inst.scores = torch.ones(len(kp))
    inst.pred_boxes = Boxes(torch.cat([kp[..., :2].min(1).values, kp[..., :2].max(1).values], 1))
    inst.pred_classes = torch.zeros(len(kp), dtype=torch.int64)
    return {"instances": inst}


def test_coco_ground_truth_as_predictions_scores_ap_100(tmp_path):
    _coco_json(tmp_path / "person_keypoints.json")
    name = f"coco_pseudo_clip_test_{uuid.uuid4().hex[:8]}"
    register_coco_pseudo_clips(name, str(tmp_path / "person_keypoints.json"), str(tmp_path))
    try:
        dicts = DatasetCatalog.get(name)  # what the test loader does before the evaluator is built
        assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {1: 0}
        cfg = load_pavenet_config(str(BASE_CONFIG), ["OUTPUT_DIR", str(tmp_path / "out")])
        evaluator = Trainer.build_evaluator(cfg, name)
        evaluator.reset()
        for d in dicts:
            evaluator.process([d], [_gt_as_outputs(d)])
        res = evaluator.evaluate()
        assert res["keypoints"]["AP"] == pytest.approx(100.0)
        # A wrong pose costs AP: the check above can fail.
        evaluator.reset()
        for d in dicts:
            out = _gt_as_outputs(d)
            out["instances"].pred_keypoints[..., :2] += 40.0
            evaluator.process([d], [out])
        assert evaluator.evaluate()["keypoints"]["AP"] < 50.0
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_coco_pseudo_clips_stream_and_clips_modes_write_the_same_results(tmp_path):
    """Each COCO image is a one-frame video: the stream mode replicates it F times, as the test mapper
    does, so both video modes write the same COCO results."""
    import cv2

    from conftest import REPO_ROOT

    _coco_json(tmp_path / "person_keypoints.json")
    rng = np.random.default_rng(1)
    for i in range(2):  # noise images of the size the JSON gives
        cv2.imwrite(
            str(tmp_path / f"{i:012d}.jpg"), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        )
    name = f"coco_pseudo_clip_test_{uuid.uuid4().hex[:8]}"
    register_coco_pseudo_clips(name, str(tmp_path / "person_keypoints.json"), str(tmp_path))
    torch.set_num_threads(1)
    try:
        results = {}
        model = None
        for mode in ("stream", "clips"):
            cfg = load_pavenet_config(
                str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml"),
                [
                    "MODEL.DEVICE",
                    "cpu",
                    "MODEL.PAVENET.NUM_KEYPOINTS",
                    17,
                    "INPUT.MIN_SIZE_TEST",
                    96,
                    "INPUT.MAX_SIZE_TEST",
                    128,
                    "DATASETS.TEST",
                    (name,),
                    "DATALOADER.NUM_WORKERS",
                    0,
                    "OUTPUT_DIR",
                    str(tmp_path / mode),
                    "TEST.POSETRACK.VIDEO_MODE",
                    mode,
                ],
            )
            if model is None:
                torch.manual_seed(0)
                model = Trainer.build_model(cfg)
            assert "keypoints" in Trainer.test(cfg, model)
            results[mode] = json.loads(
                (tmp_path / mode / "inference" / name / "coco_instances_results.json").read_text()
            )
        assert len(results["stream"]) == len(results["clips"]) > 0
        for a, b in zip(results["stream"], results["clips"]):
            assert a["image_id"] == b["image_id"] and a["score"] == pytest.approx(
                b["score"], abs=1e-5
            )
            np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-3)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
