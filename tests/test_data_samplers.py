"""Clip frame selection and the samplers the loaders use (sharding without overlap or gaps, seeded
shuffling shared by all ranks)."""

import itertools

import pytest
from detectron2.data.samplers import InferenceSampler, TrainingSampler
from detectron2.utils import comm

from pavenet.data.clip_sampler import clip_frame_indices
from pavenet.data.samplers import select_test_frames, shard_range


def test_clip_indices_replicate_at_both_ends():
    assert clip_frame_indices(0, 3, 10) == [0, 0, 1]
    assert clip_frame_indices(9, 3, 10) == [8, 9, 9]
    assert clip_frame_indices(5, 3, 10) == [4, 5, 6]
    # F=5 (docs/REFERENCE.md §12): at index 1, t-2 = t-1 = frame 0; at the last-but-one, t+2 = t+1
    assert clip_frame_indices(1, 5, 10) == [0, 0, 1, 2, 3]
    assert clip_frame_indices(0, 5, 10) == [0, 0, 0, 1, 2]
    assert clip_frame_indices(8, 5, 10) == [6, 7, 8, 9, 9]
    assert clip_frame_indices(9, 5, 10) == [7, 8, 9, 9, 9]
    assert clip_frame_indices(0, 5, 1) == [0] * 5
    assert clip_frame_indices(4, 1, 10) == [4]
    assert clip_frame_indices(4, 3, 10, stride=2) == [2, 4, 6]
    with pytest.raises(ValueError, match="odd"):
        clip_frame_indices(0, 4, 10)
    with pytest.raises(ValueError, match="outside"):
        clip_frame_indices(10, 3, 10)


def _as_rank(monkeypatch, rank, world):
    monkeypatch.setattr(comm, "get_rank", lambda: rank)
    monkeypatch.setattr(comm, "get_world_size", lambda: world)


@pytest.mark.parametrize("size", [0, 1, 7, 10, 33])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_video_and_clip_sharding_no_overlap_no_gaps(size, world, monkeypatch):
    shards = [list(shard_range(size, r, world)) for r in range(world)]
    flat = list(itertools.chain.from_iterable(shards))
    assert flat == list(range(size))  # in order, every index once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    if size == 0:
        return  # detectron2's InferenceSampler refuses an empty set; get_test_clip_dicts raises before it
    # Videos (streaming eval) and clips (clip eval) are split the same way.
    clip_shards = []
    for r in range(world):
        _as_rank(monkeypatch, r, world)
        clip_shards.append(list(InferenceSampler(size)))
    assert clip_shards == shards


def test_training_stream_seeded_and_sharded(monkeypatch):
    """What build_pavenet_train_loader relies on: one seed gives every rank its slice of ONE shuffled
    stream (epochs without repeats), the same again for the same seed, another for another seed."""
    n, world = 11, 3

    def stream(seed, rank):
        _as_rank(monkeypatch, rank, world)
        return list(itertools.islice(iter(TrainingSampler(n, shuffle=True, seed=seed)), 22))

    streams = [stream(5, r) for r in range(world)]
    merged = [streams[i % world][i // world] for i in range(66)]
    for e in range(6):
        assert sorted(merged[e * n : (e + 1) * n]) == list(range(n))
    assert stream(5, 0) == streams[0]
    assert stream(6, 0) != streams[0]
    assert merged[:n] != list(range(n))  # shuffled


def test_select_test_frames():
    labeled = [{"image_id": 1, "is_labeled": True}, {"image_id": 2, "is_labeled": False}]
    assert [d["image_id"] for d in select_test_frames(labeled, "labeled")] == [1]
    assert select_test_frames(labeled, "all", lambda: [1, 2, 3]) == [1, 2, 3]
    with pytest.raises(ValueError, match="TEST_FRAMES"):
        select_test_frames(labeled, "some")
