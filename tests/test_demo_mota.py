"""Demo -> PoseTrack18 JSON -> our evaluator's MOTA, on a synthetic video with known tracks.

The model is replaced by an oracle that returns the true poses of every window's frames (jittered, in a
random order each window), so the numbers isolate the tracker, the JSON writing and the frame pairing.
"""

import os

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from pavenet.apps.demo.runner import VideoPoseDemo, run_demo
from pavenet.data.synthetic import generate_synthetic_posetrack, render_video
from pavenet.evaluation.poseval import evaluate_dirs
from pavenet.inference.frames import ImageListSource
from pavenet.inference.predictor import sliding_windows

W, H, N, SEED = 160, 120, 16, 0


class OraclePredictor:
    """Stands in for ClipPredictor: same `stream` contract, poses from the synthetic scene model."""

    num_frames = 3

    def __init__(self, poses, noise=0.7, seed=0):
        self.poses = poses  # (N, P, 15, 2)
        self.rng = np.random.default_rng(seed)
        self.noise = noise

    def stream(self, frames):
        n = self.poses.shape[0]
        for key, window in sliding_windows(enumerate(frames), self.num_frames):
            idx = [i for i, _ in window]
            frame = window[self.num_frames // 2][1]
            fk = self.poses[idx].transpose(1, 0, 2, 3)  # (P, F, 15, 2)
            key_pose = self.poses[key]  # (P, 15, 2)
            inside = (
                (key_pose[..., 0] >= 0)
                & (key_pose[..., 0] <= W - 1)
                & (key_pose[..., 1] >= 0)
                & (key_pose[..., 1] <= H - 1)
            )
            people = np.nonzero(inside.any(1))[0]
            people = self.rng.permutation(people)
            fk = fk[people] + self.rng.normal(0, self.noise, fk[people].shape)
            kp = np.concatenate(
                [fk[:, 1], inside[people, :, None].astype(float)], 2
            )  # score 0 outside
            inst = Instances((H, W))
            inst.pred_keypoints = torch.as_tensor(kp, dtype=torch.float32)
            inst.scores = torch.ones(len(people))
            xy = inst.pred_keypoints[..., :2]
            inst.pred_boxes = Boxes(
                torch.cat([xy.min(1).values, xy.max(1).values], 1)
                if len(people)
                else torch.zeros(0, 4)
            )
            inst.pred_classes = torch.zeros(len(people), dtype=torch.int64)
            inst.pred_frame_keypoints = torch.as_tensor(fk, dtype=torch.float32)
            assert 0 <= key < n
            yield key, frame, inst


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    generate_synthetic_posetrack(
        root, num_train=0, num_val=1, num_frames=N, width=W, height=H, seed=SEED
    )
    seq = "001000_synth_val"
    # The generator's scene for val video 0 (same rng stream as the generator): poses on every frame.
    _, _, poses, _ = render_video(np.random.default_rng([SEED, 1, 0]), N, W, H)
    return root, seq, poses


def _run(root, seq, poses, tmp, **demo_kw):
    demo = VideoPoseDemo(None, keypoint_thresh=0.5, predictor=OraclePredictor(poses), **demo_kw)
    pred_dir = os.path.join(tmp, "pred")
    gt_file = os.path.join(root, "annotations", "val", seq + ".json")
    summary = run_demo(
        demo,
        ImageListSource(os.path.join(root, "images", "val", seq)),
        output=os.path.join(tmp, "vis"),
        save_json=pred_dir,
        gt_json=gt_file,
        progress=False,
    )
    assert summary["num_frames"] == N
    res = evaluate_dirs(os.path.join(root, "annotations", "val"), pred_dir, eval_track=True)
    return summary, res.summary()


def test_oracle_poses_with_our_tracker_score_full_mota(synthetic_video, tmp_path):
    root, seq, poses = synthetic_video
    summary, res = _run(root, seq, poses, str(tmp_path))
    assert summary["num_tracks"] == poses.shape[1]  # one id per synthetic person, no switches
    assert res["AP"]["Mean"] > 95
    assert res["MOTA"]["Mean"] > 95


def test_mota_drops_when_ids_are_not_carried(synthetic_video, tmp_path):
    root, seq, poses = synthetic_video
    # match_thresh > 1 never matches: every window gets fresh ids, i.e. an id switch per person per frame.
    summary, res = _run(root, seq, poses, str(tmp_path), track_match_thresh=1.1, track_patience=0)
    assert summary["num_tracks"] > poses.shape[1] * (N - 2)
    assert res["AP"]["Mean"] > 95  # poses are still right ...
    assert res["MOTA"]["Mean"] < 60  # ... but MOTA punishes the switches
