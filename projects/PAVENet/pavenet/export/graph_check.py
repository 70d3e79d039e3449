"""What an export records about its model, and the check that the graphs are the ones the user asked for.

Both graphs store (ONNX metadata_props): the config keys that shape the network ("pavenet.config", JSON),
the weight file's name and SHA-256 ("pavenet.weights", "pavenet.weights_sha256") and the sampling
formulation. `check_graph_record` compares them with the config a demo / benchmark is run with: graphs
exported from other weights or another architecture would otherwise run silently with their own.
"""

import functools
import hashlib
import json
import logging
import os
from typing import Dict, List

__all__ = [
    "RECORDED_KEYS",
    "GraphMismatchError",
    "recorded_config",
    "weights_record",
    "check_graph_record",
]

logger = logging.getLogger(__name__)

# The config keys that change what the graphs compute (not the training-only ones, not TEST thresholds
# applied in Python afterwards).
RECORDED_KEYS = (
    "MODEL.META_ARCHITECTURE",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.BACKBONE.NAME",
    "MODEL.RESNETS.DEPTH",
    "MODEL.RESNETS.OUT_FEATURES",
    "MODEL.RESNETS.STRIDE_IN_1X1",
    "MODEL.PAVENET.SWIN.MODEL_NAME",
    "MODEL.PAVENET.NUM_FRAMES",
    "MODEL.PAVENET.NUM_KEYPOINTS",
    "MODEL.PAVENET.NUM_QUERIES",
    "MODEL.PAVENET.HIDDEN_DIM",
    "MODEL.PAVENET.NHEADS",
    "MODEL.PAVENET.DIM_FEEDFORWARD",
    "MODEL.PAVENET.IN_FEATURES",
    "MODEL.PAVENET.NUM_FEATURE_LEVELS",
    "MODEL.PAVENET.ENC_LAYERS",
    "MODEL.PAVENET.ENC_N_POINTS",
    "MODEL.PAVENET.POSE_DEC_LAYERS",
    "MODEL.PAVENET.JOINT_DEC_LAYERS",
    "MODEL.PAVENET.JOINT_N_POINTS",
    "MODEL.PAVENET.VALUE_FILL_BEFORE_PROJ",
    "MODEL.PAVENET.F5_T2_REFERENCE_BRANCH",
    "MODEL.PAVENET.TEST.TOPK",
    "INPUT.FORMAT",
)


class GraphMismatchError(ValueError):
    """The graphs were exported from other weights or another config than the one given."""


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if part not in node:
            return None
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


def recorded_config(cfg) -> Dict[str, object]:
    """{key: value} of RECORDED_KEYS in `cfg` (lists for tuples, so that it survives JSON)."""
    return {key: _get(cfg, key) for key in RECORDED_KEYS}


@functools.lru_cache(maxsize=8)
def _sha256(
    path: str, size: int, mtime: float
) -> str:  # size / mtime: a rewritten file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_record(weights: str) -> Dict[str, str]:
    """{"name": basename or "random", "sha256": hex digest or ""} of MODEL.WEIGHTS (no file: no digest)."""
    weights = str(weights or "")
    if not weights:
        return {"name": "random", "sha256": ""}
    digest = ""
    if os.path.isfile(weights):
        st = os.stat(weights)
        digest = _sha256(os.path.abspath(weights), st.st_size, st.st_mtime)
    return {"name": os.path.basename(weights), "sha256": digest}


def _differences(path: str, meta: Dict[str, str], cfg) -> List[str]:
    problems = []
    if "pavenet.config" in meta:
        graph_cfg = json.loads(meta["pavenet.config"])
        for key, want in recorded_config(cfg).items():
            if key in graph_cfg and graph_cfg[key] != want:
                problems.append(f"{key}: the graphs have {graph_cfg[key]!r}, the config {want!r}")
    if "pavenet.weights" in meta:
        asked = weights_record(cfg.MODEL.WEIGHTS)
        have_digest, have_name = meta.get("pavenet.weights_sha256", ""), meta["pavenet.weights"]
        same = (
            (have_digest == asked["sha256"])
            if (have_digest and asked["sha256"])
            else have_name == asked["name"]
        )
        if not same:
            problems.append(
                f"MODEL.WEIGHTS: the graphs hold {have_name!r}"
                + (f" (sha256 {have_digest[:12]})" if have_digest else "")
                + f", the config asks for {str(cfg.MODEL.WEIGHTS) or 'random'!r}"
                + (f" (sha256 {asked['sha256'][:12]})" if asked["sha256"] else "")
            )
    return problems


def check_graph_record(
    path: str, meta: Dict[str, str], cfg, on_mismatch: str = "error"
) -> List[str]:
    """Compare graph `path`'s metadata with `cfg`. on_mismatch "error": raise GraphMismatchError naming
    every difference (graph value and config value); "warn": log them. Returns the differences."""
    if on_mismatch not in ("error", "warn"):
        raise ValueError(f"on_mismatch must be 'error' or 'warn', got {on_mismatch!r}")
    problems = _differences(path, meta, cfg)
    if problems:
        text = f"{path} was exported for something else than asked: " + "; ".join(problems)
        if on_mismatch == "error":
            raise GraphMismatchError(
                text + " (export again with this config and weights, or pass "
                "--allow-graph-mismatch to run the graphs as they are)"
            )
        logger.warning("%s; running the graphs as they are (--allow-graph-mismatch)", text)
    return problems
