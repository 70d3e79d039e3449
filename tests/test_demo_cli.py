"""tools/demo.py end to end on the real 5-frame sample video (random tiny weights), and bad input."""

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pavenet.apps.demo.outputs import video_frame_count

from conftest import REPO_ROOT, TINY_CONFIG

REPO = REPO_ROOT
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
    cfg_file, extra = str(TINY_CONFIG), []
    opts = [
        "MODEL.WEIGHTS",
        "",
        "MODEL.DEVICE",
        "cpu",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "128",
    ]
    return ["--config-file", cfg_file, "--no-progress", "--confidence-threshold", "0"], opts + extra


def test_sample_video_gives_5_frame_overlay_and_posetrack_json(
    demo_tool, sample_dir, tmp_path, cfg_args
):
    args, opts = cfg_args
    out = tmp_path / "out"
    summary = demo_tool.main(
        args
        + [
            "--video-input",
            str(sample_dir / SAMPLE_VIDEO),
            "--output",
            str(out),
            "--save-frames",
            "--save-json",
            str(out / "pred.json"),
            "--save-coco",
            str(out / "coco.json"),
            "--opts",
            *opts,
        ]
    )
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
    summary = demo_tool.main(
        args
        + [
            "--input",
            str(sample_dir / SAMPLE_VIDEO.parent / "*.jpg"),
            "--mode",
            "window",
            "--output",
            str(video),
            "--opts",
            *opts,
        ]
    )
    assert summary["num_frames"] == 5 and summary["num_tracks"] >= 1
    assert video_frame_count(str(video))[0] == 5


def test_bad_inputs_leave_no_output(demo_tool, tmp_path, cfg_args, sample_dir):
    args, opts = cfg_args
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        demo_tool.main(
            args + ["--video-input", str(tmp_path / "missing.mp4"), "--output", str(out)]
        )
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
        demo_tool.main(
            args
            + [
                "--input",
                str(frames),
                "--output",
                str(out),
                "--save-frames",
                "--save-json",
                str(out / "p.json"),
                "--opts",
                *opts,
            ]
        )
    assert not out.exists() or os.listdir(out) == []


def test_unwritable_output_stops_the_tool_with_one_line_and_status_2(
    tmp_path, sample_dir, cfg_args
):
    """The real command line: no traceback, the option and the path named, nothing written, and the
    model is never built (the check comes before it)."""
    import subprocess
    import sys

    args, opts = cfg_args
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder is needed")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(REPO / "projects" / "PAVENet"), os.environ.get("PYTHONPATH", "")]
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "demo.py"),
            *args,
            "--video-input",
            str(sample_dir / SAMPLE_VIDEO),
            "--output",
            str(blocker / "overlay.mp4"),
            "--opts",
            *opts,
            "MODEL.WEIGHTS",
            str(tmp_path / "never_read.pth"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: --output {blocker / 'overlay.mp4'}: cannot be created, {blocker} is a file, "
        "not a folder"
    ), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["results"]


def test_outputs_checked_before_the_model_is_built(
    demo_tool, tmp_path, sample_dir, cfg_args, monkeypatch
):
    args, opts = cfg_args
    video = str(sample_dir / SAMPLE_VIDEO)

    def never(*a, **k):
        raise AssertionError("the model was built before the outputs were checked")

    import pavenet.apps.demo.cli as demo_cli  # the tool's logic

    monkeypatch.setattr(demo_cli, "VideoPoseDemo", never)
    (tmp_path / "taken").write_text("x")
    from pavenet.apps.demo.outputs import DemoOutputError

    with pytest.raises(DemoOutputError, match=r"--save-json .*taken/p\.json: cannot be created"):
        demo_tool.main(
            args + ["--video-input", video, "--save-json", str(tmp_path / "taken" / "p.json")]
        )
    with pytest.raises(
        DemoOutputError, match=r"--output .*taken: exists and is a file, expected a folder"
    ):
        demo_tool.main(args + ["--video-input", video, "--output", str(tmp_path / "taken")])
    with pytest.raises(DemoOutputError, match="--save-frames needs --output to be a folder"):
        demo_tool.main(
            args + ["--video-input", video, "--output", str(tmp_path / "o.mp4"), "--save-frames"]
        )
    with pytest.raises(FileNotFoundError, match=r"--gt-json: .*missing_gt\.json"):
        demo_tool.main(
            args
            + [
                "--video-input",
                video,
                "--save-json",
                str(tmp_path / "p.json"),
                "--gt-json",
                str(tmp_path / "missing_gt.json"),
            ]
        )
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_frames_failing_half_way_leave_no_output(tmp_path, cfg_args):
    """A source that breaks after two frames (e.g. a camera or file that disappears): no video, frame
    folder or JSON at the final paths."""
    from pavenet.apps.demo.runner import VideoPoseDemo, run_demo
    from pavenet.config import load_pavenet_config
    from pavenet.inference.frames import FrameSource

    args, opts = cfg_args

    class Breaks(FrameSource):
        name, num_frames = "broken", 4

        def __iter__(self):
            for i in range(2):
                yield np.full((48, 64, 3), 40 * i, np.uint8)
            raise ValueError("frame 2 of broken: read error")

    demo = VideoPoseDemo(load_pavenet_config(args[1], opts))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="frame 2 of broken"):
        run_demo(
            demo,
            Breaks(),
            output=str(out),
            save_frames=True,
            save_json=str(out / "p.json"),
            save_coco=str(out / "c.json"),
            progress=False,
        )
    assert not out.exists() or os.listdir(out) == []
