"""Which items each process sees.

Clip items (one item = one key frame) use detectron2's own samplers (`build.py`): `TrainingSampler`
(an infinite, seeded stream that rank r reads every world_size-th index of) and `InferenceSampler`
(contiguous shards, no overlap, no gaps). This module holds what detectron2 has no public API for:

* `shard_range`: the contiguous shard of whole videos a rank evaluates in streaming mode (the same split
  as `InferenceSampler`, applied to videos so that a video and its tracks stay in one process);
* `select_test_frames`: which frames get a clip at test time (`INPUT.PAVENET.TEST_FRAMES`).
"""

from typing import List

__all__ = ["select_test_frames", "shard_range"]


def shard_range(size: int, rank: int, world_size: int) -> range:
    """Contiguous shard of [0, size) for `rank`; shards cover every index exactly once, in order, and
    differ in length by at most one."""
    per, extra = divmod(size, world_size)
    begin = rank * per + min(rank, extra)
    return range(begin, begin + per + (1 if rank < extra else 0))


def select_test_frames(labeled_dicts: List[dict], mode: str, all_dicts_fn=None) -> List[dict]:
    """`labeled`: the labelled frames as given; `all`: every frame of every video (from `all_dicts_fn()`)."""
    if mode == "labeled":
        return [d for d in labeled_dicts if d.get("is_labeled", True)]
    if mode == "all":
        if all_dicts_fn is None:
            raise ValueError("TEST_FRAMES='all' needs a loader that returns every frame")
        return all_dicts_fn()
    raise ValueError(f"INPUT.PAVENET.TEST_FRAMES must be 'labeled' or 'all', got {mode!r}")
