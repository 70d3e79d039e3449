"""Clip frame selection and samplers (sharding without overlap or gaps, seeded shuffling)."""
import itertools

import pytest

from pavenet.data.clip_sampler import clip_frame_indices
from pavenet.data.samplers import ClipInferenceSampler, ClipTrainingSampler, select_test_frames, shard_range


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


@pytest.mark.parametrize("size", [0, 1, 7, 10, 33])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_inference_sharding_no_overlap_no_gaps(size, world):
    shards = [list(ClipInferenceSampler(size, rank=r, world_size=world)) for r in range(world)]
    flat = list(itertools.chain.from_iterable(shards))
    assert flat == list(range(size))  # in order, every index once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(s) for s in shards] == [len(shard_range(size, r, world)) for r in range(world)]


def test_training_sampler_seeded_and_sharded():
    n, world = 11, 3
    streams = [list(itertools.islice(iter(ClipTrainingSampler(n, seed=5, rank=r, world_size=world)), 22))
               for r in range(world)]
    # interleaving the ranks' streams gives back one shared stream: 2 full epochs, no index repeated in one
    merged = [streams[i % world][i // world] for i in range(66)]
    for e in range(6):
        assert sorted(merged[e * n:(e + 1) * n]) == list(range(n))
    again = list(itertools.islice(iter(ClipTrainingSampler(n, seed=5, rank=0, world_size=world)), 22))
    assert again == streams[0]
    other = list(itertools.islice(iter(ClipTrainingSampler(n, seed=6, rank=0, world_size=world)), 22))
    assert other != streams[0]
    assert merged[:n] != list(range(n))  # shuffled


def test_select_test_frames():
    labeled = [{"image_id": 1, "is_labeled": True}, {"image_id": 2, "is_labeled": False}]
    assert [d["image_id"] for d in select_test_frames(labeled, "labeled")] == [1]
    assert select_test_frames(labeled, "all", lambda: [1, 2, 3]) == [1, 2, 3]
    with pytest.raises(ValueError, match="TEST_FRAMES"):
        select_test_frames(labeled, "some")
