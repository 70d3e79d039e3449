"""Video evaluation: TEST.POSETRACK.VIDEO_MODE "stream" (cached, one video per batch) gives the predictions
and AP of "clips" (every test frame's clip through the model's forward) with each frame encoded once, and
the evaluation tracker's ids give poseval's MOTA."""

import json
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances
from test_demo_predictor import _count_encoded_frames
from test_eval_evaluator import _people, _write_gt

from pavenet.config import load_pavenet_config
from pavenet.data.build import VideoInferenceLoader, get_test_clip_dicts
from pavenet.data.clip_sampler import clip_frame_indices, clips_from_frames, frames_for_clips
from pavenet.data.datasets.posetrack import register_posetrack
from pavenet.engine import Trainer
from pavenet.evaluation import poseval
from pavenet.evaluation.video_inference import VideoInference

from conftest import BASE_CONFIG, load_tiny_cfg, run_gloo_workers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(dataset, out_dir, *opts):
    # Small test frames keep the random tiny model fast; the comparison does not depend on the size.
    return load_tiny_cfg(
        *[
            "MODEL.WEIGHTS",
            "",
            "INPUT.MIN_SIZE_TEST",
            96,
            "INPUT.MAX_SIZE_TEST",
            128,
            "DATASETS.TEST",
            (dataset,),
            "DATALOADER.NUM_WORKERS",
            0,
            "OUTPUT_DIR",
            str(out_dir),
            *opts,
        ]
    )


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """2 val videos of 8 frames: labelled 0, 2, 3, 4, 5 (a dense block plus every 4th frame)."""
    from pavenet.data.synthetic import generate_synthetic_posetrack

    return generate_synthetic_posetrack(
        str(tmp_path_factory.mktemp("synthetic")), num_train=1, num_val=2, num_frames=8
    )


def _register_synthetic_val(root, name):
    if name not in DatasetCatalog.list():
        register_posetrack(name, f"{root}/annotations/val", root)


@pytest.fixture(scope="module")
def synthetic_val(synthetic_root):
    name = f"video_eval_synth_{uuid.uuid4().hex[:6]}"
    _register_synthetic_val(synthetic_root, name)
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return Trainer.build_model(tiny_cfg("unused", "/tmp"))


def _evaluate(model, dataset, out_dir, mode, *opts):
    counter = _count_encoded_frames(model)
    try:
        res = Trainer.test(
            tiny_cfg(dataset, out_dir, "TEST.POSETRACK.VIDEO_MODE", mode, *opts), model
        )
    finally:
        del model.encode_frames
    preds = json.loads((out_dir / "inference" / dataset / "keypoint_results.json").read_text())
    return res["posetrack"], preds, counter["frames"]


def _assert_same_predictions(a, b):
    assert len(a) == len(b) > 0
    for pa, pb in zip(
        sorted(a, key=lambda p: (p["image_id"], -p["score"])),
        sorted(b, key=lambda p: (p["image_id"], -p["score"])),
    ):
        assert pa["image_id"] == pb["image_id"]
        assert pa["score"] == pytest.approx(pb["score"], abs=1e-5)
        np.testing.assert_allclose(pa["keypoints"], pb["keypoints"], atol=1e-3)


def _expected_stream_encodes(dataset, num_frames):
    total = 0
    for video in VideoInferenceLoader(get_test_clip_dicts(dataset), rank=0, world_size=1):
        keys = [d["frame_index"] for d in video]
        total += len(frames_for_clips(keys, num_frames, len(video[0]["video_file_names"])))
    return total


def test_stream_equals_clips_on_synthetic_val_and_encodes_each_frame_once(
    tiny_model, synthetic_val, tmp_path
):
    F = tiny_model.num_frames
    n_keys = len(get_test_clip_dicts(synthetic_val))
    assert n_keys == 2 * 5
    ap_clips, preds_clips, enc_clips = _evaluate(
        tiny_model, synthetic_val, tmp_path / "clips", "clips"
    )
    ap_stream, preds_stream, enc_stream = _evaluate(
        tiny_model, synthetic_val, tmp_path / "stream", "stream"
    )
    assert enc_clips == F * n_keys  # today's path: every key frame's F frames
    # Stream: the frames the key frames' clips use (0..6 of each video: 1 and 6 only as neighbours), each once.
    assert enc_stream == _expected_stream_encodes(synthetic_val, F) == 2 * 7
    assert set(ap_stream) == set(ap_clips) and "MOTA" not in ap_stream
    for k, v in ap_clips.items():
        assert ap_stream[k] == pytest.approx(v, abs=1e-9, nan_ok=True), k
    _assert_same_predictions(preds_stream, preds_clips)


