"""utils/atomic.py: the old result stays until the new one is complete and in place."""

import os

import pytest

from pavenet.utils import atomic
from pavenet.utils.atomic import atomic_dir, atomic_open


def _folder(path, files):
    os.makedirs(path)
    for name in files:
        (path / name).write_text(name)


def test_atomic_dir_replaces_an_old_folder_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "frames"
    _folder(out, ["old_0.jpg", "old_1.jpg"])
    with pytest.raises(RuntimeError):
        with atomic_dir(str(out)) as tmp:
            (tmp_path / os.path.basename(tmp) / "new_0.jpg").write_text("x")
            raise RuntimeError("crash half-way")
    assert sorted(os.listdir(out)) == ["old_0.jpg", "old_1.jpg"]
    assert os.listdir(tmp_path) == ["frames"]

    with atomic_dir(str(out)) as tmp:
        open(os.path.join(tmp, "new_0.jpg"), "w").close()
    assert os.listdir(out) == ["new_0.jpg"]
    assert os.listdir(tmp_path) == ["frames"]


def test_atomic_dir_puts_the_old_folder_back_if_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    out = tmp_path / "frames"
    _folder(out, ["old_0.jpg"])
    real_rename = os.rename
    moves = []

    def rename(src, dst):
        moves.append((os.path.basename(src), os.path.basename(dst)))
        if ".partial-" in str(
            src
        ):  # the new folder fails to move in, after the old one moved aside
            raise OSError("disk gone")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_dir(str(out)) as tmp:
            open(os.path.join(tmp, "new_0.jpg"), "w").close()
    # old moved aside first (never deleted before the new one is in place), then restored
    assert moves[0][0] == "frames" and moves[0][1].startswith("frames.old-")
    assert os.listdir(out) == ["old_0.jpg"]
    assert os.listdir(tmp_path) == ["frames"]


def test_atomic_open_writes_complete_files_under_a_name_no_glob_takes_for_a_result(tmp_path):
    path = tmp_path / "model_0000001.pth"
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), "wb") as f:
            f.write(b"half")
            assert not f.name.endswith(".pth") and os.path.dirname(f.name) == str(tmp_path)
            raise RuntimeError
    assert os.listdir(tmp_path) == []
    with atomic_open(str(path), "wb") as f:
        f.write(b"all")
    assert path.read_bytes() == b"all" and os.listdir(tmp_path) == ["model_0000001.pth"]
    with pytest.raises(ValueError, match="writing"):
        with atomic_open(str(path), "rb"):
            pass
