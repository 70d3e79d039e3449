"""The GPU check's verdict (pavenet.apps.gpu_check, tools/gpu_check.py): both backends must match the golden
outputs and each other within the CPU golden test's tolerances; inputs it cannot run on are clear errors."""

import json

import numpy as np
import pytest
import torch

from pavenet.apps.gpu_check import GOLDEN_CASE, GpuCheckError, check_kernel, compare_runs


def _run(memory, det):
    det = torch.as_tensor(det, dtype=torch.float64)
    return {
        "memory": torch.as_tensor(memory, dtype=torch.float64),
        "prenms": det.clone(),
        "det": det,
    }


def _gold():
    rng = np.random.default_rng(0)
    return {"memory": rng.normal(size=(3, 40, 8)), "det_kpts": rng.uniform(0, 100, (2, 15, 3))}


def test_identical_runs_pass_and_a_kernel_off_by_a_pixel_fails():
    gold = _gold()
    same = _run(gold["memory"], gold["det_kpts"])
    res = compare_runs({"pytorch": same, "kernel": same}, gold)
    assert (
        res["ok"]
        and res["kernel_vs_pytorch"]["det_xy_px"] == 0.0
        and res["pytorch"]["memory_vs_golden"] == 0.0
    )
    shifted = gold["det_kpts"].copy()
    shifted[1, 4, 0] += 1.0  # one joint one pixel off
    res = compare_runs({"pytorch": same, "kernel": _run(gold["memory"], shifted)}, gold)
    assert not res["ok"]
    assert res["kernel"]["det_xy_vs_golden_px"] == pytest.approx(1.0)
    assert res["kernel_vs_pytorch"]["det_xy_px"] == pytest.approx(1.0)
    assert res["kernel"]["det_score_vs_golden"] == 0.0
    json.dumps(res)  # the tool writes it as JSON


def test_within_tolerance_passes_and_a_missing_person_is_inf():
    gold = _gold()
    near = _run(gold["memory"] + 1e-4, gold["det_kpts"] + np.array([5e-3, 0.0, 0.0]))
    assert compare_runs({"pytorch": near, "kernel": near}, gold)["ok"]
    fewer = _run(gold["memory"], gold["det_kpts"][:1])
    res = compare_runs({"pytorch": _run(gold["memory"], gold["det_kpts"]), "kernel": fewer}, gold)
    assert res["kernel"]["det_xy_vs_golden_px"] == float("inf") and not res["ok"]


def test_missing_inputs_and_missing_cuda_are_clear_errors(tmp_path, monkeypatch):
    keys = tmp_path / "keys.txt"
    with pytest.raises(FileNotFoundError, match="outputs.npz"):
        check_kernel(tmp_path, keys, "cpu")
    (tmp_path / GOLDEN_CASE).mkdir()
    np.savez(tmp_path / GOLDEN_CASE / "outputs.npz", memory=np.zeros(1))
    with pytest.raises(FileNotFoundError, match="keys.txt"):
        check_kernel(tmp_path, keys, "cpu")
    keys.write_text("")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GpuCheckError, match="cuda"):
        check_kernel(tmp_path, keys, "cuda")
