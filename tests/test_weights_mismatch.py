"""MODEL.WEIGHTS of another architecture or joint count: our error naming the file and the tensors, not
detectron2's "skip loading parameter ... incompatible shapes" warning and a half-random model."""

import importlib.util
import sys

import pytest
import torch
from detectron2.modeling import build_model

import pavenet.modeling  # noqa: F401  (registers PAVENet)
from pavenet.checkpoint import PAVENetCheckpointer, WeightsMismatchError
from pavenet.config import load_pavenet_config
from pavenet.inference.predictor import ClipPredictor

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml")
R50_PT17 = str(REPO_ROOT / "configs" / "posetrack17" / "pavenet_r50_3f_pt17.yaml")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(*opts):
    return build_model(load_pavenet_config(TINY, ["MODEL.DEVICE", "cpu", *opts]))


@pytest.fixture(scope="module")
def tiny17_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "tiny_17kp.pth"
    torch.save({"model": _tiny("MODEL.PAVENET.NUM_KEYPOINTS", 17).state_dict()}, path)
    return path


def test_17_joint_checkpoint_into_15_joint_model_names_file_tensors_and_joint_count(tiny17_file):
    cfg = load_pavenet_config(TINY, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(tiny17_file)])
    with pytest.raises(WeightsMismatchError) as e:
        ClipPredictor(cfg)  # the demo's / benchmark's path
    msg = str(e.value)
    assert msg.startswith(f"{tiny17_file} does not fit the model")
    # a keypoint-indexed tensor with both shapes (2 x 17 rows in the file, 2 x 15 in the model)
    assert "head.dec_fc_sigma_branches.0.2.linear.bias: checkpoint [34], model [30]" in msg
    assert "checkpoint has 17 joints" in msg and "MODEL.PAVENET.NUM_KEYPOINTS = 15" in msg
    assert "--coco-to-posetrack" in msg and "MODEL.PAVENET.WEIGHTS_MISMATCH skip" in msg


def test_refused_checkpoint_leaves_the_model_untouched(tiny17_file):
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError):
        PAVENetCheckpointer(model).load(str(tiny17_file))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_skip_loads_what_fits_for_fine_tuning_with_another_head(tiny17_file):
    model = _tiny()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    PAVENetCheckpointer(model, weights_mismatch="skip").load(str(tiny17_file))
    saved = torch.load(tiny17_file, weights_only=True)["model"]
    ours = model.state_dict()
    loaded = [k for k in ours if saved[k].shape == ours[k].shape]
    kept = [k for k in ours if saved[k].shape != ours[k].shape]
    assert len(kept) == 67 and len(loaded) > 100
    assert all(torch.equal(ours[k], saved[k]) for k in loaded)
    assert all(torch.equal(ours[k], init[k]) for k in kept)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    model = _tiny()
    sd = dict(model.state_dict())
    dropped = "head.fc_hm.weight"
    assert dropped in sd
    sd.pop(dropped)
    sd["head.extra_branch.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsMismatchError) as e:
        PAVENetCheckpointer(model).load(str(path))
    msg = str(e.value)
    assert str(path) in msg
    assert f"1 model tensors are not in the checkpoint ({dropped})" in msg
    assert "1 checkpoint tensors are not in the model (head.extra_branch.weight)" in msg

    # a DDP-wrapped model's "module." prefix is not a mismatch (fvcore strips it)
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    PAVENetCheckpointer(model).load(str(path))


def test_bad_policy_value_names_the_key():
    with pytest.raises(ValueError, match="MODEL.PAVENET.WEIGHTS_MISMATCH = 'warn'"):
        PAVENetCheckpointer(torch.nn.Linear(1, 1), weights_mismatch="warn")


def test_tiny_checkpoint_in_the_r50_config_stops_train_net_with_one_line(tmp_path, monkeypatch):
    """User path: `tools/train_net.py --eval-only` with the shipped R50 config and a tiny snapshot."""
    torch.save({"model": _tiny().state_dict(), "iteration": 5}, tmp_path / "model_final.pth")
    spec = importlib.util.spec_from_file_location(
        "tools_train_net", REPO_ROOT / "tools" / "train_net.py"
    )
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train_net.py",
            "--config-file",
            R50_PT17,
            "--eval-only",
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            str(tmp_path / "model_final.pth"),
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
    )
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main()
    msg = str(e.value.code)
    assert msg.startswith(f"error: {tmp_path / 'model_final.pth'} does not fit the model")
    assert (
        "backbone.res2.0.conv1.norm.bias: checkpoint [32], model [64]" in msg
    )  # tiny widths vs R50's
    assert "model tensors are not in the checkpoint" in msg and "backbone.res2" in msg
    assert "joints" not in msg  # not a joint-count problem
