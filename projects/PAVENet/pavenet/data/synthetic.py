"""Deterministic synthetic PoseTrack: articulated figures in exact PoseTrack 2018 per-sequence format.

Each video has 1-4 front-facing stick figures (head, torso, limbs as thick segments) that walk, swing
their arms, enter and leave the frame and occlude each other over a moderately textured background.
Design choices that make a tiny model learn fast and make mistakes visible:
* person height 40-90% of the frame height, thick high-contrast limbs;
* left limbs blue, right limbs red, torso a per-person muted colour, so a left/right swap shows;
* every joint is a filled disc in its own colour (`JOINT_COLORS`), so a joint's pixel identifies it
  (the tests check the rendered colour at the JSON coordinates);
* figures face the camera, so the person's left is on the image right (as for real frontal people;
  horizontal-flip augmentation with the left/right swap stays geometrically consistent).
PoseTrack labels occluded joints too: every joint inside the image is labelled (v=1); joints outside the
image are (0, 0, 0). A few videos get a static "crowd" patch whose polygon is an ignore region.

Layout written under `root` (the dataset's image_root):
  annotations/{train,val}/<seq>.json   images/{train,val}/<seq>/000000.jpg ...   .done (parameters)
"""

import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import cv2
import numpy as np

from ..utils.boxes import keypoint_extent_boxes
from .keypoint_meta import (
    POSETRACK18_SLOT_NAMES,
    POSETRACK18_SLOTS_FOR_15,
    POSETRACK_KEYPOINT_NAMES,
)

logger = logging.getLogger(__name__)

__all__ = [
    "generate_synthetic_posetrack",
    "ensure_synthetic_dataset",
    "render_video",
    "JOINT_COLORS",
    "person_pose",
    "draw_person",
    "textured_background",
    "DEFAULT_PARAMS",
]

DEFAULT_PARAMS = dict(num_train=16, num_val=4, num_frames=24, width=256, height=192, seed=0)
GENERATOR_VERSION = 1

# RGB colour of each joint's disc (model's 15-joint order): left = blues/greens, right = reds/magentas.
JOINT_COLORS: Dict[str, tuple] = {
    "nose": (140, 70, 20),
    "head_bottom": (255, 255, 255),
    "head_top": (30, 30, 30),
    "left_shoulder": (0, 0, 255),
    "right_shoulder": (255, 0, 0),
    "left_elbow": (0, 150, 255),
    "right_elbow": (255, 140, 0),
    "left_wrist": (0, 255, 255),
    "right_wrist": (255, 255, 0),
    "left_hip": (0, 170, 0),
    "right_hip": (255, 0, 170),
    "left_knee": (0, 255, 140),
    "right_knee": (170, 0, 255),
    "left_ankle": (150, 255, 0),
    "right_ankle": (255, 130, 210),
}
LEFT_LIMB, RIGHT_LIMB, SKIN = (60, 90, 200), (200, 55, 45), (235, 195, 160)
_J = {n: i for i, n in enumerate(POSETRACK_KEYPOINT_NAMES)}
_CATEGORIES = [
    {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(POSETRACK18_SLOT_NAMES),
        "skeleton": [
            [16, 14],
            [14, 12],
            [17, 15],
            [15, 13],
            [12, 13],
            [6, 12],
            [7, 13],
            [6, 7],
            [6, 8],
            [7, 9],
            [8, 10],
            [9, 11],
            [2, 3],
            [1, 2],
            [1, 3],
            [2, 4],
            [3, 5],
            [4, 6],
            [5, 7],
        ],
    }
]


# --------------------------------------------------------------------------------------------------
# Scene model
# --------------------------------------------------------------------------------------------------
def _sample_people(rng: np.random.Generator, n_frames: int, W: int, H: int) -> List[dict]:
    people = []
    for pid in range(int(rng.integers(1, 5))):
        hp = float(rng.uniform(0.4, 0.9)) * H
        enters = rng.random() < 0.35  # walks in from (or out through) a side
        speed = float(rng.uniform(0.6, 2.2)) * (1 if rng.random() < 0.5 else -1)
        if enters:
            span = speed * (n_frames - 1)
            # start just outside one side, or start inside and leave
            x0 = (
                (-0.15 * hp if speed > 0 else W + 0.15 * hp)
                if rng.random() < 0.5
                else (W + 0.1 * hp - span if speed > 0 else -0.1 * hp - span)
            )
            speed *= 1.5
        else:
            x0 = float(rng.uniform(0.15 * W, 0.85 * W))
        margin_top, margin_bot = 0.52 * hp, 0.48 * hp
        lo, hi = margin_top + 2, H - margin_bot - 2
        y0 = float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2
        people.append(
            dict(
                track_id=pid,
                hp=hp,
                x0=float(x0),
                vx=speed,
                y0=y0,
                phase=float(rng.uniform(0, 2 * np.pi)),
                freq=float(rng.uniform(0.25, 0.5)),
                arm_amp=float(rng.uniform(0.3, 1.2)),
                arm_base=float(rng.uniform(0.15, 0.5)),
                wave=rng.random() < 0.3,
                leg_amp=float(rng.uniform(0.15, 0.45)),
                lean=float(rng.uniform(-0.08, 0.08)),
                torso=tuple(int(c) for c in rng.integers(70, 190, size=3)),
            )
        )
    # Larger (closer) people are drawn last, on top.
    return sorted(people, key=lambda p: p["hp"])


