"""PAVENetCheckpointer: safe `.pkl` loading, our error for missing weights, atomic checkpoint saving, and
resume after a process killed in the middle of writing a checkpoint."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from pavenet.checkpoint import (
    CheckpointReadError,
    PAVENetCheckpointer,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)

from conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _WritesAFile:
    """Unpickling this calls `open(marker, "w")`: the file appears if the pickle's code runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pkl_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model_zoo.pkl"
    with open(bad, "wb") as f:
        pickle.dump(
            {
                "model": {"weight": np.zeros((1, 1), np.float32)},
                "__author__": "x",
                "payload": _WritesAFile(str(marker)),
            },
            f,
            protocol=2,
        )
    ckpt = PAVENetCheckpointer(nn.Linear(1, 1))
    with pytest.raises(UnsafeCheckpointError) as e:
        ckpt.load(str(bad))
    assert str(bad) in str(e.value) and "tools/convert_official_ckpt.py" in str(e.value)
    assert not marker.exists(), "the pickle's code ran"
    # the payload is live: a plain pickle.load (detectron2's .pkl reader) runs it
    with open(bad, "rb") as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_model_zoo_pkl_of_numpy_arrays_loads(tmp_path, protocol):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([0.5, -1.0], np.float32)
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {"model": {"weight": w, "bias": b}, "__author__": "test", "step": np.int64(7)},
            f,
            protocol=protocol,
        )
    model = nn.Linear(3, 2)
    extra = PAVENetCheckpointer(model).load(str(path))
    assert torch.equal(model.weight.detach(), torch.from_numpy(w)) and torch.equal(
        model.bias.detach(), torch.from_numpy(b)
    )
    assert extra["step"] == 7


def test_garbage_pkl_names_the_file(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"\x80\x02}q\x00(X\x01")  # a pickle cut short
    with pytest.raises(CheckpointReadError, match="junk.pkl"):
        PAVENetCheckpointer(nn.Linear(1, 1)).load(str(path))


def test_missing_weights_name_the_key_path_and_converter(tmp_path):
    missing = str(tmp_path / "checkpoints" / "pavenet_r50.pth")
    with pytest.raises(WeightsNotFoundError) as e:
        PAVENetCheckpointer(nn.Linear(1, 1)).resume_or_load(missing, resume=False)
    msg = str(e.value)
    assert (
        "MODEL.WEIGHTS" in msg and missing in msg and "tools/convert_official_ckpt.py --src" in msg
    )
    assert f"--dst {missing}" in msg


def test_checkpoints_are_written_atomically(tmp_path):
    model = nn.Linear(2, 2)
    ckpt = PAVENetCheckpointer(model, save_dir=str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    ckpt.save("model_0000003", iteration=3)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000001.pth",
        "model_0000003.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert torch.load(tmp_path / "model_0000003.pth", weights_only=True)["iteration"] == 3

    class Unsaveable(nn.Module):  # fails half-way through torch.save
        def state_dict(self, *a, **k):
            return {"w": torch.zeros(1), "bad": lambda: 0}  # not picklable

    ckpt.checkpointables["broken"] = Unsaveable()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        ckpt.save("model_0000005", iteration=5)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000001.pth",
        "model_0000003.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"


def test_resume_from_a_missing_or_truncated_checkpoint_names_the_files(tmp_path):
    ckpt = PAVENetCheckpointer(nn.Linear(2, 2), save_dir=str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(CheckpointReadError) as e:
        ckpt.resume_or_load("", resume=True)
    msg = str(e.value)
    assert (
        "last_checkpoint" in msg
        and str(tmp_path / "model_0000009.pth") in msg
        and "does not exist" in msg
    )
    assert "model_0000001.pth" in msg  # the intact candidate

    data = (tmp_path / "model_0000001.pth").read_bytes()
    (tmp_path / "model_0000002.pth").write_bytes(
        data[: len(data) // 2]
    )  # a non-atomic writer killed
    (tmp_path / "last_checkpoint").write_text("model_0000002.pth")
    with pytest.raises(CheckpointReadError) as e:
        ckpt.resume_or_load("", resume=True)
    assert str(tmp_path / "model_0000002.pth") in str(e.value) and "truncated" in str(e.value)


_KILLED_WHILE_SAVING = textwrap.dedent("""
    import io, os, signal, sys
    import torch
    from test_setup import _smoke_cfg, _smoke_trainer

    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        # Deterministic kill point: half of the iteration-3 checkpoint is on disk when SIGKILL arrives.
        if isinstance(obj, dict) and obj.get("iteration") == 3:
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save_then_die
    torch.set_num_threads(1)
    trainer = _smoke_trainer(_smoke_cfg(sys.argv[1], max_iter=6))
    trainer.resume_or_load(resume=False)
    trainer.train()
""")


def test_training_killed_while_saving_resumes_from_the_last_good_checkpoint(tmp_path):
    from test_setup import _smoke_cfg, _smoke_trainer

    out = tmp_path / "run"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [
                str(REPO_ROOT / "projects" / "PAVENet"),
                str(REPO_ROOT / "tests"),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_SAVING, str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    files = sorted(os.listdir(out))
    # the kill hit the write of model_0000003.pth: half of it is on disk, but not under its final name
    partial = [f for f in files if f.startswith("model_0000003.pth.partial-")]
    assert partial and os.path.getsize(out / partial[0]) > 0, files
    assert "model_0000003.pth" not in files
    assert (out / "last_checkpoint").read_text() == "model_0000001.pth"

    trainer = _smoke_trainer(_smoke_cfg(out, max_iter=6))
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    trainer.train()
    assert trainer.iter == 6 and (out / "model_final.pth").is_file()
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


def test_every_config_weights_path_is_a_documented_converter_output():
    import yaml

    documented = (REPO_ROOT / "docs" / "MODEL_ZOO.md").read_text()
    configs = sorted((REPO_ROOT / "configs").rglob("*.yaml"))
    checked = 0
    for path in configs:
        weights = (yaml.safe_load(path.read_text()).get("MODEL") or {}).get("WEIGHTS")
        if weights:
            assert f"--dst {weights} " in documented or f"--dst {weights}\n" in documented, (
                f"{path.relative_to(REPO_ROOT)}: MODEL.WEIGHTS {weights} is not the --dst of a converter command "
                "in docs/MODEL_ZOO.md"
            )
            checked += 1
    assert checked >= 5, configs


def test_train_net_eval_only_without_the_weights_names_key_path_and_command(tmp_path, monkeypatch):
    """The real PT17 config with its MODEL.WEIGHTS not produced yet: one line, exit status != 0."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tools_train_net", REPO_ROOT / "tools" / "train_net.py"
    )
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    monkeypatch.chdir(tmp_path)  # the config's relative checkpoints/ path must not exist here
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train_net.py",
            "--config-file",
            str(REPO_ROOT / "configs" / "posetrack17" / "pavenet_r50_3f_pt17.yaml"),
            "--eval-only",
            "MODEL.DEVICE",
            "cpu",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
    )
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main()
    msg = str(e.value.code)
    assert msg.startswith(
        "error: MODEL.WEIGHTS = 'checkpoints/pavenet_r50_coco_video_3f_15kp.pth': no such file"
    )
    assert (
        "python tools/convert_official_ckpt.py --src <official .pth> "
        "--dst checkpoints/pavenet_r50_coco_video_3f_15kp.pth" in msg
    )
