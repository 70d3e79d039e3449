"""PoseTrack loaders: the real PoseTrack18 sample (per-sequence and COCO-style), frame naming, errors."""

import json
import os

import numpy as np
import pytest

from pavenet.data.clip_sampler import clip_file_names
from pavenet.data.datasets.posetrack import load_posetrack_video_dicts, register_posetrack
from pavenet.data.keypoint_meta import POSETRACK18_SLOTS_FOR_15

from conftest import BASE_CONFIG


def _by_video(dicts):
    return {d["video_id"]: d for d in dicts}


def test_sample_per_sequence_files(sample_dir):
    dicts = load_posetrack_video_dicts(str(sample_dir / "annotations" / "val"), str(sample_dir))
    vids = _by_video(dicts)
    assert set(vids) == {"003418_mpii_test", "009473_mpii_test"}
    a, b = vids["003418_mpii_test"], vids["009473_mpii_test"]
    assert len(a["annotations"]) == 1 and len(b["annotations"]) == 2
    assert [x["track_id"] for x in b["annotations"]] == [0, 1]
    # joint counts: num_keypoints in the files are 11 (003418) and 14, 15 (009473)
    assert sum(v > 0 for v in a["annotations"][0]["keypoints"][2::3]) == 11
    assert sorted(sum(v > 0 for v in x["keypoints"][2::3]) for x in b["annotations"]) == [14, 15]
    assert len(a["ignore_regions"]) == 9 and len(b["ignore_regions"]) == 2
    raw = json.load(open(sample_dir / "annotations" / "val" / "003418_mpii_test.json"))
    img = raw["images"][0]
    assert a["ignore_regions"][1][0] == (
        img["ignore_regions_x"][1][0],
        img["ignore_regions_y"][1][0],
    )
    assert len(a["ignore_regions"][1]) == len(img["ignore_regions_x"][1])
    assert a["image_id"] == 10034180000 and a["frame_index"] == 0 and a["is_labeled"]
    assert a["file_name"] == os.path.join(str(sample_dir), "images/val/003418_mpii_test/000000.jpg")
    assert os.path.isfile(a["file_name"])
    assert a["video_file_names"] == [a["file_name"]]
    # 17 -> 15 mapping: our joint k is slot POSETRACK18_SLOTS_FOR_15[k]; ears (slots 3, 4) dropped
    k17 = np.array(raw["annotations"][0]["keypoints"]).reshape(17, 3)
    k15 = np.array(a["annotations"][0]["keypoints"]).reshape(15, 3)
    assert k15.shape == (15, 3)
    np.testing.assert_allclose(k15, k17[list(POSETRACK18_SLOTS_FOR_15)])
    np.testing.assert_allclose(k15[3], [371, 737, 1])  # left_shoulder = slot 5
    hx, hy, hw, hh = raw["annotations"][0]["bbox_head"]
    assert a["annotations"][0]["head_bbox"] == (hx, hy, hx + hw, hy + hh)
    assert a["annotations"][0]["category_id"] == 0 and a["height"] == 1080 and a["width"] == 1920


def test_sample_coco_style_file(sample_dir):
    per_seq = _by_video(
        load_posetrack_video_dicts(str(sample_dir / "annotations" / "val"), str(sample_dir))
    )
    dicts = load_posetrack_video_dicts(
        str(sample_dir / "annotations" / "test_posetrack18_val.json"), str(sample_dir)
    )
    assert len(dicts) == 2
    for d in dicts:
        ref = per_seq[d["video_id"]]
        assert d["image_id"] == ref["image_id"] and d["file_name"] == ref["file_name"]
        assert len(d["annotations"]) == len(ref["annotations"])
        for x, y in zip(d["annotations"], ref["annotations"]):
            assert x["keypoints"] == y["keypoints"] and x["track_id"] == y["track_id"]
        assert d["ignore_regions"] == ref["ignore_regions"]
        # the video's frame list is rebuilt from nframes (149 / 101), 0-based 6-digit names
        n = {"003418_mpii_test": 149, "009473_mpii_test": 101}[d["video_id"]]
        assert len(d["video_file_names"]) == n
        assert d["video_file_names"][0] == d["file_name"]
        assert d["video_file_names"][-1].endswith(f"{d['video_id']}/{n - 1:06d}.jpg")
    all_frames = load_posetrack_video_dicts(
        str(sample_dir / "annotations" / "test_posetrack18_val.json"), str(sample_dir), frames="all"
    )
    assert len(all_frames) == 149 + 101
    assert sum(d["is_labeled"] for d in all_frames) == 2
    assert len({d["image_id"] for d in all_frames}) == 250


