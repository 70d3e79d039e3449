"""Samplers over clip items (one item = one key frame).

* `ClipTrainingSampler`: infinite stream of shuffled indices, seeded, sharded by rank (rank r takes every
  world_size-th index of one shared stream, like detectron2's `TrainingSampler`, whose seeding differs
  between v0.6 and main; we seed explicitly so both behave alike).
* `ClipInferenceSampler`: every item once, in dataset (video) order, split into contiguous shards across
  ranks with no overlap and no gaps. Contiguous shards keep each rank inside few videos.
* `select_test_frames`: which frames get a clip at test time (`INPUT.PAVENET.TEST_FRAMES`).
"""
import itertools
from typing import List, Optional

import torch
from torch.utils.data.sampler import Sampler

from detectron2.utils import comm

__all__ = ["ClipTrainingSampler", "ClipInferenceSampler", "select_test_frames", "shard_range"]


def _rank_world(rank, world_size):
    return (comm.get_rank() if rank is None else rank), (comm.get_world_size() if world_size is None else world_size)


class ClipTrainingSampler(Sampler):
    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        if size <= 0:
            raise ValueError(f"training set is empty (size {size})")
        self._size = size
        self._shuffle = shuffle
        # All ranks must draw the same permutation: a seed shared across ranks.
        self._seed = int(comm.shared_random_seed() if seed is None or seed < 0 else seed)
        self._rank, self._world_size = _rank_world(rank, world_size)

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)


def shard_range(size: int, rank: int, world_size: int) -> range:
    """Contiguous shard of [0, size) for `rank`; shards cover every index exactly once."""
    per, extra = divmod(size, world_size)
    begin = rank * per + min(rank, extra)
    return range(begin, begin + per + (1 if rank < extra else 0))


class ClipInferenceSampler(Sampler):
    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None):
        self._size = size
        rank, world_size = _rank_world(rank, world_size)
        self._local = shard_range(size, rank, world_size)

    def __iter__(self):
        yield from self._local

    def __len__(self):
        return len(self._local)


def select_test_frames(labeled_dicts: List[dict], mode: str, all_dicts_fn=None) -> List[dict]:
    """`labeled`: the labelled frames as given; `all`: every frame of every video (from `all_dicts_fn()`)."""
    if mode == "labeled":
        return [d for d in labeled_dicts if d.get("is_labeled", True)]
    if mode == "all":
        if all_dicts_fn is None:
            raise ValueError("TEST_FRAMES='all' needs a loader that returns every frame")
        return all_dicts_fn()
    raise ValueError(f"INPUT.PAVENET.TEST_FRAMES must be 'labeled' or 'all', got {mode!r}")
