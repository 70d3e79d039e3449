"""Golden case folders (official outputs for seeded weights) and how each maps to our shipped config.

Every folder under the golden directory that holds `outputs.npz` and `meta.json` is a case; names that
start with `train_` are training cases. A case's `meta.json` names its weight seed (and, optionally,
`keys_file`, the official key list it was generated from); the backbone and frame count are read off
the generated checkpoint, so new R50/Swin-L, F=3/5 cases are tested without new code.

The golden variants directory (GOLDEN_VARIANTS_DIR: R50 F=5, Swin-L F=3) holds cases of the same layout
with their own weight maker (`make_variant_weights.py`, which also draws Swin's relative-position
tensors) and key lists beside them; `root=GOLDEN_VARIANTS_DIR` selects them.
"""

import importlib.util
import json
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
import torch

from pavenet.apps.convert_official import main as convert_main
from pavenet.apps.gpu_check import load_make_weights
from pavenet.conversion.naming import detect_backbone_type, detect_num_frames

from conftest import GOLDEN_DIR, GOLDEN_VARIANTS_DIR, REPO_ROOT, SHARED

# (backbone, frames) -> the shipped PoseTrack17 config of that official model.
SHIPPED_CONFIGS = {
    ("resnet", 3): "configs/posetrack17/pavenet_r50_3f_pt17.yaml",
    ("resnet", 5): "configs/posetrack17/pavenet_r50_5f_pt17.yaml",
    ("swin", 3): "configs/posetrack17/pavenet_swinl_3f_pt17.yaml",
}


def case_dirs(kind: str, root: Path = GOLDEN_DIR) -> List[Path]:
    """'inference' or 'train' case folders of `root`, sorted by name (empty when `root` is absent)."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in sorted(root.iterdir())
        if (p / "outputs.npz").is_file() and (p / "meta.json").is_file()
    ]
    return [p for p in found if p.name.startswith("train_") == (kind == "train")]


def case_model(official_state_dict):
    """(absolute config path, num_frames) of the shipped config matching an official checkpoint."""
    key = (detect_backbone_type(official_state_dict), detect_num_frames(official_state_dict))
    if key not in SHIPPED_CONFIGS:
        pytest.skip(f"no shipped config for an official {key[0]} F={key[1]} model")
    return REPO_ROOT / SHIPPED_CONFIGS[key], key[1]


def _weight_maker(root: Path):
    """(the weight generator module of a golden folder, the folder of the key lists its cases name)."""
    if root != GOLDEN_VARIANTS_DIR:
        return load_make_weights(root), SHARED / "docs"
    spec = importlib.util.spec_from_file_location(
        "pavenet_golden_variant_weights", root / "make_variant_weights.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, root


def convert_case_weights(
    case: Optional[str], tmp: Path, root: Path = GOLDEN_DIR
) -> Tuple[dict, Path, Path]:
    """The user's path for a case's weights: the folder's weight maker writes the seeded official
    checkpoint (mmcv style), `tools/convert_official_ckpt.py` converts it with docs/MODEL_ZOO.md's options
    (`--num-frames` for F=5; the backbone is read off the keys) for the matching shipped config.

    Returns (the case's meta.json, the shipped config, the converted checkpoint for MODEL.WEIGHTS).
    """
    if case is None:
        env = "PAVENET_GOLDEN_VARIANTS_DIR" if root == GOLDEN_VARIANTS_DIR else "PAVENET_GOLDEN_DIR"
        pytest.skip(f"no golden case (*/outputs.npz) under {root} (set {env})")
    meta = json.loads((root / case / "meta.json").read_text())
    maker, keys_dir = _weight_maker(root)
    keys_file = keys_dir / meta.get("keys_file", "official_r50_f3_state_dict_keys.txt")
    if not keys_file.is_file():
        pytest.skip(f"official key list {keys_file} not found (set PAVENET_SHARED_DIR)")
    official = maker.make_state_dict(maker.read_keys(str(keys_file)), int(meta["weight_seed"]))
    if "weights_sha256" in meta:  # the very weights the official outputs were computed with
        assert maker.fingerprint(official) == meta["weights_sha256"], (
            f"{case}: weights differ from the producer's"
        )
    torch.save({"state_dict": official}, tmp / "official.pth")
    cfg_file, num_frames = case_model(official)
    del official
    frames = ["--num-frames", str(num_frames)] if num_frames != 3 else []
    assert (
        convert_main(["--src", str(tmp / "official.pth"), "--dst", str(tmp / "ours.pth"), *frames])
        == 0
    )
    return meta, cfg_file, tmp / "ours.pth"
