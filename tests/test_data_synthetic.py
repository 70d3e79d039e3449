"""Synthetic PoseTrack: deterministic, exact PoseTrack18 format, rendered joints where the JSON says."""

import filecmp
import json
import os

import cv2
import numpy as np
import pytest

from pavenet.data.datasets.posetrack import load_posetrack_video_dicts
from pavenet.data.keypoint_meta import POSETRACK18_SLOTS_FOR_15, POSETRACK_KEYPOINT_NAMES
from pavenet.data.synthetic import (
    JOINT_COLORS,
    ensure_synthetic_dataset,
    generate_synthetic_posetrack,
    joint_radius,
    render_video,
)

KW = dict(num_train=3, num_val=1, num_frames=6, seed=7)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_a")
    generate_synthetic_posetrack(str(root), **KW)
    return root


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_deterministic(syn, tmp_path):
    generate_synthetic_posetrack(str(tmp_path), **KW)
    files = _files(syn)
    assert files == _files(tmp_path) and len(files) == 4 * 6 + 4 + 1
    _, mismatch, errors = filecmp.cmpfiles(syn, tmp_path, files, shallow=False)
    assert not mismatch and not errors
    other = tmp_path / "other"
    generate_synthetic_posetrack(str(other), **dict(KW, seed=8))
    assert not filecmp.cmp(syn / files[0], other / files[0], shallow=False)


def test_posetrack18_format(syn):
    seqs = sorted(os.listdir(syn / "annotations/train"))
    assert len(seqs) == 3 and len(os.listdir(syn / "annotations/val")) == 1
    data = json.load(open(syn / "annotations/train" / seqs[0]))
    assert set(data) == {"images", "annotations", "categories"}
    assert len(data["categories"][0]["keypoints"]) == 17
    img = data["images"][0]
    for key in (
        "file_name",
        "id",
        "frame_id",
        "vid_id",
        "nframes",
        "is_labeled",
        "has_no_densepose",
    ):
        assert key in img
    assert img["file_name"] == f"images/train/{seqs[0][:-5]}/000000.jpg" and img["nframes"] == 6
    assert os.path.isfile(syn / img["file_name"])
    ann = data["annotations"][0]
    assert len(ann["keypoints"]) == 51 and ann["keypoints"][9:15] == [0] * 6  # ears empty
    assert set(ann["keypoints"][2::3]) <= {0, 1}
    assert ann["num_keypoints"] == sum(ann["keypoints"][2::3])
    assert len(ann["bbox_head"]) == 4 and ann["category_id"] == 1 and ann["scores"] == []
    dicts = load_posetrack_video_dicts(str(syn / "annotations/train"), str(syn))
    assert len(dicts) == 3 * 6  # train: every frame labelled
    val = load_posetrack_video_dicts(str(syn / "annotations/val"), str(syn))
    assert 0 < len(val) < 6  # val: dense middle + every 4th frame


def test_default_dataset_properties():
    """Default-size videos: 1-4 people, 40-90% of the frame height, some ignore regions, some entering."""
    rng_people, heights, n_ignore = [], [], 0
    for v in range(16):
        frames, people, poses, ignore = render_video(np.random.default_rng([0, 0, v]), 24, 256, 192)
        assert 1 <= len(people) <= 4
        heights += [p["hp"] / 192 for p in people]
        n_ignore += bool(ignore)
        inside = (poses[..., 0] >= 0) & (poses[..., 0] < 256)
        rng_people += [
            inside[:, i].all(1).any() and not inside[:, i].all() for i in range(len(people))
        ]
    assert 0.4 <= min(heights) and max(heights) <= 0.9
    assert n_ignore >= 1 and any(rng_people)


def test_rendered_joints_match_json(syn):
    """Pixel colour at each visible, unoccluded joint = that joint's colour (catches left/right swaps and
    frame offsets)."""
    checked = 0
    for split, code, first in (("train", 0, 0), ("val", 1, 1000)):
        for v in range(KW["num_train"] if split == "train" else KW["num_val"]):
            seq = f"{first + v:06d}_synth_{split}"
            data = json.load(open(syn / "annotations" / split / f"{seq}.json"))
            # re-render in memory for the drawing order (the JSON has no depth)
            _, people, poses, _ = render_video(
                np.random.default_rng([KW["seed"], code, v]), KW["num_frames"], 256, 192
            )
            front = people[-1]
            by_image = {}
            for a in data["annotations"]:
                by_image.setdefault(a["image_id"], []).append(a)
            for t, img in enumerate(data["images"]):
                pix = cv2.cvtColor(
                    cv2.imread(str(syn / img["file_name"])), cv2.COLOR_BGR2RGB
                ).astype(int)
                others = poses[t].reshape(-1, 2)
                r = joint_radius(front["hp"])
                for a in by_image.get(img["id"], []):
                    if a["track_id"] != front["track_id"]:
                        continue
                    kp = np.array(a["keypoints"]).reshape(17, 3)[list(POSETRACK18_SLOTS_FOR_15)]
                    for k, name in enumerate(POSETRACK_KEYPOINT_NAMES):
                        x, y, vis = kp[k]
                        if not vis or not (r <= x < 256 - r and r <= y < 192 - r):
                            continue
                        d = np.linalg.norm(others - [x, y], axis=1)
                        if np.sort(d)[1] < 2 * r + 2:  # another joint disc overlaps this one
                            continue
                        got = pix[int(round(y)), int(round(x))]
                        dist = {n: np.abs(got - np.array(c)).sum() for n, c in JOINT_COLORS.items()}
                        assert min(dist, key=dist.get) == name and dist[name] < 60, (
                            seq,
                            t,
                            name,
                            got,
                        )
                        checked += 1
    assert checked > 50


def test_ensure_generates_once(tmp_path):
    root = tmp_path / "posetrack_synthetic"
    assert ensure_synthetic_dataset(str(root), num_train=1, num_val=1, num_frames=2) == str(root)
    assert (root / ".done").is_file()
    stamp = os.path.getmtime(root / ".done")
    ensure_synthetic_dataset(str(root), num_train=1, num_val=1, num_frames=2)
    assert os.path.getmtime(root / ".done") == stamp
    assert [
        p for p in os.listdir(tmp_path) if p.startswith(".posetrack")
    ] == []  # no temp folders left
