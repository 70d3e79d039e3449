"""Inclusive thresholds on the tracking path, each met exactly (not approximately) with tracking on.

The tracker links two windows when their mean OKS is >= TRACK_MATCH_THRESH; poseval's MOT pairs a joint
when its PCKh distance is <= 0.5; the predictor keeps a person scored >= SCORE_THRESH; the writer drops a
joint scored < JOINT_SCORE_THRESH. Each test puts a value exactly on the limit and one just past it.

Hand-computed similarity used throughout: a 2-joint pose (0, 0), (4, 3) with OKS sigmas 0.5 has a
keypoint-extent box of 4 x 3 = 12 px^2 and variance (2 * 0.5)^2 = 1, so the same pose shifted by 1 px has
OKS = exp(-1 / (2 * 12 * 1)) = exp(-1/24) = 0.959189... on every joint and every frame.
"""

import math

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from test_eval_poseval import gt_ann, gt_seq, pose, pred_person, pred_seq, run

from pavenet.apps.demo.runner import VideoPoseDemo
from pavenet.config import load_pavenet_config
from pavenet.evaluation.video_inference import VideoInference
from pavenet.evaluation.writer import posetrack18_person
from pavenet.inference.predictor import ClipPredictor
from pavenet.inference.tracker import PoseTracker, pose_oks

SIGMAS = (0.5, 0.5)
BASE = np.array([[0.0, 0.0], [4.0, 3.0]])  # (K=2, 2): extent box 4 x 3
SHIFT = np.array([1.0, 0.0])
# The exact float the tracker computes for a 1 px shift (checked against the hand value below).
SIM = float(pose_oks(BASE[None], (BASE + SHIFT)[None], SIGMAS)[0, 0])
ABOVE = float(np.nextafter(SIM, 2.0))  # the smallest threshold the shift no longer meets


def test_hand_computed_similarity():
    assert SIM == pytest.approx(math.exp(-1 / 24), rel=1e-14)
    assert pose_oks(BASE[None], BASE[None], SIGMAS)[0, 0] == 1.0  # identical poses: exactly 1


def _window(f, offset):
    """(1, F, 2, 2): one person at BASE + offset on every frame of the window."""
    return np.broadcast_to(BASE + offset, (1, f, 2, 2)).copy()


@pytest.mark.parametrize("num_frames", [3, 1])
def test_tracker_links_at_exactly_the_threshold_and_not_above(num_frames):
    # F = 3: the two windows share 2 frames, each at OKS SIM, mean SIM. F = 1: no shared frame, the track's
    # last frame against the new first frame, OKS SIM.
    for thresh, same in ((SIM, True), (ABOVE, False)):
        tracker = PoseTracker(num_frames, SIGMAS, match_thresh=thresh)
        first = tracker.update(_window(num_frames, 0.0))
        second = tracker.update(_window(num_frames, SHIFT))
        assert first.tolist() == [0]
        assert second.tolist() == ([0] if same else [1]), thresh


def test_tracker_threshold_after_a_gap_longer_than_the_window():
    # F = 3, the person missing for 2 windows (patience 2): window 3 is d = 3 = F windows after the track's
    # last one, no frame is shared, so the track's last frame is compared with the new first frame: OKS SIM.
    for thresh, expected in ((SIM, [0]), (ABOVE, [1])):
        tracker = PoseTracker(3, SIGMAS, match_thresh=thresh, patience=2)
        tracker.update(_window(3, 0.0))
        tracker.update(np.zeros((0, 3, 2, 2)))
        tracker.update(np.zeros((0, 3, 2, 2)))
        assert tracker.update(_window(3, SHIFT)).tolist() == expected


def test_tracker_threshold_of_one_needs_identical_poses():
    tracker = PoseTracker(3, SIGMAS, match_thresh=1.0)
    assert tracker.update(_window(3, 0.0)).tolist() == [0]
    assert tracker.update(_window(3, 0.0)).tolist() == [0]  # OKS exactly 1 >= 1
    assert tracker.update(_window(3, SHIFT)).tolist() == [
        1
    ]  # OKS 0.959 < 1: a tracker ignoring its threshold links


# ------------------------------------------------------------------------------------------------ evaluation
class _ShiftingStream:
    """Stands in for ClipPredictor.stream_video: one person per key frame, window t at BASE + t * SHIFT, so
    consecutive windows meet at OKS SIM on every frame they share."""

    def __init__(self, num_frames):
        self.num_frames = num_frames
        self.keys = []

    def stream_video(self, read, length, keys):
        for key in keys:
            self.keys.append(key)
            inst = Instances((100, 100))
            kp = np.zeros((1, 15, 3))
            kp[0, :2, :2] = BASE + key * SHIFT
            inst.pred_keypoints = torch.tensor(kp, dtype=torch.float32)
            inst.scores = torch.tensor([0.9])
            inst.pred_boxes = Boxes(torch.zeros(1, 4))
            inst.pred_classes = torch.zeros(1, dtype=torch.int64)
            inst.pred_frame_keypoints = torch.tensor(
                _window(self.num_frames, key * SHIFT), dtype=torch.float64
            )
            yield key, inst


class _NoPixels(VideoInference):
    @staticmethod
    def _reader(video):
        return (lambda i: None), len(video[0]["video_file_names"])


