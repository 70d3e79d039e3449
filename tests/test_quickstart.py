"""The main job (tools/quickstart.py, `make demo`) end to end on a 2-iteration schedule: it trains, writes
metrics.json in the evaluator CLI's schema with the learning curve, the weights and the GIF, and says where."""

import json
import sys

import pytest
from PIL import Image
from test_demo_cli import _load_tool

from conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_main_job_writes_metrics_weights_and_rendering(tmp_path, monkeypatch, capsys):
    quickstart = _load_tool("quickstart")
    out = tmp_path / "demo"
    monkeypatch.chdir(
        REPO_ROOT
    )  # the synthetic data lives under $DETECTRON2_DATASETS (default: ./datasets)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "quickstart.py",
            "--output",
            str(out),
            "--render-frames",
            "2",
            "--threads",
            "1",
            "SOLVER.MAX_ITER",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
        ],
    )
    quickstart.main()

    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    for key in ("ap", "ap_with_oks_nms"):
        assert set(metrics[key]) == {"per_joint", "groups", "total"}
        assert 0.0 <= metrics[key]["total"] <= 100.0
        assert set(metrics[key]["groups"]) == {
            "Head",
            "Shoulder",
            "Elbow",
            "Wrist",
            "Hip",
            "Knee",
            "Ankle",
        }
    assert [p["iteration"] for p in metrics["learning_curve"]] == [2]
    assert metrics["learning_curve"][-1]["ap"] == pytest.approx(metrics["ap"]["total"])
    # The duplicate report of the NMS-free evaluation: in metrics.json, the curve and the printed summary.
    dup = metrics["duplicates"]
    assert dup["ap"] == pytest.approx(metrics["ap"]["total"]) and dup["frames"] == 60
    assert metrics["learning_curve"][-1]["ap_without_duplicates"] == pytest.approx(
        dup["ap_without_duplicates"]
    )
    # Tracking: MOTA of the streaming tracker's ids beside AP, in metrics.json, the curve and the summary.
    assert (
        set(metrics["mota"]) == {"per_joint", "groups", "total"}
        and metrics["mota"]["total"] <= 100.0
    )
    assert metrics["learning_curve"][-1]["mota"] == pytest.approx(metrics["mota"]["total"])
    assert (out / "model_final.pth").is_file()
    # detectron2's per-iteration training events have their own file, not overwritten by the summary above.
    events = [json.loads(line) for line in (out / "train_metrics.json").read_text().splitlines()]
    losses = [e for e in events if "loss_cls" in e]
    assert losses and losses[-1]["iteration"] == 1
    assert any("posetrack/AP" in e for e in events)  # the evaluation's scalars land there too
    gif = Image.open(out / "predictions.gif")
    assert gif.n_frames == 2
    assert gif.size[0] > 2 * gif.size[1]  # ground truth and prediction side by side
    printed = capsys.readouterr().out
    assert str(out / "metrics.json") in printed and str(out / "predictions.gif") in printed
    assert f"{dup['steals']} people taken from their best-scoring prediction" in printed
    assert f"MOTA {metrics['mota']['total']:.1f}, MOTP {metrics['motp']['total']:.1f}" in printed
