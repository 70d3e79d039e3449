"""PoseTracker on a synthetic video with known tracks and constructed window predictions."""

import numpy as np
import pytest
import torch
from detectron2.structures import Instances

from pavenet.inference.tracker import PoseTracker, pose_oks

K = 15
F = 3
T = F // 2


def _person_track(rng, n_frames, start, vel):
    """GT poses (n_frames, K, 2) of one person: a fixed random skeleton (~60x120 px) moving linearly."""
    template = rng.uniform([-30, -60], [30, 60], size=(K, 2))
    t = np.arange(n_frames)[:, None, None]
    return start[None, None] + template[None] + vel[None, None] * t


def _window_predictions(gt, present, t, rng, noise=1.5):
    """Window t's predictions: (k, F, K, 2) for the persons present at t, shuffled; plus their GT ids."""
    n_frames = gt.shape[1]
    frames = np.clip(np.arange(t - T, t + T + 1), 0, n_frames - 1)
    who = [p for p in range(gt.shape[0]) if present[p, t]]
    rng.shuffle(who)
    poses = np.stack([gt[p, frames] for p in who]) if who else np.zeros((0, F, K, 2))
    return poses + rng.normal(0, noise, poses.shape), who


def _run(tracker, gt, present, seed=1):
    rng = np.random.default_rng(seed)
    assignments = []  # per window: {gt person: track id}
    for t in range(gt.shape[1]):
        poses, who = _window_predictions(gt, present, t, rng)
        ids = tracker.update(poses)
        assert len(set(ids.tolist())) == len(ids), "ids must be unique within a window"
        assignments.append(dict(zip(who, ids.tolist())))
    return assignments


def _scene(n_frames=30):
    rng = np.random.default_rng(0)
    starts = [
        np.array([100.0, 200.0]),
        np.array([400.0, 200.0]),
        np.array([250.0, 400.0]),
        np.array([600.0, 400.0]),
    ]
    vels = [
        np.array([8.0, 0.0]),
        np.array([-8.0, 0.0]),
        np.array([0.0, -3.0]),
        np.array([-2.0, 2.0]),
    ]
    gt = np.stack(
        [_person_track(rng, n_frames, s, v) for s, v in zip(starts, vels)]
    )  # (P, L, K, 2)
    present = np.ones(gt.shape[:2], dtype=bool)
    return gt, present


def test_ids_follow_known_tracks_through_crossing():
    # Persons 0 and 1 walk towards each other and cross around frame 19.
    gt, present = _scene()
    out = _run(PoseTracker(F), gt, present)
    for p in range(gt.shape[0]):
        ids = {a[p] for a in out}
        assert len(ids) == 1, f"person {p} changed id: {ids}"
    assert len({out[0][p] for p in range(gt.shape[0])}) == gt.shape[0]


def test_patience_keeps_id_through_brief_miss_and_ids_never_reused():
    gt, present = _scene()
    present[0, 10:12] = False  # person 0 scores low for 2 windows
    present[3, 15:] = False  # person 3 leaves for good ...
    gt[3, 25:] = gt[
        3, 14
    ]  # ... and a new person appears exactly where it left, after patience ran out
    present[3, 25:] = True
    out = _run(PoseTracker(F, patience=2), gt, present)
    ids0 = {a[0] for a in out if 0 in a}
    assert len(ids0) == 1
    old3 = {a[3] for a in out[:15]}
    new3 = {a[3] for a in out[25:]}
    assert len(old3) == 1 and len(new3) == 1
    assert old3.isdisjoint(new3), "an expired id must never be reused"
    all_ids = set().union(*[set(a.values()) for a in out])
    assert max(all_ids) == len(all_ids) - 1  # consecutive fresh ids: 4 people + 1 newcomer
    assert len(all_ids) == 5

    # Without patience the briefly missing person gets a new id.
    out = _run(PoseTracker(F, patience=0), gt, present)
    assert len({a[0] for a in out if 0 in a}) == 2


def test_matching_uses_shared_frames_not_key_frames():
    # Two identical skeletons 80 px apart, both moving 80 px/frame to the right: person A's key-frame
    # pose at t+1 lies exactly on person B's key-frame pose at t, so key-frame-to-key-frame matching
    # would swap them. On the frames both windows share, each person matches itself exactly.
    rng = np.random.default_rng(3)
    template = rng.uniform(-20, 20, (K, 2))
    n = 8
    step = np.array([80.0, 0.0])
    gt = np.stack(
        [
            template + step * np.arange(n)[:, None, None],
            template + step * (np.arange(n)[:, None, None] + 1),
        ]
    )
    present = np.ones((2, n), dtype=bool)
    out = _run(PoseTracker(F), gt, present)
    assert all(a[0] == out[0][0] and a[1] == out[0][1] for a in out)
    assert out[0][0] != out[0][1]


def test_oks_properties_and_instances_api():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (4, K, 2))
    sim = pose_oks(p, p + 0.0, np.full(K, 0.08))
    assert np.allclose(np.diag(sim), 1.0)
    assert np.allclose(sim, sim.T)
    assert (pose_oks(p, p + 50.0, np.full(K, 0.08)).diagonal() < 0.5).all()

    tracker = PoseTracker(F)
    inst = Instances((200, 200))
    inst.pred_frame_keypoints = torch.as_tensor(
        rng.uniform(0, 100, (2, F, K, 2)), dtype=torch.float32
    )
    tracker.update_instances(inst)
    assert inst.pred_track_ids.tolist() == [0, 1]
    empty = Instances((200, 200))
    empty.pred_frame_keypoints = torch.zeros(0, F, K, 2)
    assert tracker.update_instances(empty).pred_track_ids.shape == (0,)
    with pytest.raises(ValueError, match="frame_keypoints"):
        tracker.update(np.zeros((2, F + 1, K, 2)))