def person_pose(p: dict, t: int) -> np.ndarray:
    """(15, 2) joint positions of person p at frame t (front-facing: the person's left is image right)."""
    hp, s = p["hp"], p["phase"] + p["freq"] * t
    root = np.array([p["x0"] + p["vx"] * t, p["y0"] + 0.01 * hp * np.sin(2 * s)])
    up = np.array([np.sin(p["lean"]), -np.cos(p["lean"])])  # torso direction
    side = np.array([-up[1], up[0]])  # image-right when upright

    def limb(start, angle_from_down, length):
        # angle measured from "down" (-up), positive towards image right
        down = -up
        d = np.cos(angle_from_down) * down + np.sin(angle_from_down) * side
        return start + length * d

    J = np.zeros((15, 2))
    neck = root + 0.34 * hp * up
    J[_J["head_bottom"]] = neck
    J[_J["head_top"]] = neck + 0.155 * hp * up
    J[_J["nose"]] = neck + 0.07 * hp * up
    for sign, name in ((1, "left"), (-1, "right")):
        sh = root + 0.31 * hp * up + sign * 0.12 * hp * side
        hip = root + sign * 0.085 * hp * side
        swing = p["arm_amp"] * np.sin(s + (0 if sign > 0 else np.pi))
        a_up = sign * (p["arm_base"] + 0.25 * max(swing, -0.2))
        if p["wave"] and sign > 0:  # a raised, waving left arm
            a_up = sign * (2.2 + 0.5 * np.sin(2 * s))
        el = limb(sh, a_up, 0.17 * hp)
        wr = limb(el, a_up + sign * (0.3 + 0.4 * (0.5 + 0.5 * np.sin(s * 1.3))), 0.15 * hp)
        leg = p["leg_amp"] * np.sin(s + (np.pi if sign > 0 else 0))
        kn = limb(hip, sign * 0.08 + leg, 0.24 * hp)
        an = limb(
            kn,
            sign * 0.05 + leg - 0.3 * max(0.0, np.sin(s + (np.pi if sign > 0 else 0))),
            0.23 * hp,
        )
        J[_J[f"{name}_shoulder"]], J[_J[f"{name}_elbow"]], J[_J[f"{name}_wrist"]] = sh, el, wr
        J[_J[f"{name}_hip"]], J[_J[f"{name}_knee"]], J[_J[f"{name}_ankle"]] = hip, kn, an
    return J


def joint_radius(hp: float) -> int:
    return max(3, int(round(0.025 * hp)))


