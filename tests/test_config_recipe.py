"""One source for the recipe: `add_pavenet_config` only adds PAVE-Net's keys (every key detectron2's
`get_cfg()` has keeps detectron2's value), and the shipped configs resolve to the values recorded in
tests/data/resolved_configs.json: for Base-PAVENet.yaml every PAVE-Net key and every detectron2 key it sets
to another value than detectron2's default (so the record holds on detectron2 versions with other keys), and
for every other config the keys where it differs from the base.

After a deliberate recipe change, regenerate the record with `python tests/test_config_recipe.py` and
review its diff."""

import json
import sys
from pathlib import Path

from detectron2.config import CfgNode, get_cfg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "projects" / "PAVENet"))

from pavenet.config import add_pavenet_config, load_pavenet_config  # noqa: E402

RECORD = REPO_ROOT / "tests" / "data" / "resolved_configs.json"
BASE = "configs/Base-PAVENet.yaml"


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from _leaves(value, f"{prefix}{key}.")
        else:  # JSON has no tuples: compare lists
            yield f"{prefix}{key}", json.loads(json.dumps(value))


def _resolve_all():
    detectron2_defaults = dict(_leaves(get_cfg()))
    base = dict(_leaves(load_pavenet_config(str(REPO_ROOT / BASE))))
    out = {
        BASE: {
            k: v
            for k, v in base.items()
            if k not in detectron2_defaults or v != detectron2_defaults[k]
        }
    }
    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")):
        rel = str(path.relative_to(REPO_ROOT))
        if rel != BASE:
            leaves = dict(_leaves(load_pavenet_config(str(path))))
            assert leaves.keys() == base.keys(), rel
            out[rel] = {k: v for k, v in leaves.items() if v != base[k]}
    return out


def test_add_pavenet_config_leaves_detectron2s_keys_alone():
    detectron2_defaults = dict(_leaves(get_cfg()))
    with_pavenet = dict(_leaves(add_pavenet_config(get_cfg())))
    changed = {
        k: (v, with_pavenet[k]) for k, v in detectron2_defaults.items() if with_pavenet[k] != v
    }
    assert changed == {}
    added = with_pavenet.keys() - detectron2_defaults.keys()
    assert "MODEL.PAVENET.NUM_FRAMES" in added and "TEST.POSETRACK.VIDEO_MODE" in added


def test_shipped_configs_resolve_to_the_recorded_recipe():
    recorded = json.loads(RECORD.read_text())
    resolved = _resolve_all()
    assert resolved.keys() == recorded.keys()
    for name, leaves in recorded.items():
        assert resolved[name] == leaves, name


if __name__ == "__main__":
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(_resolve_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD}")
