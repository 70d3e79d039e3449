"""tools/benchmark.py (a thin CLI over `pavenet.apps.benchmark`) on a tiny random-weight model: the JSON keys and
what the FLOP count must satisfy."""

import json

import pytest
from test_demo_cli import _load_tool

from conftest import TINY_CONFIG

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_benchmark_json(tmp_path):
    bench = _load_tool("benchmark")
    cfg_file, extra = str(TINY_CONFIG), []
    out = tmp_path / "bench.json"
    res = bench.main(
        [
            "--config-file",
            cfg_file,
            "--height",
            "64",
            "--width",
            "96",
            "--frames",
            "3",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--train-clips",
            "1",
            "--json",
            str(out),
            "--opts",
            "MODEL.WEIGHTS",
            "",
            "MODEL.DEVICE",
            "cpu",
            *extra,
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    for key in (
        "stream_ms_per_frame",
        "window_ms_per_frame",
        "ms_1_person",
        "ms_20_persons",
        "gflops_per_frame",
        "encode_ms_per_frame",
        "decode_ms_per_window",
        "torch_threads",
        "device",
        "machine",
    ):
        assert key in res, key
    assert all(
        res[k] > 0
        for k in ("stream_ms_per_frame", "window_ms_per_frame", "ms_1_person", "ms_20_persons")
    )
    F = res["num_frames"]
    enc, dec = res["gflops_encode_per_frame"], res["gflops_decode_per_window"]
    assert enc > 0 and dec > 0
    # Streaming encodes each frame once, the window mode F times; both decode once per frame.
    assert res["gflops_per_frame"] == pytest.approx(enc + dec)
    assert res["gflops_per_frame_window"] == pytest.approx(F * enc + dec)
    assert res["height"] == 64 and res["width"] == 96
    # Every backend side by side: inference modes and the training step (clips/s, peak memory).
    from pavenet.modeling.msda_backend import kernel_available

    assert set(res["backends"]) == ({"pytorch", "kernel"} if kernel_available() else {"pytorch"})
    for b in res["backends"].values():
        for key in (
            "stream_ms_per_frame",
            "encode_ms_per_frame",
            "decode_ms_per_window",
            "train_ms_per_step",
            "train_cpu_ms_per_step",
        ):
            assert b[key] > 0, key
        assert b["train_clips_per_s"] == pytest.approx(1e3 / b["train_ms_per_step"])
        # User CPU is the part of the process CPU time spent outside the kernel.
        assert (
            0 <= b["stream_user_cpu_ms_per_frame"] <= b["stream_cpu_ms_per_frame"] + 1.0
        )  # two clocks
    assert res["stream_ms_per_frame"] == res["backends"][res["msda_impl"]]["stream_ms_per_frame"]
    # The sampling core alone: one encoder attention over the frame's S tokens, and one pose-decoder
    # attention of NUM_QUERIES persons x K keypoints over the window's F frames.
    points, shape = res["core_points_per_call"], res["core_shape"]
    assert shape["queries"] == res["num_queries"] and shape["frames"] == F
    assert shape["tokens"] > 0 and shape["keypoints"] == 15
    assert points["encoder"] == shape["tokens"] * shape["heads"] * shape["levels"] * shape["points"]
    assert (
        points["pose_decoder"]
        == shape["queries"] * shape["heads"] * F * shape["levels"] * shape["keypoints"]
    )
    for b in res["backends"].values():
        for part, n in points.items():
            assert b[f"core_{part}_ms_per_call"] > 0
            assert b[f"core_{part}_ns_per_point"] == pytest.approx(
                b[f"core_{part}_ms_per_call"] * 1e6 / n
            )
            assert b[f"core_{part}_cpu_ns_per_point"] == pytest.approx(
                b[f"core_{part}_cpu_ms_per_call"] * 1e6 / n
            )
    if kernel_available():
        k, p = res["backends"]["kernel"], res["backends"]["pytorch"]
        assert res["kernel_over_pytorch"]["train_ms_per_step"] == pytest.approx(
            k["train_ms_per_step"] / p["train_ms_per_step"]
        )


def test_cpu_peak_memory_counts_live_tensors():
    """--cpu-memory's measure: the peak of live tensor bytes during the call, frees included."""
    import torch

    from pavenet.apps.benchmark import peak_memory_mb

    mb = 1000 * 1000 * 4 / 2**20  # one float32 1000x1000 tensor

    def three_live_then_one():
        a, b = torch.randn(1000, 1000), torch.randn(1000, 1000)
        c = a @ b
        del a, b
        return (c * 2).sum()  # peak: a, b, c alive together

    assert peak_memory_mb(three_live_then_one, torch.device("cpu")) == pytest.approx(
        3 * mb, rel=0.01
    )


def test_core_calls_sample_the_same_for_both_backends():
    """The benchmark's core calls run the same computation on either backend (and on the model's shapes)."""
    import torch
    from test_demo_predictor import _video, tiny_cfg

    from pavenet.apps.benchmark import core_calls
    from pavenet.inference.predictor import ClipPredictor
    from pavenet.modeling.msda_backend import kernel_available

    if not kernel_available():
        pytest.skip("torch-ms-deform-attn is not installed: only the PyTorch backend to compare")
    predictor = ClipPredictor(tiny_cfg())
    with torch.no_grad():
        enc, _ = predictor.encode(predictor.prepare(_video(1)[0]))
        calls, shape = core_calls(predictor.model, enc, predictor.num_frames, 7)
        assert shape["tokens"] == enc.memory.shape[1] and shape["queries"] == 7
        for part, (call, _) in calls.items():
            torch.testing.assert_close(
                call("kernel"), call("pytorch"), atol=1e-5, rtol=1e-5, msg=part
            )
