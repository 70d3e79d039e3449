"""Which frames make up a clip (pure Python: no torch, no detectron2).

A clip is F = 2T+1 frames around a key frame, in order t-T..t+T with the key frame at index F // 2.
At the video borders the nearest existing frame is replicated (docs/REFERENCE.md §12: at the first
frame prev = current, at the last frame next = current; for F=5 at index 1, t-2 = t-1 = frame 0).
Indices are positions in the video's ordered frame list, so 2017 (1-based, 8-digit names) and
2018/21 (0-based, 6-digit names) are handled alike: the loaders already turned names into positions.
"""

from typing import Any, Iterable, Iterator, List, Sequence, Tuple

__all__ = [
    "clip_frame_indices",
    "clip_file_names",
    "frames_for_clips",
    "clips_from_frames",
    "sliding_windows",
]


def clip_frame_indices(
    key_index: int, num_frames: int, video_length: int, stride: int = 1
) -> List[int]:
    """Frame positions of the clip around `key_index`, clamped to [0, video_length - 1].

    Args:
        key_index: 0-based position of the key frame in the video.
        num_frames: F, odd (F = 2T + 1).
        video_length: number of frames in the video.
        stride: temporal step between clip frames (1 = consecutive frames, as in the paper).
    Returns:
        list of F ints, key frame at index F // 2.
    """
    if num_frames < 1 or num_frames % 2 == 0:
        raise ValueError(f"clip length must be odd (F = 2T+1), got {num_frames}")
    if video_length < 1:
        raise ValueError(f"video has no frames (length {video_length})")
    if not 0 <= key_index < video_length:
        raise ValueError(f"key frame {key_index} outside the video's {video_length} frames")
    half = num_frames // 2
    return [min(max(key_index + d * stride, 0), video_length - 1) for d in range(-half, half + 1)]


def clip_file_names(
    video_file_names: Sequence[str], key_index: int, num_frames: int, stride: int = 1
) -> List[str]:
    """The F file names of the clip (see `clip_frame_indices`)."""
    return [
        video_file_names[i]
        for i in clip_frame_indices(key_index, num_frames, len(video_file_names), stride)
    ]


def frames_for_clips(
    key_indices: Sequence[int], num_frames: int, video_length: int, stride: int = 1
) -> List[int]:
    """Sorted positions of every frame that at least one key frame's clip uses (each listed once)."""
    return sorted(
        {i for k in key_indices for i in clip_frame_indices(k, num_frames, video_length, stride)}
    )


def clips_from_frames(
    frames: Iterable[Tuple[int, Any]],
    key_indices: Sequence[int],
    num_frames: int,
    video_length: int,
    stride: int = 1,
) -> Iterator[Tuple[int, List[Any]]]:
    """Yield `(key_index, [item per clip frame])` for each key frame, in increasing key order.

    `frames` yields `(position, item)` in increasing position order and must cover
    `frames_for_clips(key_indices, ...)`; it is consumed lazily and an item is dropped once no later
    clip needs it, so at most one clip's span of items is alive. Items are shared, not copied, between
    the clips that contain them (a frame's encoding is computed once and reused)."""
    frames = iter(frames)
    alive = {}
    for key in sorted(set(key_indices)):
        idx = clip_frame_indices(key, num_frames, video_length, stride)
        for old in [i for i in alive if i < idx[0]]:
            del alive[old]
        while idx[-1] not in alive:
            try:
                pos, item = next(frames)
            except StopIteration:
                raise ValueError(
                    f"frames ended before position {idx[-1]} needed by key frame {key}"
                ) from None
            if pos >= idx[0]:
                alive[pos] = item
        yield key, [alive[i] for i in idx]


def sliding_windows(items: Iterable[Any], num_frames: int) -> Iterator[Tuple[int, List[Any]]]:
    """Yield `(key_index, window)` for every item of a stream of unknown length, where window is the clip of
    `clip_frame_indices` around it (the first / last item replicated at the borders). A window is yielded as
    soon as its last item has arrived (T items after its key, or at the end of the stream), and at most F
    items are held. Items are passed through untouched (objects are shared, not copied), so a cached
    encoding is reused by every window that contains it."""
    if num_frames < 1 or num_frames % 2 == 0:
        raise ValueError(f"num_frames must be odd and >= 1, got {num_frames}")
    half = num_frames // 2
    alive = {}
    count = 0
    for pos, item in enumerate(items):
        alive[pos] = item
        count = pos + 1
        key = pos - half
        if (
            key >= 0
        ):  # every index of its clip is <= pos: the length so far clamps nothing on the right
            alive.pop(
                key - half - 1, None
            )  # this and every later window starts at key - half or after
            yield key, [alive[i] for i in clip_frame_indices(key, num_frames, count)]
    for key in range(max(count - half, 0), count):
        alive.pop(key - half - 1, None)
        yield key, [alive[i] for i in clip_frame_indices(key, num_frames, count)]