def test_stream_equals_clips_on_the_real_posetrack18_sample(tiny_model, sample_dir, tmp_path):
    name = f"video_eval_pt18_{uuid.uuid4().hex[:6]}"
    register_posetrack(name, str(sample_dir / "annotations" / "val"), str(sample_dir))
    try:
        ap_clips, preds_clips, _ = _evaluate(tiny_model, name, tmp_path / "clips", "clips")
        ap_stream, preds_stream, enc = _evaluate(tiny_model, name, tmp_path / "stream", "stream")
        assert enc == _expected_stream_encodes(name, tiny_model.num_frames)
        for k, v in ap_clips.items():
            assert ap_stream[k] == pytest.approx(v, abs=1e-9, nan_ok=True), k
        _assert_same_predictions(preds_stream, preds_clips)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_clips_from_frames_replicates_borders_as_the_clip_sampler():
    L, F = 9, 5
    keys = [0, 1, 4, 8]
    needed = frames_for_clips(keys, F, L)
    assert needed == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    read = []

    def frames():
        for i in needed:
            read.append(i)
            yield i, f"frame{i}"

    out = list(clips_from_frames(frames(), keys, F, L))
    assert [k for k, _ in out] == keys
    for key, clip in out:
        assert clip == [f"frame{i}" for i in clip_frame_indices(key, F, L)]
    assert read == needed  # each frame read once, in order
    # Sparse keys read only what their clips use.
    assert frames_for_clips([0, 8], 3, L) == [0, 1, 7, 8]


# --------------------------------------------------------------------------------------------------
# Tracking inside evaluation, with GT-perfect poses from a stand-in predictor
# --------------------------------------------------------------------------------------------------
class _GTPredictor:
    """Yields, per key frame, the test GT's two people as predictions: key-frame keypoints (k, 15, 3) and
    their poses on the clip's F frames (what the tracker compares). From `offset_from` on, the clip poses
    (not the key-frame keypoints) move by 1000 px, so the tracker cannot link them to the earlier windows."""

    def __init__(self, names, num_frames, offset_from=None):
        self.names, self.num_frames, self.offset_from = names, num_frames, offset_from

    def stream_video(self, read, length, keys):
        video = read(None)
        s = self.names.index(video)
        for key in keys:
            clip = clip_frame_indices(key, self.num_frames, length)
            kp = np.stack(_people(s, key))
            frame_kp = np.stack([np.stack(_people(s, f)) for f in clip], 1)  # (2, F, 15, 2)
            if self.offset_from is not None and key >= self.offset_from:
                frame_kp = frame_kp + 1000.0
            inst = Instances((720, 1280))
            inst.pred_keypoints = torch.tensor(
                np.concatenate([kp, np.full((2, 15, 1), 0.9)], 2), dtype=torch.float32
            )
            inst.scores = torch.tensor([0.9, 0.8])
            inst.pred_boxes = Boxes(torch.zeros(2, 4))
            inst.pred_classes = torch.zeros(2, dtype=torch.int64)
            inst.pred_frame_keypoints = torch.tensor(frame_kp, dtype=torch.float32)
            yield key, inst


class _NamedVideos(VideoInference):
    @staticmethod
    def _reader(video):  # the stand-in predictor needs the video's name, no pixels
        return (lambda i: video[0]["video_id"]), len(video[0]["video_file_names"])


@pytest.fixture
def gt_split(tmp_path):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    names = _write_gt(gt_dir, n_seqs=2, n_frames=6)  # frame 1 unlabelled: evaluated 0, 2, 3, 4, 5
    name = f"video_eval_track_{uuid.uuid4().hex[:6]}"
    register_posetrack(name, str(gt_dir), str(tmp_path))
    yield name, gt_dir, names
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _track_and_evaluate(gt_split, tmp_path, offset_from):
    name, gt_dir, names = gt_split
    cfg = load_pavenet_config(
        str(BASE_CONFIG),
        [
            "MODEL.DEVICE",
            "cpu",
            "DATASETS.TEST",
            (name,),
            "OUTPUT_DIR",
            str(tmp_path),
            "TEST.POSETRACK.EVAL_TRACKING",
            True,
        ],
    )
    model = _NamedVideos.from_config(cfg, torch.nn.Linear(1, 1), name)
    model.predictor = _GTPredictor(names, cfg.MODEL.PAVENET.NUM_FRAMES, offset_from)
    res = inference_on_dataset(
        model, Trainer.build_test_loader(cfg, name), Trainer.build_evaluator(cfg, name)
    )
    pred_dir = tmp_path / "inference" / name / "posetrack_predictions"
    files = {n: json.loads((pred_dir / f"{n}.json").read_text()) for n in names}
    cli = poseval.evaluate_dirs(str(gt_dir), str(pred_dir))
    return res["posetrack"], files, cli