def textured_background(rng: np.random.Generator, W: int, H: int) -> np.ndarray:
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(20, 80), rng.uniform(90, 190)]]], dtype=np.uint8
    )
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    grad = np.linspace(-25, 25, H, dtype=np.float32)[:, None, None] * (
        1 if rng.random() < 0.5 else -1
    )
    img = np.broadcast_to(base, (H, W, 3)) + grad
    img = np.ascontiguousarray(img)
    for _ in range(int(rng.integers(6, 14))):  # soft low-contrast shapes
        c = base + rng.uniform(-30, 30, size=3)
        center = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(8, W // 3)), int(rng.integers(5, H // 4)))
            cv2.ellipse(
                img, center, axes, float(rng.uniform(0, 180)), 0, 360, c.tolist(), -1, cv2.LINE_AA
            )
        else:
            x2, y2 = (
                center[0] + int(rng.integers(10, W // 3)),
                center[1] + int(rng.integers(4, H // 6)),
            )
            cv2.rectangle(img, center, (x2, y2), c.tolist(), -1)
    noise = cv2.GaussianBlur(rng.normal(0, 8, size=(H, W, 1)).astype(np.float32), (0, 0), 1.5)
    img = img + noise.reshape(H, W, 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _ignore_polygon(rng: np.random.Generator, W: int, H: int) -> np.ndarray:
    cx, cy = rng.uniform(0.1 * W, 0.9 * W), rng.uniform(0.1 * H, 0.6 * H)
    n = int(rng.integers(5, 8))
    ang = np.sort(rng.uniform(0, 2 * np.pi, size=n))
    rad = rng.uniform(0.08, 0.14, size=n) * H
    pts = np.stack([cx + rad * np.cos(ang), cy + 0.8 * rad * np.sin(ang)], 1)
    return np.clip(np.round(pts), 0, [W - 1, H - 1]).astype(np.int32)


def _draw_crowd_patch(img: np.ndarray, poly: np.ndarray):
    """Hatched grey patch: stands for an unannotated crowd, as PoseTrack's ignore regions do."""
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [poly], 255)
    patch = np.full_like(img, 110)
    for k in range(-img.shape[0], img.shape[1], 6):
        cv2.line(patch, (k, 0), (k + img.shape[0], img.shape[0]), (150, 150, 150), 2)
    img[mask > 0] = patch[mask > 0]


def draw_person(img: np.ndarray, p: dict, J: np.ndarray):
    hp = p["hp"]
    th = max(3, int(round(0.06 * hp)))
    P = lambda name: tuple(int(round(v)) for v in J[_J[name]])  # noqa: E731
    # torso (per-person colour) as a filled quadrilateral
    quad = np.array(
        [P("left_shoulder"), P("right_shoulder"), P("right_hip"), P("left_hip")], np.int32
    )
    cv2.fillConvexPoly(img, quad, p["torso"], cv2.LINE_AA)
    cv2.polylines(img, [quad], True, tuple(int(c * 0.6) for c in p["torso"]), 1, cv2.LINE_AA)
    cv2.line(
        img,
        P("head_bottom"),
        ((quad[0][0] + quad[1][0]) // 2, (quad[0][1] + quad[1][1]) // 2),
        SKIN,
        th,
        cv2.LINE_AA,
    )
    for side, colour in (("left", LEFT_LIMB), ("right", RIGHT_LIMB)):
        for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist")):
            cv2.line(img, P(f"{side}_{a}"), P(f"{side}_{b}"), colour, th, cv2.LINE_AA)
    # head: skin disc between head_bottom and head_top
    top, bottom = J[_J["head_top"]], J[_J["head_bottom"]]
    centre = (top + bottom) / 2
    r = int(round(np.linalg.norm(top - bottom) / 2))
    cv2.circle(img, tuple(int(round(v)) for v in centre), r, SKIN, -1, cv2.LINE_AA)
    cv2.circle(img, tuple(int(round(v)) for v in centre), r, (90, 60, 40), 1, cv2.LINE_AA)
    jr = joint_radius(hp)
    for name in POSETRACK_KEYPOINT_NAMES:
        cv2.circle(img, P(name), jr, JOINT_COLORS[name], -1, cv2.LINE_AA)


def render_video(rng: np.random.Generator, num_frames: int, W: int, H: int):
    """Render one video. Returns (frames: list of (H, W, 3) uint8 RGB, people: list of person params in
    drawing order (last = front), poses: (num_frames, num_people, 15, 2), ignore: list of (n, 2) int polygons)."""
    bg = textured_background(rng, W, H)
    ignore = [_ignore_polygon(rng, W, H)] if rng.random() < 0.3 else []
    for poly in ignore:
        _draw_crowd_patch(bg, poly)
    people = _sample_people(rng, num_frames, W, H)
    poses = np.zeros((num_frames, len(people), 15, 2))
    frames = []
    for t in range(num_frames):
        img = bg.copy()
        for i, p in enumerate(people):
            poses[t, i] = person_pose(p, t)
            draw_person(img, p, poses[t, i])
        frames.append(img)
    return frames, people, poses, ignore


# --------------------------------------------------------------------------------------------------
# PoseTrack 2018 writer
# --------------------------------------------------------------------------------------------------
def _labelled_frames(split: str, n: int) -> List[bool]:
    if split == "train":
        return [True] * n
    # val: a dense middle block plus every 4th frame elsewhere, like PoseTrack's val/test videos
    lo, hi = n // 4, n - n // 4
    return [lo <= t < hi or t % 4 == 0 for t in range(n)]


def _write_video(root, split, num, rng, num_frames, W, H) -> int:
    seq = f"{num:06d}_synth_{split}"
    img_dir = os.path.join(root, "images", split, seq)
    os.makedirs(img_dir, exist_ok=True)
    frames, people, poses, ignore = render_video(rng, num_frames, W, H)
    labelled = _labelled_frames(split, num_frames)
    images, annotations = [], []
    params = [int(cv2.IMWRITE_JPEG_QUALITY), 95]
    if hasattr(
        cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"
    ):  # full-resolution chroma keeps small joint discs' colours
        params += [int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)]
    for t, frame in enumerate(frames):
        rel = f"images/{split}/{seq}/{t:06d}.jpg"
        cv2.imwrite(os.path.join(root, rel), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        image_id = int(f"9{num:06d}{t:04d}")
        entry = {
            "has_no_densepose": True,
            "is_labeled": labelled[t],
            "file_name": rel,
            "nframes": num_frames,
            "frame_id": image_id,
            "vid_id": f"{num:06d}",
            "id": image_id,
            "width": W,
            "height": H,
        }
        if ignore:
            entry["ignore_regions_x"] = [[int(x) for x in poly[:, 0]] for poly in ignore]
            entry["ignore_regions_y"] = [[int(y) for y in poly[:, 1]] for poly in ignore]
        images.append(entry)
        if not labelled[t]:
            continue
        for i, p in enumerate(people):
            J = poses[t, i]
            inside = (J[:, 0] >= 0) & (J[:, 0] <= W - 1) & (J[:, 1] >= 0) & (J[:, 1] <= H - 1)
            if not inside.any():
                continue
            kp17 = [0.0] * 51
            for k, slot in enumerate(POSETRACK18_SLOTS_FOR_15):
                if inside[k]:
                    kp17[3 * slot : 3 * slot + 3] = [
                        round(float(J[k, 0]), 2),
                        round(float(J[k, 1]), 2),
                        1,
                    ]
            x1, y1, x2, y2 = keypoint_extent_boxes(J[None], inside[None])[0]
            mw, mh = 0.1 * (x2 - x1) + 2, 0.1 * (y2 - y1) + 2
            head_c = (J[_J["head_top"]] + J[_J["head_bottom"]]) / 2
            hr = np.linalg.norm(J[_J["head_top"]] - J[_J["head_bottom"]]) / 2 * 1.15
            annotations.append(
                {
                    "bbox_head": [
                        round(float(head_c[0] - hr), 2),
                        round(float(head_c[1] - hr), 2),
                        round(float(2 * hr), 2),
                        round(float(2 * hr), 2),
                    ],
                    "keypoints": kp17,
                    "track_id": p["track_id"],
                    "image_id": image_id,
                    "bbox": [
                        round(float(x1 - mw), 2),
                        round(float(y1 - mh), 2),
                        round(float(x2 - x1 + 2 * mw), 2),
                        round(float(y2 - y1 + 2 * mh), 2),
                    ],
                    "scores": [],
                    "category_id": 1,
                    "id": image_id * 100 + p["track_id"],
                    "iscrowd": False,
                    "num_keypoints": int(inside.sum()),
                }
            )
    ann_dir = os.path.join(root, "annotations", split)
    os.makedirs(ann_dir, exist_ok=True)
    with open(os.path.join(ann_dir, seq + ".json"), "w") as f:
        json.dump({"categories": _CATEGORIES, "images": images, "annotations": annotations}, f)
    return len(frames)


def generate_synthetic_posetrack(
    root: str,
    num_train: int = 16,
    num_val: int = 4,
    num_frames: int = 24,
    width: int = 256,
    height: int = 192,
    seed: int = 0,
) -> str:
    """Write the dataset under `root` (overwriting files of the same names). Deterministic in all arguments."""
    for split, n, code in (("train", num_train, 0), ("val", num_val, 1)):
        for v in range(n):
            rng = np.random.default_rng([seed, code, v])
            _write_video(
                root, split, v + (0 if split == "train" else 1000), rng, num_frames, width, height
            )
    with open(os.path.join(root, ".done"), "w") as f:
        json.dump(
            dict(
                version=GENERATOR_VERSION,
                num_train=num_train,
                num_val=num_val,
                num_frames=num_frames,
                width=width,
                height=height,
                seed=seed,
            ),
            f,
        )
    return root


def ensure_synthetic_dataset(root: Optional[str] = None, **params) -> str:
    """Generate the synthetic dataset at `root` (default `$DETECTRON2_DATASETS/posetrack_synthetic`) unless a
    complete one is already there. Safe with several processes: each writes to a temporary folder and the
    first to finish renames it into place."""
    if root is None:
        root = os.path.join(
            os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "posetrack_synthetic"
        )
    if os.path.isfile(os.path.join(root, ".done")):
        return root
    kw = dict(DEFAULT_PARAMS, **params)
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    logger.info(f"Generating the synthetic PoseTrack dataset in {root} ({kw})")
    tmp = tempfile.mkdtemp(prefix=".posetrack_synthetic_tmp_", dir=parent)
    os.chmod(tmp, 0o755)
    try:
        generate_synthetic_posetrack(tmp, **kw)
        if os.path.isdir(root) and not os.path.isfile(os.path.join(root, ".done")):
            shutil.rmtree(root, ignore_errors=True)  # a stale partial folder
        try:
            os.rename(tmp, root)
        except OSError:
            if not os.path.isfile(os.path.join(root, ".done")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