def _video_track_ids(thresh):
    cfg = load_pavenet_config(
        opts=[
            "MODEL.DEVICE",
            "cpu",
            "TEST.POSETRACK.EVAL_TRACKING",
            True,
            "TEST.POSETRACK.TRACK_MATCH_THRESH",
            thresh,
        ]
    )
    model = _NoPixels.from_config(cfg, torch.nn.Linear(1, 1))
    model.oks_sigmas = SIGMAS  # the stand-in's 2-joint poses
    stream = model.predictor = _ShiftingStream(cfg.MODEL.PAVENET.NUM_FRAMES)
    video = [
        {
            "video_file_names": [f"{i}.jpg" for i in range(6)],
            "frame_index": i,
            "file_name": f"{i}.jpg",
        }
        for i in (1, 4)
    ]
    out = model(video)
    assert stream.keys == [1, 2, 3, 4]  # tracking decodes every window between the test frames
    return [o["instances"].pred_track_ids.tolist() for o in out]


def test_video_evaluation_tracks_with_the_configured_threshold_inclusive():
    # TEST.POSETRACK.TRACK_MATCH_THRESH reaches the tracker: at exactly SIM the person keeps id 0 across
    # windows 1..4; one ulp above every window starts a new track (window 1 -> id 0, window 4 -> id 3).
    assert _video_track_ids(SIM) == [[0], [0]]
    assert _video_track_ids(ABOVE) == [[0], [3]]


# ------------------------------------------------------------------------------------------------ demo
class _FakeBackend:
    """A ClipPredictor backend: encodes nothing, decodes two people scored exactly 0.25 and just below,
    each window shifted by one SHIFT from the last."""

    num_frames = 3
    device = torch.device("cpu")

    def __init__(self):
        self.window = 0

    def encode_frame(self, image):
        return object(), tuple(image.shape[1:])

    def decode_clip(self, frames, image_size, output_size):
        inst = Instances(tuple(output_size))
        fk = np.concatenate(
            [_window(3, self.window * SHIFT), _window(3, 50.0 + self.window * SHIFT)]
        )
        inst.pred_frame_keypoints = torch.tensor(fk, dtype=torch.float64)
        below = np.nextafter(np.float32(0.25), np.float32(0.0))
        inst.scores = torch.tensor([0.25, below], dtype=torch.float32)
        self.window += 1
        return inst


def test_demo_keeps_a_person_scored_exactly_at_the_threshold_and_tracks_it_at_the_match_limit():
    cfg = load_pavenet_config(
        opts=[
            "MODEL.DEVICE",
            "cpu",
            "MODEL.PAVENET.TEST.SCORE_THRESH",
            0.25,
            "INPUT.MIN_SIZE_TEST",
            8,
            "INPUT.MAX_SIZE_TEST",
            8,
        ]
    )
    frames = [np.zeros((8, 8, 3), dtype=np.uint8) for _ in range(4)]
    for thresh, ids in ((SIM, [[0], [0], [0], [0]]), (ABOVE, [[0], [1], [2], [3]])):
        demo = VideoPoseDemo(
            cfg, track_match_thresh=thresh, predictor=ClipPredictor(cfg, backend=_FakeBackend())
        )
        demo.metadata = {"keypoint_oks_sigmas": SIGMAS}
        out = list(demo.run(frames))
        # Only the person at exactly SCORE_THRESH survives the filter, in every window.
        assert [inst.scores.tolist() for _, _, inst in out] == [[0.25]] * 4
        assert [inst.pred_track_ids.tolist() for _, _, inst in out] == ids


# ------------------------------------------------------------------------------------------------ poseval MOT
def test_mot_pairs_a_joint_exactly_at_half_a_head_size_with_tracking_on():
    # Head box 30 x 40 -> head size 30; joints 0-6 off by (9, 12) = 15 px = 0.5 (paired), joints 7-14 off by
    # (9, 12.5) = 15.3 px (not paired). 3 frames, the last skipped by MOT: per joint 2 objects.
    # joints 0-6: 2 matches, MOTA 100, MOTP 100 (1 - 0.5) = 50; joints 7-14: 2 misses + 2 FPs, MOTA -100.
    a = pose()
    jitter = a.copy()
    jitter[:7] += (9.0, 12.0)
    jitter[7:] += (9.0, 12.5)
    gt = gt_seq("000001_mpii_test", [[gt_ann(a, 1)]] * 3)
    res = run(gt, pred_seq(gt, [[pred_person(jitter, track_id=4)]] * 3), eval_track=True)
    np.testing.assert_array_equal(res.mot_counts["matches"][:7], 2)
    np.testing.assert_array_equal(res.mot_counts["misses"][7:], 2)
    np.testing.assert_array_equal(res.mot_counts["false_positives"][7:], 2)
    np.testing.assert_allclose(res.mota[:7], 100.0)
    np.testing.assert_allclose(res.motp[:7], 50.0)
    np.testing.assert_allclose(res.mota[7:], -100.0)


def test_joint_score_threshold_keeps_a_joint_exactly_at_it():
    # Tracking submissions drop joints scored below TEST.POSETRACK.JOINT_SCORE_THRESH: a joint scored exactly
    # 0.25 is written (v = 1), one just below is written absent (0, 0, 0); its score is kept either way.
    kp = np.zeros((15, 3))
    kp[:, :2] = 7.0
    kp[:, 2] = 0.25
    kp[3, 2] = np.nextafter(0.25, 0.0)
    ann = posetrack18_person(1, kp, 0.9, 0, joint_score_thresh=0.25)
    triplets = np.asarray(ann["keypoints"]).reshape(17, 3)
    written = triplets[:, 2] == 1
    assert written.sum() == 14  # 15 joints, one below the threshold (ears are never written)
    assert sorted(s for s in ann["scores"] if s > 0)[0] == np.nextafter(0.25, 0.0)
