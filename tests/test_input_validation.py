"""Every entry point refuses input that would give a wrong number or a traceback naming nothing, with one
line naming the file, field or option: MOTA over GT without track ids (`--eval-only`), a frame whose JPEG
data is corrupt part-way, frames of one pixel, benchmark counts and sizes, a misspelt `--backends`, a
dataset file without `annotations`, `--num-gpus 2` without CUDA; and the tools print no dependency warning."""

import json
import os
import subprocess
import sys
import uuid

import cv2
import numpy as np
import pytest
from test_demo_cli import _load_tool

from conftest import REPO_ROOT, TINY_CONFIG

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_OPTS = [
    "MODEL.WEIGHTS",
    "",
    "MODEL.DEVICE",
    "cpu",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "128",
]


def _run(args, cwd, **env_extra):
    """A tool or `python -c` run as a user runs it: a fresh interpreter with the checkout's package first."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT / "projects" / "PAVENet"), os.environ.get("PYTHONPATH", "")]
        ),
        **env_extra,
    )
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _sample_gt(sample_dir, out_dir, edit):
    """The shared PoseTrack18 sample's val files, each passed through `edit(dict)`, written to `out_dir`."""
    out_dir.mkdir()
    files = sorted((sample_dir / "annotations" / "val").glob("*.json"))
    for f in files:
        data = json.loads(f.read_text())
        edit(data)
        (out_dir / f.name).write_text(json.dumps(data))
    return [out_dir / f.name for f in files]


