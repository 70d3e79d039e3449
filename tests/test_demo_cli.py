"""tools/demo.py end to end on the real 5-frame sample video (random tiny weights), and bad input."""
import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pavenet.demo.outputs import video_frame_count

from test_demo_predictor import FALLBACK_TINY, TINY_YAML

REPO = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = Path("videos") / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_tool():
    return _load_tool("demo")


@pytest.fixture
def cfg_args(tmp_path):
    """--config-file plus --opts for a tiny random-weight model at a small test size."""
    if TINY_YAML.is_file():
        cfg_file = str(TINY_YAML)
        extra = []
    else:  # until the tiny YAML exists: an empty YAML + the same tiny overrides as the predictor test
        cfg_file = str(tmp_path / "tiny.yaml")
        Path(cfg_file).write_text("MODEL:\n  WEIGHTS: ''\n")
        extra = [str(v) for v in FALLBACK_TINY]
    opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128"]
    return ["--config-file", cfg_file, "--no-progress", "--confidence-threshold", "0"], opts + extra


def test_sample_video_gives_5_frame_overlay_and_posetrack_json(demo_tool, sample_dir, tmp_path, cfg_args):
    args, opts = cfg_args
    out = tmp_path / "out"
    summary = demo_tool.main(args + [
        "--video-input", str(sample_dir / SAMPLE_VIDEO), "--output", str(out), "--save-frames",
        "--save-json", str(out / "pred.json"), "--save-coco", str(out / "coco.json"), "--opts", *opts,
    ])
    assert summary["num_frames"] == 5
    n, size = video_frame_count(str(out / "000001_mpiinew_test.mp4"))
    assert n == 5 and size == (720, 1280)  # overlays at the original resolution
    assert len(os.listdir(out / "000001_mpiinew_test")) == 5
    assert not [p for p in os.listdir(out) if "partial" in p]

    data = json.loads((out / "pred.json").read_text())
    assert len(data["images"]) == 5
    # PoseTrack ids T SSSSSS FFFF (3 = mpiinew) and file names poseval can parse.
    assert data["images"][2]["id"] == 30000010002
    assert data["images"][2]["file_name"].endswith("000001_mpiinew_test/000002.jpg")
    anns = data["annotations"]
    assert anns and {a["image_id"] for a in anns} == {im["id"] for im in data["images"]}
    assert all(len(a["keypoints"]) == 51 and isinstance(a["track_id"], int) for a in anns)
    for im in data["images"]:  # poseval: track ids unique within a frame
        tids = [a["track_id"] for a in anns if a["image_id"] == im["id"]]
        assert len(tids) == len(set(tids))
    assert data["categories"][0]["name"] == "person"
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco) == len(anns) and all("track_id" in r for r in coco)

    # Overlays differ from the input frames (skeletons were drawn).
    cap = cv2.VideoCapture(str(sample_dir / SAMPLE_VIDEO))
    ok, first = cap.read()
    cap.release()
    drawn = cv2.imread(str(out / "000001_mpiinew_test" / "000000.jpg"))
    assert ok and np.abs(drawn.astype(int) - first.astype(int)).max() > 100


def test_image_folder_input_and_window_mode(demo_tool, sample_dir, tmp_path, cfg_args):
    args, opts = cfg_args
    video = tmp_path / "overlay.avi"
    summary = demo_tool.main(args + [
        "--input", str(sample_dir / SAMPLE_VIDEO.parent / "*.jpg"), "--mode", "window", "--output", str(video),
        "--opts", *opts,
    ])
    assert summary["num_frames"] == 5 and summary["num_tracks"] >= 1
    assert video_frame_count(str(video))[0] == 5


def test_bad_inputs_leave_no_output(demo_tool, tmp_path, cfg_args, sample_dir):
    args, opts = cfg_args
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        demo_tool.main(args + ["--video-input", str(tmp_path / "missing.mp4"), "--output", str(out)])
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(ValueError, match="broken.mp4"):
        demo_tool.main(args + ["--video-input", str(bad), "--output", str(out)])
    assert not out.exists()

    # A frame that fails half-way: the frames already drawn must not appear as a finished video / JSON.
    frames = tmp_path / "frames"
    frames.mkdir()
    src = sample_dir / SAMPLE_VIDEO.parent
    for i in range(3):
        (frames / f"{i:06d}.jpg").write_bytes((src / f"{i:06d}.jpg").read_bytes())
    (frames / "000003.jpg").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="000003.jpg"):
        demo_tool.main(args + ["--input", str(frames), "--output", str(out), "--save-frames",
                               "--save-json", str(out / "p.json"), "--opts", *opts])
    assert not out.exists() or os.listdir(out) == []
