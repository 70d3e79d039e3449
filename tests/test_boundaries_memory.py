"""The streaming promise, checked with weak references: what the clip builders keep alive.

`sliding_windows` and `clips_from_frames` promise to hold at most one clip's frames; `ClipPredictor.stream`
and `stream_video` promise at most F cached encodings, so memory does not grow with the video's length.
Each item is a weak-referenceable token; after every yielded clip (and the caller's references dropped) the
tokens still alive must be exactly the frames of that clip.
"""

import gc
import weakref

import numpy as np
import torch
from detectron2.structures import Instances

from pavenet.config import load_pavenet_config
from pavenet.data.clip_sampler import clip_frame_indices, clips_from_frames
from pavenet.inference.predictor import ClipPredictor, sliding_windows


class _Token:
    def __init__(self, index):
        self.index = index


class _Tracked:
    """Makes tokens and remembers weak references to all of them."""

    def __init__(self):
        self.refs = []

    def make(self, index):
        token = _Token(index)
        self.refs.append(weakref.ref(token))
        return token

    def alive(self):
        gc.collect()
        return {r().index for r in self.refs if r() is not None}


def test_sliding_windows_keeps_exactly_the_current_clip_alive():
    # F = 5, 9 items: the window around key k is items clamp(k-2..k+2); e.g. key 0 -> 0, 0, 0, 1, 2 (alive
    # {0, 1, 2}), key 4 -> 2..6, key 8 -> 6, 7, 8, 8, 8. Nothing older than the window may survive.
    f, n = 5, 9
    tracked = _Tracked()
    seen = []
    for key, window in sliding_windows((tracked.make(i) for i in range(n)), f):
        clip = clip_frame_indices(key, f, n)
        assert [t.index for t in window] == clip
        del window
        assert tracked.alive() == set(clip), key
        seen.append(key)
    assert seen == list(range(n))


def test_clips_from_frames_drops_frames_no_later_clip_needs():
    # F = 3, 12 frames, sparse keys 2, 3, 8: clips {1, 2, 3}, {2, 3, 4}, {7, 8, 9}. The source yields every
    # frame; frames 0, 5, 6 are never kept, frames 1-4 are gone by the time the clip of key 8 is yielded.
    f, n, keys = 3, 12, [2, 3, 8]
    tracked = _Tracked()
    got = []
    for key, clip in clips_from_frames(((i, tracked.make(i)) for i in range(n)), keys, f, n):
        idx = clip_frame_indices(key, f, n)
        assert [t.index for t in clip] == idx
        del clip
        assert tracked.alive() == set(idx), key
        got.append(key)
    assert got == keys


class _TokenBackend:
    """A ClipPredictor backend whose encodings are tokens; decode checks it got the clip's F tokens."""

    device = torch.device("cpu")

    def __init__(self, num_frames):
        self.num_frames = num_frames
        self.tracked = _Tracked()
        self.encoded = 0

    def encode_frame(self, image):
        token = self.tracked.make(self.encoded)
        self.encoded += 1
        return token, tuple(image.shape[1:])

    def decode_clip(self, frames, image_size, output_size):
        assert len(frames) == self.num_frames
        self.last_clip = [t.index for t in frames]
        return Instances(tuple(output_size))


def _predictor(num_frames):
    cfg = load_pavenet_config(
        opts=[
            "MODEL.DEVICE",
            "cpu",
            "MODEL.PAVENET.NUM_FRAMES",
            num_frames,
            "INPUT.MIN_SIZE_TEST",
            8,
            "INPUT.MAX_SIZE_TEST",
            8,
        ]
    )
    backend = _TokenBackend(num_frames)
    return ClipPredictor(cfg, backend=backend), backend


def test_stream_keeps_at_most_f_encodings_alive():
    # F = 3 over 7 frames: each frame encoded once (7 encodings) and, when key k is yielded, the encodings
    # alive are exactly those of frames clamp(k-1..k+1).
    f, n = 3, 7
    predictor, backend = _predictor(f)
    frames = (np.full((8, 8, 3), i, dtype=np.uint8) for i in range(n))
    for key, frame, _ in predictor.stream(frames):
        clip = clip_frame_indices(key, f, n)
        assert backend.last_clip == clip and int(frame[0, 0, 0]) == key
        del frame
        assert backend.tracked.alive() == set(clip), key
    assert backend.encoded == n


def test_stream_video_keeps_at_most_one_clip_of_encodings_alive():
    # F = 3, a 10-frame video, keys 1, 3 and 7: only frames 0-4 and 6-8 are read and encoded (in that order,
    # encodings 0..7). Alive: key 1 -> frames 0-2 (encodings 0-2); key 3 -> frames 2-4 (2-4: frames 0 and 1
    # are gone although frame 1 was read just before); key 7 -> frames 6-8 (5-7).
    f, n = 3, 10
    predictor, backend = _predictor(f)
    read = []

    def read_frame(i):
        read.append(i)
        return np.zeros((8, 8, 3), dtype=np.uint8)

    expected_alive = {
        1: {0, 1, 2},
        3: {2, 3, 4},
        7: {5, 6, 7},
    }  # encoding numbers of the clip's frames
    for key, _ in predictor.stream_video(read_frame, n, [1, 3, 7]):
        assert backend.tracked.alive() == expected_alive[key], key
    assert read == [0, 1, 2, 3, 4, 6, 7, 8]