def test_tracking_gt_perfect_predictions_give_mota_100(gt_split, tmp_path):
    m, files, cli = _track_and_evaluate(gt_split, tmp_path, offset_from=None)
    assert m["AP"] == pytest.approx(100.0)
    assert m["MOTA"] == pytest.approx(100.0) and m["MOTP"] == pytest.approx(100.0)
    assert m["Prec"] == pytest.approx(100.0) and m["Rec"] == pytest.approx(100.0)
    for data in files.values():
        assert {a["track_id"] for a in data["annotations"]} == {0, 1}
    assert cli.summary()["MOTA"]["Mean"] == pytest.approx(m["MOTA"])


def test_tracking_identity_switch_costs_what_poseval_charges(gt_split, tmp_path):
    # From frame 3 on the tracker starts new tracks 2 and 3. Per joint and video: evaluated frames 0, 2, 3,
    # 4, 5, the last skipped -> 4 frames x 2 people = 8 objects, 2 switches (both people at frame 3), no
    # miss, no FP. Over the 2 videos: MOTA = 100 (1 - 4 / 16) = 75; the poses stay perfect: MOTP, precision,
    # recall and AP 100.
    m, files, cli = _track_and_evaluate(gt_split, tmp_path, offset_from=3)
    assert m["MOTA"] == pytest.approx(75.0) and m["MOTA-Ankle"] == pytest.approx(75.0)
    assert m["MOTP"] == pytest.approx(100.0) and m["Rec"] == pytest.approx(100.0)
    assert m["AP"] == pytest.approx(100.0)
    for data in files.values():
        ids = {}
        for im in data["images"]:
            ids[im["file_name"][-10:-4]] = sorted(
                a["track_id"] for a in data["annotations"] if a["image_id"] == im["id"]
            )
        assert ids == {
            "000000": [0, 1],
            "000001": [],
            "000002": [0, 1],
            "000003": [2, 3],
            "000004": [2, 3],
            "000005": [2, 3],
        }
    assert cli.summary()["MOTA"]["Mean"] == pytest.approx(75.0)
    np.testing.assert_array_equal(cli.mot_counts["switches"], 4)


# --------------------------------------------------------------------------------------------------
# Distributed evaluation
# --------------------------------------------------------------------------------------------------
def test_video_loader_shards_whole_videos_across_ranks():
    dataset = [
        {"video_id": v, "frame_index": i, "video_file_names": names}
        for v, names in (("a", ["a0", "a1"]), ("b", ["b0"]), ("c", ["c0", "c1", "c2"]))
        for i in range(len(names))
    ][::-1]  # any order in, frame order out
    shards = [list(VideoInferenceLoader(dataset, rank=r, world_size=2)) for r in range(2)]
    assert [[[d["frame_index"] for d in v] for v in shard] for shard in shards] == [
        [[0, 1, 2], [0]],
        [[0, 1]],
    ]
    assert [[v[0]["video_id"] for v in shard] for shard in shards] == [["c", "b"], ["a"]]


_TRACKING = ["TEST.POSETRACK.EVAL_TRACKING", True]


def _eval_worker(rank, synthetic_root, name, weights, out_dir, result_file):
    from detectron2.utils import comm

    _register_synthetic_val(synthetic_root, name)
    cfg = tiny_cfg(name, out_dir, "MODEL.WEIGHTS", weights, *_TRACKING)
    model = Trainer.build_model(cfg)
    model.load_state_dict(torch.load(weights, weights_only=True))
    res = Trainer.test(cfg, model)
    if comm.is_main_process():
        with open(result_file, "w") as f:
            json.dump(res, f)
    else:
        assert res == {}


def test_two_gloo_processes_evaluate_as_one(tiny_model, synthetic_root, synthetic_val, tmp_path):
    weights = str(tmp_path / "tiny.pth")
    torch.save(tiny_model.state_dict(), weights)
    single = Trainer.test(tiny_cfg(synthetic_val, tmp_path / "single", *_TRACKING), tiny_model)[
        "posetrack"
    ]
    result = tmp_path / "ddp.json"
    run_gloo_workers(
        _eval_worker,
        2,
        tmp_path,
        synthetic_root,
        synthetic_val,
        weights,
        str(tmp_path / "ddp"),
        str(result),
    )
    ddp = json.loads(result.read_text())["posetrack"]
    assert {"AP", "MOTA", "MOTP", "Prec", "Rec"} <= set(single)
    assert set(ddp) == set(single)
    for k, v in single.items():
        assert ddp[k] == pytest.approx(v, abs=1e-6, nan_ok=True), k
    pred = "inference/{}/posetrack_predictions".format(synthetic_val)
    for f in sorted((tmp_path / "single" / pred).glob("*.json")):
        a, b = json.loads(f.read_text()), json.loads((tmp_path / "ddp" / pred / f.name).read_text())
        assert [x["track_id"] for x in a["annotations"]] == [
            x["track_id"] for x in b["annotations"]
        ]
        np.testing.assert_allclose(
            [x["keypoints"] for x in a["annotations"]],
            [x["keypoints"] for x in b["annotations"]],
            atol=1e-3,
        )
