"""Clip mapper: one augmentation decision per clip, keypoints moved like the pixels on every frame."""

import contextlib
import json

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from pavenet.config import add_pavenet_config
from pavenet.data.dataset_mapper import PoseTrackClipDatasetMapper
from pavenet.data.datasets.posetrack import load_posetrack_video_dicts, register_posetrack
from pavenet.data.keypoint_meta import POSETRACK_KEYPOINT_NAMES, flip_indices

from conftest import BASE_CONFIG

# one distinct colour per joint (RGB)
COLORS = np.array(
    [[(37 * k * 7) % 256, (91 * k + 40) % 256, (53 * k * 3 + 90) % 256] for k in range(15)]
)
W, H = 160, 120


def _joints():
    # a 5 x 3 grid, jittered, well separated so markers never overlap
    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.linspace(30, W - 30, 5), np.linspace(30, H - 30, 3))
    return np.stack([gx.ravel(), gy.ravel()], 1) + rng.uniform(-4, 4, (15, 2))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """3-frame video: every frame shows the same joint markers (a clip with no motion), on different
    backgrounds, so a pixel at a mapped joint must have that joint's colour in EVERY frame."""
    root = tmp_path_factory.mktemp("clipdata")
    J = _joints()
    images = []
    for t in range(3):
        img = np.full((H, W, 3), 40 * (t + 1), np.uint8)
        for k, (x, y) in enumerate(J):
            cv2.circle(img, (int(round(x)), int(round(y))), 5, COLORS[k].tolist(), -1)
        rel = f"images/000001_m_test/{t:06d}.png"
        (root / "images/000001_m_test").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": t, "file_name": rel, "is_labeled": t == 1, "width": W, "height": H})
    kp = [0.0] * 51
    for k, slot in enumerate([0, 1, 2] + list(range(5, 17))):
        kp[3 * slot : 3 * slot + 3] = [float(np.round(J[k, 0])), float(np.round(J[k, 1])), 1]
    ann = {
        "image_id": 1,
        "keypoints": kp,
        "track_id": 5,
        "bbox": [0, 0, W, H],
        "bbox_head": [0, 0, 10, 10],
    }
    (root / "ann").mkdir()
    (root / "ann/000001_m_test.json").write_text(
        json.dumps({"images": images, "annotations": [ann]})
    )
    name = "test_clip_mapper_video"
    if name not in DatasetCatalog.list():
        register_posetrack(name, str(root / "ann"), str(root))
    d = load_posetrack_video_dicts(str(root / "ann"), str(root))
    assert len(d) == 1
    return name, d[0]


def _cfg(**kv):
    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(BASE_CONFIG))
    cfg.INPUT.MIN_SIZE_TRAIN = (100, 140)
    cfg.INPUT.MAX_SIZE_TRAIN = 200
    cfg.INPUT.MIN_SIZE_TEST = 90
    cfg.INPUT.MAX_SIZE_TEST = 200
    cfg.INPUT.PAVENET.CROP_PRE_RESIZE_SHORT = [120]
    cfg.INPUT.CROP.SIZE = [70, 110]
    cfg.INPUT.PAVENET.COLOR_AUG = False  # colours identify joints in this test
    cfg.merge_from_list([x for item in kv.items() for x in item])
    return cfg


def test_one_decision_per_clip(video):
    name, d = video
    flips = flip_indices(POSETRACK_KEYPOINT_NAMES)
    seen_flip, seen_crop_drop = set(), False
    for seed in range(16):
        np.random.seed(seed)
        cfg = _cfg(**{"INPUT.PAVENET.CROP_PROB": 0.5, "INPUT.PAVENET.ROTATION": 30.0})
        out = PoseTrackClipDatasetMapper(cfg, is_train=True, dataset_name=name)(d)
        assert out is not None
        imgs = out["images"]
        assert imgs.dtype == torch.uint8 and imgs.shape[:2] == (3, 3)
        kp = out["instances"].gt_keypoints.tensor[0].numpy()  # (15, 3)
        vis = kp[:, 2] > 0
        assert vis.any()
        seen_crop_drop |= not vis.all()
        # which original joint is at output slot k: k itself, or its mirror when the clip was flipped
        votes = []
        for flipped in (False, True):
            src = [flips[k] if flipped else k for k in range(15)]
            ok = 0
            for f in range(3):
                frame = imgs[f].permute(1, 2, 0).numpy().astype(int)
                for k in np.nonzero(vis)[0]:
                    x, y = int(kp[k, 0]), int(kp[k, 1])
                    x, y = min(x, frame.shape[1] - 1), min(y, frame.shape[0] - 1)
                    dist = np.abs(COLORS - frame[y, x]).sum(1)
                    ok += int(np.argmin(dist) == src[k] and dist[src[k]] < 60)
            votes.append(ok)
        n = 3 * int(vis.sum())
        flipped = bool(np.argmax(votes))
        # every visible joint on every frame lands on its own marker: the same transform for all frames
        assert max(votes) >= n - 1, (seed, votes, n)
        seen_flip.add(flipped)
        # boxes = visible-joint extents, track id kept
        box = out["instances"].gt_boxes.tensor[0].numpy()
        np.testing.assert_allclose(box, [*kp[vis, :2].min(0), *kp[vis, :2].max(0)], atol=1e-4)
        assert out["instances"].gt_track_ids.tolist() == [5]
        assert out["instances"].image_size == tuple(imgs.shape[2:])
    assert seen_flip == {False, True}  # both decisions exercised
    assert seen_crop_drop  # some crop/rotation pushed joints out: they became v=0