# ------------------------------------------------------------------ MOTA over GT without track ids
def test_eval_only_mota_on_gt_without_track_ids_is_refused_like_the_evaluator_cli(
    tmp_path, sample_dir, monkeypatch, capsys
):
    from pavenet.data.datasets.posetrack import register_posetrack
    from pavenet.evaluation.posetrack import main as evaluator_cli

    def drop_ids(data):
        for ann in data["annotations"]:
            ann.pop("track_id", None)

    gt_files = _sample_gt(sample_dir, tmp_path / "gt", drop_ids)
    expected = f"{gt_files[0]}: GT person 0 without track_id in frame 0"
    # The evaluator CLI (the sample's own files, with ids, as predictions) refuses these GT files ...
    assert (
        evaluator_cli(
            [
                "--gt-dir",
                str(tmp_path / "gt"),
                "--pred-dir",
                str(sample_dir / "annotations" / "val"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith(f"error: {expected}")
    # ... and so does `tools/train_net.py --eval-only` with TEST.POSETRACK.EVAL_TRACKING, before inference.
    name = f"pt18_no_track_ids_{uuid.uuid4().hex[:6]}"
    register_posetrack(name, str(tmp_path / "gt"), str(sample_dir))
    train_net = _load_tool("train_net")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train_net.py",
            "--config-file",
            str(TINY_CONFIG),
            "--eval-only",
            *TINY_OPTS,
            "DATASETS.TEST",
            f"('{name}',)",
            "TEST.POSETRACK.EVAL_TRACKING",
            "True",
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
    )
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main()
    msg = str(e.value.code)
    assert msg.startswith(f"error: {expected}") and "TEST.POSETRACK.EVAL_TRACKING False" in msg, msg
    assert not (tmp_path / "out" / "inference").exists()  # refused before any prediction was made


# ------------------------------------------------------------------ dataset files
def test_dataset_file_without_annotations_is_refused_naming_it_by_loader_evaluator_and_cli(
    tmp_path, sample_dir
):
    from pavenet.data.datasets.posetrack import load_posetrack_video_dicts
    from pavenet.data.posetrack_files import PoseTrackFormatError
    from pavenet.evaluation.readers import read_gt

    files = _sample_gt(sample_dir, tmp_path / "ann", lambda data: data.pop("annotations"))
    needle = f"{files[0]}: expected PoseTrack18 'images' and 'annotations' lists"
    for read in (
        lambda: load_posetrack_video_dicts(str(tmp_path / "ann"), str(sample_dir)),
        lambda: read_gt(str(tmp_path / "ann")),
    ):
        with pytest.raises(PoseTrackFormatError) as e:
            read()
        assert str(e.value).startswith(needle) and "field 'annotations' is missing" in str(e.value)
    proc = _run(
        [
            str(REPO_ROOT / "tools" / "visualize_data.py"),
            "--config-file",
            str(TINY_CONFIG),
            "--dataset",
            f"no_annotations_{uuid.uuid4().hex[:6]}",
            "--annotations",
            str(tmp_path / "ann"),
            "--image-root",
            str(sample_dir),
            "--output",
            str(tmp_path / "vis"),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {needle}"), proc.stderr[-2000:]


# ------------------------------------------------------------------ frame sources
def _jpeg_frames(folder, n=4, h=48, w=64):
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 2)
        paths.append(folder / f"{i:06d}.jpg")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def test_frame_with_corrupt_jpeg_data_in_the_middle_stops_the_demo_naming_it(tmp_path):
    paths = _jpeg_frames(tmp_path / "frames")
    data = bytearray(paths[2].read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
    paths[2].write_bytes(bytes(data))
    assert (
        cv2.imread(str(paths[2])) is not None
    )  # what makes it silent: OpenCV decodes it (half grey)
    out = tmp_path / "out.json"
    proc = _run(
        [
            str(REPO_ROOT / "tools" / "demo.py"),
            "--config-file",
            str(TINY_CONFIG),
            "--no-progress",
            "--input",
            str(tmp_path / "frames"),
            "--save-json",
            str(out),
            "--opts",
            *TINY_OPTS,
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: image {paths[2]} is corrupt"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_intact_jpeg_frames_decode_as_opencv_reads_them(tmp_path):
    from pavenet.data.frame_check import read_frame

    for p in _jpeg_frames(tmp_path / "frames", n=2):
        np.testing.assert_array_equal(read_frame(str(p)), cv2.imread(str(p)))


def test_one_pixel_frames_are_refused_naming_the_input(tmp_path):
    from pavenet.data.frame_check import MIN_FRAME_SIDE

    demo = _load_tool("demo")
    folder = tmp_path / "dots"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.full((1, 1, 3), 60 * i, np.uint8))
    video = tmp_path / "dot.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (1, 1))
    for i in range(3):
        writer.write(np.full((1, 1, 3), 60 * i, np.uint8))
    writer.release()
    for source, name in (
        (["--input", str(folder)], f"image {folder / '000000.png'}"),
        (["--video-input", str(video)], f"video {video}"),
    ):
        with pytest.raises(ValueError) as e:
            demo.main(
                [
                    "--config-file",
                    str(TINY_CONFIG),
                    *source,
                    "--save-json",
                    str(tmp_path / "o.json"),
                    "--opts",
                    *TINY_OPTS,
                ]
            )
        assert str(e.value) == (
            f"{name} is 1x1 pixels (WxH): frames must be at least {MIN_FRAME_SIDE} pixels "
            "on each side"
        )
    assert not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------ CLI numbers
@pytest.mark.parametrize(
    "args, message",
    [
        (["--repeats", "0"], "--repeats must be an integer >= 1, got 0"),
        (["--frames", "0"], "--frames must be an integer >= 1, got 0"),
        (["--height", "-5"], "--height must be an integer >= 40, got -5"),
        (["--width", "1"], "--width must be an integer >= 40, got 1"),
        (
            ["--backends", "pytroch"],
            "--backends: 'pytroch' is not a backend; expected 'all' or a comma list of pytorch, "
            "kernel",
        ),
    ],
)
def test_benchmark_numbers_and_backends_are_checked_before_the_model_is_built(
    args, message, monkeypatch
):
    import pavenet.apps.benchmark.runs as runs

    bench = _load_tool("benchmark")
    monkeypatch.setattr(
        runs, "ClipPredictor", lambda *a, **k: pytest.fail("model built before the check")
    )
    with pytest.raises(ValueError) as e:
        bench.main(["--config-file", str(TINY_CONFIG), *args, "--no-flops", "--opts", *TINY_OPTS])
    assert str(e.value) == message


def test_benchmark_zero_repeats_is_one_error_line_and_no_warning(tmp_path):
    proc = _run(
        [
            str(REPO_ROOT / "tools" / "benchmark.py"),
            "--config-file",
            str(TINY_CONFIG),
            "--repeats",
            "0",
            "--opts",
            *TINY_OPTS,
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert (
        proc.stderr == "error: --repeats must be an integer >= 1, got 0\n"
    )  # nothing else: no dependency warning


def _worker_asserting_cuda(local_rank):
    import torch

    assert torch.cuda.is_available(), "cuda is not available. Please check your installation."


def _worker_with_gloo_fallback(local_rank):
    import torch

    backend = "NCCL" if torch.cuda.is_available() else "GLOO"
    return backend


def test_num_gpus_without_cuda_refused_before_spawning_where_launch_needs_cuda(monkeypatch):
    import importlib

    import torch

    from pavenet.utils import cli_numbers

    launch_module = importlib.import_module("detectron2.engine.launch")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # detectron2 v0.6's worker asserts CUDA: refused with one line, before `launch` spawns anything.
    monkeypatch.setattr(launch_module, "_distributed_worker", _worker_asserting_cuda)
    assert not cli_numbers.launch_runs_without_cuda()
    train_net = _load_tool("train_net")
    monkeypatch.setattr(train_net, "launch", lambda *a, **k: pytest.fail("launch reached"))
    monkeypatch.setattr(
        sys, "argv", ["train_net.py", "--config-file", str(TINY_CONFIG), "--num-gpus", "2"]
    )
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main()
    assert str(e.value.code).startswith("error: --num-gpus 2: this machine has no CUDA device")
    cli_numbers.check_num_gpus(1)  # one process runs on the CPU with any detectron2
    # A launch whose workers fall back to gloo (detectron2 main): CPU workers are fine.
    monkeypatch.setattr(launch_module, "_distributed_worker", _worker_with_gloo_fallback)
    assert cli_numbers.launch_runs_without_cuda()
    cli_numbers.check_num_gpus(2)
    with pytest.raises(ValueError, match="--num-gpus must be an integer >= 1, got 0"):
        cli_numbers.check_num_gpus(0)


# ------------------------------------------------------------------ dependency warnings
def test_tools_print_no_dependency_warning_but_ours_stay(tmp_path):
    import torch

    fake_cuda_home = (
        tmp_path / "cuda"
    )  # a toolkit without a GPU: what makes torch log "No CUDA runtime"
    fake_cuda_home.mkdir()
    proc = _run(
        [str(REPO_ROOT / "tools" / "demo.py"), "--help"],
        cwd=tmp_path,
        CUDA_HOME=str(fake_cuda_home),
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    code = (
        "import warnings, pavenet, torch.utils.cpp_extension, fvcore.nn; "
        "warnings.warn('pavenet: our own warning', UserWarning)"
    )
    proc = _run(["-c", code], cwd=tmp_path, CUDA_HOME=str(fake_cuda_home))
    assert "our own warning" in proc.stderr
    assert "No CUDA runtime" not in proc.stderr and "torch.jit.script" not in proc.stderr, (
        proc.stderr
    )
    # Without our package both appear (the filters are what hides them).
    proc = _run(
        ["-c", "import torch.utils.cpp_extension, fvcore.nn"],
        cwd=tmp_path,
        CUDA_HOME=str(fake_cuda_home),
    )
    assert "torch.jit.script" in proc.stderr
    if not torch.cuda.is_available():
        assert "No CUDA runtime" in proc.stderr