def _coco_style(tmp_path, n_digits, base, nframes=5, labelled=(0, 2, 4), k=17):
    images, anns = [], []
    for i, f in enumerate(labelled):
        name = f"images/v/000001_bonn/{f + base:0{n_digits}d}.jpg"
        images.append(
            {
                "id": 100 + i,
                "file_name": name,
                "nframes": nframes,
                "is_labeled": True,
                "width": 64,
                "height": 48,
            }
        )
        kp = [0.0] * (3 * k)
        kp[0:3] = [10.0 + f, 20.0, 1]
        anns.append({"image_id": 100 + i, "keypoints": kp, "bbox": [0, 0, 30, 30], "track_id": 3})
    p = tmp_path / f"posetrack_{n_digits}.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return str(p)


@pytest.mark.parametrize("n_digits,base", [(8, 1), (6, 0)])  # PoseTrack 2017 / 2018 naming
def test_frame_naming_and_border_replication(tmp_path, n_digits, base):
    dicts = load_posetrack_video_dicts(_coco_style(tmp_path, n_digits, base), str(tmp_path))
    assert [d["frame_index"] for d in dicts] == [0, 2, 4]
    names = dicts[0]["video_file_names"]
    assert [os.path.basename(n) for n in names] == [
        f"{i + base:0{n_digits}d}.jpg" for i in range(5)
    ]
    first, last = dicts[0], dicts[-1]
    for F in (3, 5):
        c = clip_file_names(first["video_file_names"], first["frame_index"], F)
        assert c[: F // 2 + 1] == [names[0]] * (F // 2 + 1) and c[-1] == names[F // 2]
        c = clip_file_names(last["video_file_names"], last["frame_index"], F)
        assert c[F // 2 :] == [names[4]] * (F // 2 + 1) and c[0] == names[4 - F // 2]
    mid = clip_file_names(dicts[1]["video_file_names"], 2, 5)
    assert mid == names


def test_fixed_15_joint_file(tmp_path):
    dicts = load_posetrack_video_dicts(_coco_style(tmp_path, 8, 1, k=15), str(tmp_path))
    assert dicts[1]["annotations"][0]["keypoints"][:3] == [12.0, 20.0, 1.0]
    assert len(dicts[1]["annotations"][0]["keypoints"]) == 45


def _sequence(tmp_path, images, anns):
    d = tmp_path / "ann"
    d.mkdir(exist_ok=True)
    (d / "000001_x_test.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return str(d)


def test_errors_name_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_posetrack_video_dicts(str(tmp_path / "nowhere"), str(tmp_path))
    bad = tmp_path / "trunc.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "a/000000.jpg"')
    with pytest.raises(ValueError, match="trunc.json.*(invalid|truncated)"):
        load_posetrack_video_dicts(str(bad), str(tmp_path))
    empty = _sequence(tmp_path, [], [])
    with pytest.raises(ValueError, match="000001_x_test.json.*no frames.*'images'"):
        load_posetrack_video_dicts(empty, str(tmp_path))
    img = {"id": 7, "file_name": "images/000001_x_test/000000.jpg", "is_labeled": True}
    wrong = _sequence(tmp_path, [img], [{"image_id": 7, "keypoints": [1.0] * 50, "track_id": 0}])
    with pytest.raises(
        ValueError, match=r"000001_x_test.json: annotations\[0\].*'keypoints' has 50"
    ):
        load_posetrack_video_dicts(wrong, str(tmp_path))
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps({"images": [dict(img, nframes=0)], "annotations": []}))
    with pytest.raises(ValueError, match="zero.json.*'nframes'"):
        load_posetrack_video_dicts(str(zero), str(tmp_path))


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(keypoints=[float("nan"), 5.0, 1.0] + [0.0] * 48), r"'keypoints' slot 0: non-finite"),
        (dict(keypoints=["a", 5.0, 1.0] + [0.0] * 48), r"'keypoints' slot 0: expected numbers"),
        (dict(bbox=[0, 0, float("inf"), 4]), r"'bbox': non-finite"),
        (dict(track_id="p7"), r"'track_id' = 'p7', expected an integer"),
        (dict(track_id=1.5), r"'track_id' = 1.5, expected an integer"),
    ],
)
def test_bad_annotation_values_name_file_field_and_slot(tmp_path, change, needle):
    img = {"id": 7, "file_name": "images/000001_x_test/000000.jpg", "is_labeled": True}
    ann = dict({"image_id": 7, "keypoints": [5.0, 5.0, 1.0] + [0.0] * 48, "track_id": 0}, **change)
    ann_dir = _sequence(
        tmp_path, [img], [ann]
    )  # json.dumps writes NaN / Infinity, which json.loads accepts
    with pytest.raises(ValueError, match=r"000001_x_test.json: annotations\[0\].*" + needle):
        load_posetrack_video_dicts(ann_dir, str(tmp_path))