def test_test_mode_resize_only(video):
    name, d = video
    out = PoseTrackClipDatasetMapper(_cfg(), is_train=False, dataset_name=name)(d)
    assert out["images"].shape == (3, 3, 90, 120)
    assert (out["height"], out["width"]) == (H, W)
    assert out["file_names"] == d["video_file_names"]
    kp = out["instances"].gt_keypoints.tensor[0].numpy()
    J = np.round(_joints())
    np.testing.assert_allclose(kp[:, :2], J * 0.75, atol=1e-3)
    assert out["instances"].gt_areas[0] == pytest.approx(W * H * 0.75**2, rel=1e-4)
    for key in ("image_id", "video_id", "frame_index", "file_name"):
        assert out[key] == d[key]


def test_pseudo_clip_aux_frames_rotated(video):
    name, d = video
    cfg = _cfg(
        **{
            "INPUT.PAVENET.CROP_PROB": 0.0,
            "INPUT.PAVENET.ROTATION": 0.0,
            "INPUT.RANDOM_FLIP": "none",
        }
    )
    m = PoseTrackClipDatasetMapper(cfg, is_train=True, dataset_name=name)
    m.pseudo_clip = True
    np.random.seed(1)  # r = randint{0..5}
    out = m(dict(d, video_file_names=[d["file_name"]], frame_index=0))
    imgs = out["images"].float()
    assert not torch.equal(imgs[0], imgs[1]) and not torch.equal(imgs[2], imgs[1])
    # t-1 and t+1 are rotated by opposite angles: rotating t-1 back by 2r would give t+1; cheaper check:
    # both differ from the key frame by a similar amount
    d0, d2 = (imgs[0] - imgs[1]).abs().mean(), (imgs[2] - imgs[1]).abs().mean()
    assert 0.5 < float(d0 / d2) < 2.0


@contextlib.contextmanager
def _registered_synthetic(tmp_path, name: str, split: str):
    """Two train and one val synthetic video (6 frames each), `split` registered as `name`; yields the root."""
    from pavenet.data.synthetic import generate_synthetic_posetrack

    root = tmp_path / "syn"
    root.mkdir()
    generate_synthetic_posetrack(str(root), num_train=2, num_val=1, num_frames=6)
    register_posetrack(name, str(root / "annotations" / split), str(root))
    try:
        yield root
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_loaders_on_synthetic(tmp_path, monkeypatch):
    from pavenet.data.build import build_pavenet_test_loader, build_pavenet_train_loader

    name = "test_loader_synthetic"
    with _registered_synthetic(tmp_path, name, "val") as root:
        cfg = _cfg()
        cfg.DATASETS.TRAIN = (name,)
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.SEED = 3
        batch = next(iter(build_pavenet_train_loader(cfg)))
        assert isinstance(batch, list) and len(batch) == 2
        assert all(b["images"].shape[:2] == (3, 3) and len(b["instances"]) > 0 for b in batch)
        test = list(build_pavenet_test_loader(cfg, name))
        labelled = [x for x in load_posetrack_video_dicts(str(root / "annotations/val"), str(root))]
        assert [b[0]["image_id"] for b in test] == [x["image_id"] for x in labelled]
        cfg.INPUT.PAVENET.TEST_FRAMES = "all"
        assert len(list(build_pavenet_test_loader(cfg, name))) == 6


