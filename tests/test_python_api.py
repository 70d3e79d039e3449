"""The README's Python API example runs as written, on the tiny model (a checkpoint the test saves) and a
short video the test writes; the other inputs (a folder of frames, an iterator of images) give the same
persons as each other."""

import contextlib
import io
import json
import re

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, TINY_CONFIG, load_tiny_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NUM_FRAMES = 6


def _readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _frames():
    """Two bright blobs that move across a dark background, BGR uint8 (96, 128, 3)."""
    frames = []
    for t in range(NUM_FRAMES):
        img = np.full((96, 128, 3), 30, np.uint8)
        cv2.circle(img, (30 + 4 * t, 40), 12, (200, 180, 160), -1)
        cv2.circle(img, (90 - 3 * t, 60), 10, (90, 200, 220), -1)
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A random-init tiny PAVE-Net saved as a checkpoint (what `make demo` writes)."""
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(load_tiny_cfg())
    # Shifted off any seeded initialisation, so that a test that sees these weights knows they were loaded.
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "model_final.pth"
    torch.save({"model": state}, path)
    return path, state


def test_readme_example_runs_as_written(tmp_path, monkeypatch, tiny_weights):
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    (tmp_path / "output" / "demo").mkdir(parents=True)
    (tmp_path / "output" / "demo" / "model_final.pth").symlink_to(tiny_weights[0])
    writer = cv2.VideoWriter(
        str(tmp_path / "my_video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96)
    )
    for frame in _frames():
        writer.write(frame)
    writer.release()
    monkeypatch.chdir(tmp_path)

    scope, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_readme_example(), "README.md", "exec"), scope)

    model = scope["estimator"].predictor.model
    for k, v in tiny_weights[1].items():  # the weights named in the example were loaded
        assert torch.equal(model.state_dict()[k], v), k
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert lines and {int(w[0]) for w in lines} == set(
        range(NUM_FRAMES)
    )  # every frame, persons in each
    printed = {(int(w[0]), int(w[1])) for w in lines}
    with open(tmp_path / "my_video.json") as f:
        posetrack = json.load(f)
    assert len(posetrack["images"]) == NUM_FRAMES
    ids = [im["id"] for im in posetrack["images"]]
    written = {(ids.index(a["image_id"]), a["track_id"]) for a in posetrack["annotations"]}
    assert written == printed
    assert len(printed) == len(lines)  # one track id per person of a frame


def test_folder_and_iterator_inputs_give_the_same_persons(tmp_path, tiny_weights):
    from pavenet.inference import VideoPoseEstimator

    frames = _frames()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    estimator = VideoPoseEstimator.from_config(str(TINY_CONFIG), weights=str(tiny_weights[0]))
    from_folder = list(estimator(str(folder)))
    from_iterator = list(estimator(iter(frames)))
    assert (
        [f.index for f in from_folder]
        == [f.index for f in from_iterator]
        == list(range(NUM_FRAMES))
    )
    for a, b in zip(from_folder, from_iterator):
        assert [p.track_id for p in a.persons] == [p.track_id for p in b.persons]
        np.testing.assert_allclose(
            np.stack([p.keypoints for p in a.persons]), np.stack([p.keypoints for p in b.persons])
        )
        assert a.frame.shape == (96, 128, 3) and len(a.instances) == len(a.persons)
    strict = VideoPoseEstimator.from_config(
        str(TINY_CONFIG), weights=str(tiny_weights[0]), score_thresh=1.1
    )
    assert all(not f.persons for f in strict(iter(frames)))


def test_bad_inputs_name_what_was_expected(tmp_path, tiny_weights):
    from pavenet.inference import VideoPoseEstimator

    estimator = VideoPoseEstimator.from_config(str(TINY_CONFIG), weights=str(tiny_weights[0]))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        next(estimator(str(tmp_path / "missing.mp4")))
    with pytest.raises(TypeError, match="single array is not a video"):
        next(estimator(_frames()[0]))
    with pytest.raises(FileNotFoundError, match="save_json"):
        next(estimator(iter(_frames()), save_json=str(tmp_path / "no" / "such" / "dir.json")))
