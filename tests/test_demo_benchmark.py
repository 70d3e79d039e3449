"""tools/benchmark.py on a tiny random-weight model: the JSON keys and what the FLOP count must satisfy."""
import json

import pytest

from test_demo_cli import _load_tool
from test_demo_predictor import FALLBACK_TINY, TINY_YAML

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_benchmark_json(tmp_path):
    bench = _load_tool("benchmark")
    if TINY_YAML.is_file():
        cfg_file, extra = str(TINY_YAML), []
    else:
        cfg_file = str(tmp_path / "tiny.yaml")
        (tmp_path / "tiny.yaml").write_text("MODEL:\n  WEIGHTS: ''\n")
        extra = [str(v) for v in FALLBACK_TINY]
    out = tmp_path / "bench.json"
    res = bench.main(["--config-file", cfg_file, "--height", "64", "--width", "96", "--frames", "3",
                      "--repeats", "1", "--threads", "1", "--json", str(out), "--opts", "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
                      *extra])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    for key in ("stream_ms_per_frame", "window_ms_per_frame", "ms_1_person", "ms_20_persons", "gflops_per_frame",
                "encode_ms_per_frame", "decode_ms_per_window", "torch_threads", "device", "machine"):
        assert key in res, key
    assert all(res[k] > 0 for k in ("stream_ms_per_frame", "window_ms_per_frame", "ms_1_person", "ms_20_persons"))
    F = res["num_frames"]
    enc, dec = res["gflops_encode_per_frame"], res["gflops_decode_per_window"]
    assert enc > 0 and dec > 0
    # Streaming encodes each frame once, the window mode F times; both decode once per frame.
    assert res["gflops_per_frame"] == pytest.approx(enc + dec)
    assert res["gflops_per_frame_window"] == pytest.approx(F * enc + dec)
    assert res["height"] == 64 and res["width"] == 96
