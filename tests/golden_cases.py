"""Golden case folders (official outputs for seeded weights) and how each maps to our shipped config.

Every folder under the golden directory that holds `outputs.npz` and `meta.json` is a case; names that
start with `train_` are training cases. A case's `meta.json` names its weight seed (and, optionally,
`keys_file`, the official key list it was generated from); the backbone and frame count are read off
the generated checkpoint, so new R50/Swin-L, F=3/5 cases are tested without new code.
"""
import json
from pathlib import Path
from typing import List, Tuple

import pytest
import torch

from conftest import GOLDEN_DIR, REPO_ROOT, SHARED
from pavenet.apps.convert_official import main as convert_main
from pavenet.conversion.naming import detect_backbone_type, detect_num_frames
from pavenet.apps.gpu_check import load_make_weights

# (backbone, frames) -> the shipped PoseTrack17 config of that official model.
SHIPPED_CONFIGS = {
    ("resnet", 3): "configs/posetrack17/pavenet_r50_3f_pt17.yaml",
    ("resnet", 5): "configs/posetrack17/pavenet_r50_5f_pt17.yaml",
    ("swin", 3): "configs/posetrack17/pavenet_swinl_3f_pt17.yaml",
}


def case_dirs(kind: str) -> List[Path]:
    """'inference' or 'train' case folders, sorted by name (empty when the golden dir is absent)."""
    if not GOLDEN_DIR.is_dir():
        return []
    found = [p for p in sorted(GOLDEN_DIR.iterdir())
             if (p / "outputs.npz").is_file() and (p / "meta.json").is_file()]
    return [p for p in found if p.name.startswith("train_") == (kind == "train")]


def case_model(official_state_dict):
    """(absolute config path, num_frames) of the shipped config matching an official checkpoint."""
    key = (detect_backbone_type(official_state_dict), detect_num_frames(official_state_dict))
    if key not in SHIPPED_CONFIGS:
        pytest.skip(f"no shipped config for an official {key[0]} F={key[1]} model")
    return REPO_ROOT / SHIPPED_CONFIGS[key], key[1]


def convert_case_weights(case: str, tmp: Path) -> Tuple[dict, Path, Path]:
    """The user's path for a case's weights: `make_weights.py` writes the seeded official checkpoint
    (mmcv style), `tools/convert_official_ckpt.py` converts it for the matching shipped config.

    Returns (the case's meta.json, the shipped config, the converted checkpoint for MODEL.WEIGHTS).
    """
    if case is None:
        pytest.skip(f"no golden case (*/outputs.npz) under {GOLDEN_DIR} (set PAVENET_GOLDEN_DIR)")
    meta = json.loads((GOLDEN_DIR / case / "meta.json").read_text())
    keys_file = SHARED / "docs" / meta.get("keys_file", "official_r50_f3_state_dict_keys.txt")
    if not keys_file.is_file():
        pytest.skip(f"official key list {keys_file} not found (set PAVENET_SHARED_DIR)")
    mw = load_make_weights(GOLDEN_DIR)
    official = mw.make_state_dict(mw.read_keys(str(keys_file)), int(meta["weight_seed"]))
    torch.save({"state_dict": official}, tmp / "official.pth")
    cfg_file, num_frames = case_model(official)
    del official
    assert convert_main(["--src", str(tmp / "official.pth"), "--dst", str(tmp / "ours.pth"),
                         "--num-frames", str(num_frames), "--config-file", str(cfg_file)]) == 0
    return meta, cfg_file, tmp / "ours.pth"