def test_missing_image_when_mapped(tmp_path):
    from detectron2.config import get_cfg

    from pavenet.config import add_pavenet_config
    from pavenet.data.dataset_mapper import PoseTrackClipDatasetMapper

    img = {"id": 7, "file_name": "images/000001_x_test/000000.jpg", "is_labeled": True}
    kp = [0.0] * 51
    kp[:3] = [5, 5, 1]
    ann_dir = _sequence(tmp_path, [img], [{"image_id": 7, "keypoints": kp, "track_id": 0}])
    d = load_posetrack_video_dicts(ann_dir, str(tmp_path))[0]
    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(BASE_CONFIG))
    mapper = PoseTrackClipDatasetMapper(cfg, is_train=False, dataset_name=None)
    with pytest.raises(
        FileNotFoundError, match=r"000000.jpg.*video_file_names\[0\].*000001_x_test"
    ):
        mapper(d)


def test_registration_is_lazy(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import pavenet.data  # noqa: F401  (built-in names)

    name = "test_lazy_posetrack_missing"
    register_posetrack(
        name, str(tmp_path / "does_not_exist"), str(tmp_path)
    )  # reads nothing: no error
    try:
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "posetrack" and len(meta.keypoint_names) == 15
        assert meta.annotations.endswith("does_not_exist")
        with pytest.raises(FileNotFoundError):
            DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    for n in (
        "posetrack17_train",
        "posetrack18_val",
        "posetrack21_val",
        "coco_2017_train_pavenet",
        "posetrack_synthetic_train",
        "posetrack_synthetic_val",
    ):
        assert n in DatasetCatalog.list()
    assert MetadataCatalog.get("coco_2017_val_pavenet").dataset_type == "coco_pseudo_clip"


def test_coco_pseudo_clips(tmp_path):
    import cv2

    from pavenet.data.datasets.builtin import load_coco_pseudo_clip_dicts

    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((40, 50, 3), np.uint8))
    kp = [0] * 51
    kp[15:18] = [10, 10, 2]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [1, 1, 20, 20],
            "area": 300,
            "iscrowd": 0,
            "keypoints": kp,
            "num_keypoints": 1,
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "bbox": [1, 1, 5, 5],
            "area": 25,
            "iscrowd": 1,
            "keypoints": [0] * 51,
            "num_keypoints": 0,
        },
    ]
    (tmp_path / "c.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}],
                "annotations": anns,
                "categories": [{"id": 1, "name": "person"}],
            }
        )
    )
    (d,) = load_coco_pseudo_clip_dicts(str(tmp_path / "c.json"), str(tmp_path))
    assert d["video_file_names"] == [str(tmp_path / "a.jpg")] and d["frame_index"] == 0
    assert len(d["annotations"]) == 1  # crowd dropped
    a = d["annotations"][0]
    assert len(a["keypoints"]) == 51 and a["keypoints"][15:18] == [
        10.5,
        10.5,
        2.0,
    ]  # COCO order, +0.5 px
    assert a["category_id"] == 0 and a["area"] == 300
