"""ClipPredictor: cached streaming == uncached window == model eval forward, each frame encoded once."""

import numpy as np
import pytest
import torch

from pavenet.inference.predictor import ClipPredictor

from conftest import TINY_CONFIG, load_tiny_cfg

TINY_YAML = TINY_CONFIG
# Small enough for a CPU test whatever the tiny YAML says; applied after it.
FAST_OPTS = [
    "MODEL.WEIGHTS",
    "",
    "MODEL.DEVICE",
    "cpu",
    "INPUT.MIN_SIZE_TEST",
    64,
    "INPUT.MAX_SIZE_TEST",
    128,
    "MODEL.PAVENET.TEST.SCORE_THRESH",
    0.0,
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(*opts):
    return load_tiny_cfg(*FAST_OPTS, *opts)


def _video(n, h=72, w=100, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    # Frames differ (a moving bright square) so a window that mixed up frames would change the output.
    frames = []
    for i in range(n):
        f = base.copy()
        f[10:30, 5 + 12 * i : 25 + 12 * i] = 255
        frames.append(f)
    return frames


def _count_encoded_frames(model):
    counter = {"frames": 0}
    orig = model.encode_frames

    def wrapped(images, *a, **k):
        counter["frames"] += images.shape[0]
        return orig(images, *a, **k)

    model.encode_frames = wrapped
    return counter


def _assert_same(a, b, atol=1e-3):
    assert len(a) == len(b)
    assert torch.allclose(a.scores, b.scores, atol=1e-5)
    assert torch.allclose(a.pred_keypoints, b.pred_keypoints, atol=atol)
    assert torch.allclose(a.pred_frame_keypoints, b.pred_frame_keypoints, atol=atol)
    assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=atol)


@pytest.fixture(scope="module")
def predictor(msda_impl):
    torch.manual_seed(0)
    return ClipPredictor(tiny_cfg("MODEL.PAVENET.MSDA_IMPL", msda_impl))


def test_cached_equals_uncached_and_encodes_each_frame_once(predictor):
    F = predictor.num_frames
    assert F >= 3, "the tiny config should have a temporal window"
    frames = _video(5)
    counter = _count_encoded_frames(predictor.model)
    try:
        streamed = list(predictor.stream(iter(frames)))  # a one-shot iterator: nothing is re-read
        assert counter["frames"] == len(frames)
        counter["frames"] = 0
        windowed = list(predictor.window(frames))
        assert counter["frames"] == len(frames) * F
    finally:
        del predictor.model.encode_frames
    assert [i for i, _, _ in streamed] == list(range(len(frames)))
    for (i, fa, a), (j, fb, b) in zip(streamed, windowed):
        assert i == j and fa is frames[i] and fb is frames[i]
        assert a.image_size == (72, 100)  # original frame pixels
        assert a.pred_frame_keypoints.shape[1:] == (F, a.pred_keypoints.shape[1], 2)
        assert len(a) > 0
        _assert_same(a, b)


def test_window_is_border_replicated_clip_of_model_forward(predictor):
    """The key frame t's window is frames clamp(t-T..t+T): compare with an explicitly built clip."""
    F, T = predictor.num_frames, predictor.num_frames // 2
    frames = _video(4)
    out = {i: inst for i, _, inst in predictor.stream(frames)}
    for t in (0, 3):
        clip = [frames[min(max(j, 0), len(frames) - 1)] for j in range(t - T, t + T + 1)]
        _assert_same(out[t], predictor(clip))
    # A different (wrong) window gives different poses: the check above can fail.
    wrong = predictor([frames[3]] * F)
    assert not torch.allclose(out[0].pred_keypoints, wrong.pred_keypoints, atol=1e-3)
    with pytest.raises(ValueError, match="expected"):
        predictor(frames[: F - 1])


def test_score_threshold_filters_and_short_video(predictor):
    frames = _video(1)
    p0 = predictor
    all_out = [x for _, _, x in p0.stream(frames)]
    assert len(all_out) == 1  # a 1-frame video still gives its frame (fully replicated window)
    scores = all_out[0].scores
    thresh = float(scores.median())
    p1 = ClipPredictor(tiny_cfg("MODEL.PAVENET.TEST.SCORE_THRESH", thresh), model=p0.model)
    kept = [x for _, _, x in p1.stream(frames)][0]
    assert len(kept) == int((scores >= thresh).sum()) and len(kept) < len(scores)
    assert list(p1.stream([])) == []


def test_loads_model_weights(predictor, tmp_path):
    """MODEL.WEIGHTS is loaded through the checkpointer: a fresh predictor reproduces the outputs."""
    path = tmp_path / "model.pth"
    torch.save({"model": predictor.model.state_dict()}, path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = ClipPredictor(
        tiny_cfg("MODEL.WEIGHTS", str(path), "MODEL.PAVENET.MSDA_IMPL", predictor.model.msda_impl)
    )
    frames = _video(3)
    for (_, _, a), (_, _, b) in zip(predictor.stream(frames), loaded.stream(frames)):
        _assert_same(a, b, atol=1e-5)
    torch.manual_seed(123)
    unloaded = ClipPredictor(tiny_cfg())
    a = next(iter(predictor.stream(frames)))[2]
    b = next(iter(unloaded.stream(frames)))[2]
    assert not torch.allclose(a.pred_keypoints, b.pred_keypoints, atol=1e-3)


def test_stream_video_decodes_chosen_key_frames_as_stream(predictor):
    """The evaluation entry (frames read by position, chosen key frames) shares stream's decoding: same
    instances, and only the frames the key frames' clips use are read and encoded, once each."""
    frames = _video(6)
    full = {i: inst for i, _, inst in predictor.stream(frames)}
    reads = []

    def read(i):
        reads.append(i)
        return frames[i]

    counter = _count_encoded_frames(predictor.model)
    try:
        out = list(predictor.stream_video(read, len(frames), [5, 0]))
    finally:
        del predictor.model.encode_frames
    assert [k for k, _ in out] == [0, 5]
    assert reads == [0, 1, 4, 5] and counter["frames"] == 4  # clips (0, 0, 1) and (4, 5, 5)
    for key, inst in out:
        _assert_same(inst, full[key])


def test_prepare_is_the_input_stream_encodes(predictor):
    """`prepare` (the benchmark's way in): one frame's network input; encoding F prepared frames and
    decoding them gives the streaming output of that window."""
    frames = _video(predictor.num_frames)
    image = predictor.prepare(frames[0])
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    encoded = [predictor.encode(predictor.prepare(f)) for f in frames]
    with torch.no_grad():
        out = predictor.backend.decode_clip(
            [e[0] for e in encoded], encoded[0][1], frames[0].shape[:2]
        )
    # The window frames[0:F] is the one of key frame F // 2 (earlier keys replicate the first frame).
    streamed = {key: inst for key, _, inst in predictor.stream(frames)}[predictor.num_frames // 2]
    _assert_same(out, streamed)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.prepare(frames[0][:, :, 0])