@pytest.mark.parametrize("num_workers,grouping", [(0, True), (1, True), (1, False)])
def test_train_loader_gives_detectron2s_clips(tmp_path, num_workers, grouping):
    """Our train loader (clips leave the worker pickled, two batches in flight) yields exactly the clips of
    detectron2's `build_detection_train_loader` with the same dataset, mapper and sampler, in the same
    order, with the same augmentation (worker seeding included)."""
    from detectron2.data import build_detection_train_loader
    from detectron2.data.samplers import TrainingSampler

    from pavenet.data.build import (
        _PickledClipMapper,
        build_pavenet_train_loader,
        get_train_clip_dicts,
    )

    name = "test_loader_equal_detectron2"
    with _registered_synthetic(tmp_path, name, "train"):
        cfg = _cfg()
        cfg.DATASETS.TRAIN = (name,)
        cfg.SOLVER.IMS_PER_BATCH = 3
        cfg.DATALOADER.NUM_WORKERS = num_workers
        cfg.DATALOADER.ASPECT_RATIO_GROUPING = grouping
        cfg.SEED = 5
        dicts = get_train_clip_dicts([name])
        mapper = PoseTrackClipDatasetMapper(cfg, is_train=True, dataset_name=name)
        # What crosses the process boundary: plain values and one bytes object, no tensor.
        packed = _PickledClipMapper(mapper)(dicts[0])
        assert {type(v) for v in packed.values()} <= {int, bytes}

        def take(loader, n=4):
            torch.manual_seed(
                0
            )  # the workers' base seed is drawn from torch's RNG when iteration starts
            np.random.seed(0)  # the in-process (0 workers) augmentation
            it = iter(loader)
            return [next(it) for _ in range(n)]

        ours = take(build_pavenet_train_loader(cfg, mapper=mapper, dataset=dicts))
        theirs = take(
            build_detection_train_loader(
                dataset=dicts,
                mapper=mapper,
                sampler=TrainingSampler(len(dicts), shuffle=True, seed=5),
                total_batch_size=3,
                aspect_ratio_grouping=grouping,
                num_workers=num_workers,
            )
        )
        for a, b in zip(ours, theirs):
            assert len(a) == len(b) == 3
            for x, y in zip(a, b):
                assert x["image_id"] == y["image_id"] and x["file_names"] == y["file_names"]
                assert torch.equal(x["images"], y["images"])
                assert torch.equal(
                    x["instances"].gt_keypoints.tensor, y["instances"].gt_keypoints.tensor
                )
                assert torch.equal(x["instances"].gt_track_ids, y["instances"].gt_track_ids)
        # The draws differ between batches (a loader that repeated one clip would pass the comparison).
        assert len({x["image_id"] for batch in ours for x in batch}) > 3


def test_train_batch_must_split_over_processes():
    from pavenet.data.build import build_pavenet_train_loader

    cfg = _cfg()
    cfg.SOLVER.IMS_PER_BATCH = 0
    with pytest.raises(ValueError, match="SOLVER.IMS_PER_BATCH"):
        build_pavenet_train_loader(cfg, mapper=lambda d: d, dataset=[{"width": 2, "height": 1}])


def test_test_set_without_frames_is_an_error_naming_it(tmp_path):
    from pavenet.data.build import build_pavenet_test_loader

    (tmp_path / "ann").mkdir()
    images = [
        {"id": 0, "file_name": "images/v/000000.png", "is_labeled": False, "width": W, "height": H}
    ]
    (tmp_path / "ann/000002_m_test.json").write_text(
        json.dumps({"images": images, "annotations": []})
    )
    name = "test_loader_no_labelled_frames"
    register_posetrack(name, str(tmp_path / "ann"), str(tmp_path))
    try:
        with pytest.raises(
            ValueError, match=f"'{name}' has no frame to evaluate.*TEST_FRAMES 'labeled'"
        ):
            build_pavenet_test_loader(_cfg(), name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_clip_previews_show_every_frame_with_the_key_frame_marked(video, tmp_path):
    from pavenet.data.preview import write_clip_previews

    name, _ = video
    cfg = _cfg()
    [rec] = write_clip_previews(cfg, name, str(tmp_path / "test"), num=5, test=True)
    assert rec["frames"] == 3 and rec["size"] == (90, 120) and rec["persons"] == 1
    strip = cv2.imread(rec["path"])  # BGR
    assert strip.shape == (90, 3 * 120, 3)
    # key frame (middle panel): yellow border; neighbours: their own background where nothing is drawn
    assert strip[0, 120 + 60].tolist() == [0, 230, 255]
    assert strip[1, 1].tolist() == [40, 40, 40] and strip[1, 2 * 120 + 1].tolist() == [
        120,
        120,
        120,
    ]
    # training mode: the same seed draws the same augmentations, hence the same strip
    a = write_clip_previews(
        _cfg(**{"INPUT.PAVENET.ROTATION": 30.0}), name, str(tmp_path / "a"), num=1, seed=3
    )
    b = write_clip_previews(
        _cfg(**{"INPUT.PAVENET.ROTATION": 30.0}), name, str(tmp_path / "b"), num=1, seed=3
    )
    assert (cv2.imread(a[0]["path"]) == cv2.imread(b[0]["path"])).all()
