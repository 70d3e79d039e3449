"""Frame sources, sliding windows with border replication, atomic outputs."""

import os

import cv2
import numpy as np
import pytest

from pavenet.apps.demo.outputs import VideoWriter, atomic_dir, atomic_path, video_frame_count
from pavenet.inference.frames import ImageListSource, VideoFileSource, open_frame_source
from pavenet.inference.predictor import sliding_windows


def _frames(n, h=48, w=64):
    return [np.full((h, w, 3), 20 * i, dtype=np.uint8) for i in range(n)]


def _write_video(path, frames, fourcc="mp4v"):
    h, w = frames[0].shape[:2] if frames else (48, 64)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()


@pytest.mark.parametrize("num_frames", [1, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
def test_sliding_windows_clamp_at_borders(num_frames, n):
    half = num_frames // 2
    out = list(sliding_windows(iter(range(n)), num_frames))
    assert [k for k, _ in out] == list(range(n))
    for k, window in out:
        assert window == [min(max(j, 0), n - 1) for j in range(k - half, k + half + 1)]
    with pytest.raises(ValueError):
        list(sliding_windows([1, 2], 2))


def test_sliding_windows_share_items_and_bound_memory():
    objs = [object() for _ in range(10)]
    seen = []

    def gen():
        for o in objs:
            seen.append(o)
            yield o

    for k, window in sliding_windows(gen(), 3):
        # Lazy: at most T=1 item is read ahead of the key frame, the same objects are reused.
        assert len(seen) <= k + 2
        assert window[1] is objs[k]


def test_video_source_reads_frames_and_names(tmp_path):
    path = tmp_path / "000007_mpii_test.mp4"
    _write_video(path, _frames(4))
    src = VideoFileSource(str(path))
    assert src.name == "000007_mpii_test"
    frames = list(src)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert abs(int(frames[3].mean()) - 60) <= 3  # order preserved (lossy codec)
    assert src.frame_name(3) == "000003.jpg"


def test_video_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoFileSource(str(tmp_path / "missing.mp4"))
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ValueError, match="garbage.mp4"):
        VideoFileSource(str(bad))
    empty = tmp_path / "empty.avi"
    _write_video(empty, [], fourcc="MJPG")
    with pytest.raises(ValueError, match="empty.avi"):
        VideoFileSource(str(empty))


def test_image_sources(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (10, 2, 1):  # natural order: 1, 2, 10
        cv2.imwrite(str(folder / f"frame{i}.png"), np.full((32, 40, 3), i, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    src = open_frame_source(inputs=[str(folder)])
    assert src.num_frames == 3 and src.name == "seq"
    assert [int(f[0, 0, 0]) for f in src] == [1, 2, 10]
    src = ImageListSource(str(folder / "frame*.png"))
    assert [os.path.basename(p) for p in src.paths] == ["frame1.png", "frame2.png", "frame10.png"]
    assert src.frame_name(2) == "frame10.png"

    with pytest.raises(FileNotFoundError, match="matches no file"):
        ImageListSource(str(folder / "*.jpg"))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        ImageListSource([str(folder / "frame1.png"), str(folder / "nope.png")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageListSource(str(empty))
    cv2.imwrite(str(folder / "frame11.png"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="frame11.png"):
        list(ImageListSource(str(folder)))
    (folder / "frame12.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="give exactly one"):
        open_frame_source(video_input="a.mp4", inputs=[str(folder)])


def test_atomic_outputs_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(str(target)) as tmp:
            assert tmp.endswith(".mp4") and tmp != str(target)
            vw = VideoWriter(tmp, 10)
            vw.write(_frames(1)[0])
            vw.close()
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []

    with atomic_path(str(target)) as tmp:
        vw = VideoWriter(tmp, 10)
        for f in _frames(3):
            vw.write(f)
        vw.close()
    assert os.listdir(tmp_path) == ["out.mp4"]
    assert video_frame_count(str(target)) == (3, (48, 64))

    frames_dir = tmp_path / "frames"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(str(frames_dir)) as tmp:
            open(os.path.join(tmp, "0.jpg"), "w").close()
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]
    with pytest.raises(ValueError, match="extension"):
        VideoWriter(str(tmp_path / "x.gif"), 10)


def test_video_input_that_is_not_a_video_names_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"video .*empty\.mp4 is empty \(0 bytes\): expected a video file"
    ):
        VideoFileSource(str(empty))
    with pytest.raises(
        ValueError, match=r"--video-input .* is a folder; for a folder of frames use --input"
    ):
        VideoFileSource(str(tmp_path))
    image = tmp_path / "frame.jpg"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    assert cv2.VideoCapture(
        str(image)
    ).isOpened()  # OpenCV alone would play it as a one-frame video
    with pytest.raises(ValueError, match=r"--video-input .*frame\.jpg is an image, not a video"):
        VideoFileSource(str(image))


def test_image_inputs_are_checked_before_any_frame_is_decoded(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), np.zeros((32, 40, 3), np.uint8))
    cv2.imwrite(str(folder / "000003.jpg"), np.zeros((30, 40, 3), np.uint8))
    # mixed sizes: the constructor (not the 4th frame's decode) names both files and both sizes
    with pytest.raises(ValueError) as e:
        ImageListSource(str(folder))
    msg = str(e.value)
    assert "000003.jpg is 40x30 (WxH)" in msg and "000000.jpg is 40x32" in msg and "one size" in msg

    (folder / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(
        ValueError, match=r"cannot read image .*000003\.jpg \(not an image or corrupt"
    ):
        ImageListSource(str(folder))
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(
        ValueError, match=r"input .*notes\.txt is not an image file \(expected \.jpg"
    ):
        ImageListSource([str(folder / "000000.jpg"), str(notes)])
    clip = tmp_path / "clip.mp4"
    _write_video(clip, _frames(2))
    with pytest.raises(
        ValueError, match=r"clip\.mp4 is not an image file .*; for a video use --video-input"
    ):
        open_frame_source(inputs=[str(clip)])


def test_output_paths_are_checked_before_any_work(tmp_path):
    from pavenet.apps.demo.outputs import DemoOutputError, check_output_path

    a_file = tmp_path / "results"
    a_file.write_text("I am a file")
    with pytest.raises(
        DemoOutputError,
        match=r"--output .*results/out\.mp4: cannot be created, .*results is a file",
    ):
        check_output_path(str(a_file / "out.mp4"), "--output")
    with pytest.raises(
        DemoOutputError, match=r"--output .*results: exists and is a file, expected a folder"
    ):
        check_output_path(str(a_file), "--output", is_dir=True)
    with pytest.raises(DemoOutputError, match=r"--save-json .*: is a folder, expected a file name"):
        check_output_path(str(tmp_path), "--save-json")
    check_output_path(
        str(tmp_path / "new" / "deeper" / "pred.json"), "--save-json"
    )  # created later
    assert sorted(os.listdir(tmp_path)) == ["results"]  # the check creates nothing
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(DemoOutputError, match=r"no permission to write in .*locked"):
            check_output_path(str(locked / "out.mp4"), "--output")


def test_exif_rotated_frame_of_the_same_upright_size_is_accepted(tmp_path):
    """cv2.imread turns EXIF-rotated JPEGs upright; the header check compares upright sizes too."""
    from PIL import Image

    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "000000.jpg")  # 30x40 (WxH)
    rotated = Image.fromarray(np.zeros((30, 40, 3), np.uint8))  # stored 40x30, EXIF 6: shown 30x40
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "000001.jpg", exif=exif)
    frames = list(ImageListSource(str(tmp_path)))
    assert [f.shape for f in frames] == [(40, 30, 3), (40, 30, 3)]
