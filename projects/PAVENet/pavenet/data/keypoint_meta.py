"""Keypoint layouts in one place: names, flip maps, skeletons, OKS sigmas and format mappings.

Pure Python (no torch, no detectron2) so that loaders, writers, the evaluator and the converter can
all share it. The model's PoseTrack order is the 15-joint order of docs/REFERENCE.md §12.
"""

from typing import Dict, List, Optional, Tuple

# --- PoseTrack: the model's 15 joints -------------------------------------------------------------
POSETRACK_KEYPOINT_NAMES: Tuple[str, ...] = (
    "nose",
    "head_bottom",
    "head_top",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_POSETRACK_KEYPOINTS = len(POSETRACK_KEYPOINT_NAMES)

# PoseTrack 2018/21 files keep 17 COCO-like slots; slots 3 and 4 (the ears) are always empty.
POSETRACK18_SLOT_NAMES: Tuple[str, ...] = (
    "nose",
    "head_bottom",
    "head_top",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# Index into the 17 slots for each of our 15 joints (drop the ears).
POSETRACK18_SLOTS_FOR_15: Tuple[int, ...] = (0, 1, 2) + tuple(range(5, 17))

# poseval joint ids (PoseTrack 2017 `annopoints` ids) for each of our 15 joints.
POSEVAL_JOINT_NAMES: Tuple[str, ...] = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "head_bottom",
    "nose",
    "head_top",
)
POSEVAL_ID_FOR_15: Tuple[int, ...] = tuple(
    POSEVAL_JOINT_NAMES.index(n) for n in POSETRACK_KEYPOINT_NAMES
)
# The paper's table columns, as groups of our 15 joints (poseval's Head = head_top, neck, nose).
POSETRACK_JOINT_GROUPS: Dict[str, Tuple[str, ...]] = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Shoulder": ("left_shoulder", "right_shoulder"),
    "Elbow": ("left_elbow", "right_elbow"),
    "Wrist": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"),
    "Knee": ("left_knee", "right_knee"),
    "Ankle": ("left_ankle", "right_ankle"),
}

# OKS sigmas (docs/REFERENCE.md §8): nose, head_bottom, head_top, then the COCO body values.
POSETRACK_OKS_SIGMAS: Tuple[float, ...] = (
    0.026,
    0.079,
    0.079,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
)

# --- COCO: 17 joints (pre-training) ---------------------------------------------------------------
COCO_KEYPOINT_NAMES: Tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
COCO_OKS_SIGMAS: Tuple[float, ...] = (
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
)


def oks_sigmas_for(num_joints: int) -> Optional[List[float]]:
    """The OKS sigmas of a `num_joints`-joint layout: 15 -> PoseTrack's, 17 -> COCO's, else None
    (callers that cannot do without, e.g. the matcher, raise naming MODEL.PAVENET.NUM_KEYPOINTS)."""
    for sigmas in (POSETRACK_OKS_SIGMAS, COCO_OKS_SIGMAS):
        if num_joints == len(sigmas):
            return list(sigmas)
    return None


# docs/REFERENCE.md §11: COCO joints kept when a 17-joint model is turned into a 15-joint PoseTrack one.
COCO_TO_POSETRACK_INDICES: Tuple[int, ...] = POSETRACK18_SLOTS_FOR_15


def flip_map(names) -> List[Tuple[str, str]]:
    """Pairs (left_x, right_x) present in `names`, as detectron2's `keypoint_flip_map` expects."""
    return [
        (n, "right_" + n[5:]) for n in names if n.startswith("left_") and "right_" + n[5:] in names
    ]


def flip_indices(names) -> List[int]:
    """Permutation that swaps left/right joints: flipped[k] = original[flip_indices[k]]."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        if n.startswith("left_"):
            n = "right_" + n[5:]
        elif n.startswith("right_"):
            n = "left_" + n[6:]
        out.append(index[n])
    return out


_LEFT, _RIGHT, _CENTRE = (0, 200, 255), (255, 128, 0), (220, 220, 220)


def _rules(pairs) -> List[Tuple[str, str, Tuple[int, int, int]]]:
    def colour(a, b):
        if a.startswith("left_") or b.startswith("left_"):
            return _LEFT
        if a.startswith("right_") or b.startswith("right_"):
            return _RIGHT
        return _CENTRE

    return [(a, b, colour(a, b)) for a, b in pairs]


POSETRACK_CONNECTION_RULES = _rules(
    [
        ("head_top", "nose"),
        ("nose", "head_bottom"),
        ("head_bottom", "left_shoulder"),
        ("head_bottom", "right_shoulder"),
        ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"),
        ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"),
        ("left_hip", "right_hip"),
        ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"),
        ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"),
    ]
)
COCO_CONNECTION_RULES = _rules(
    [
        ("left_ear", "left_eye"),
        ("right_ear", "right_eye"),
        ("left_eye", "nose"),
        ("nose", "right_eye"),
        ("left_shoulder", "right_shoulder"),
        ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"),
        ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"),
        ("left_hip", "right_hip"),
        ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"),
        ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"),
    ]
)


def posetrack_metadata() -> dict:
    """Metadata fields shared by every PoseTrack split (evaluator_type and paths are added per split)."""
    return {
        "thing_classes": ["person"],
        "keypoint_names": list(POSETRACK_KEYPOINT_NAMES),
        "keypoint_flip_map": flip_map(POSETRACK_KEYPOINT_NAMES),
        "keypoint_connection_rules": list(POSETRACK_CONNECTION_RULES),
        "keypoint_oks_sigmas": list(POSETRACK_OKS_SIGMAS),
    }


def coco_metadata() -> dict:
    return {
        "thing_classes": ["person"],
        "keypoint_names": list(COCO_KEYPOINT_NAMES),
        "keypoint_flip_map": flip_map(COCO_KEYPOINT_NAMES),
        "keypoint_connection_rules": list(COCO_CONNECTION_RULES),
        "keypoint_oks_sigmas": list(COCO_OKS_SIGMAS),
    }
