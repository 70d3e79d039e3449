"""Writers for PoseTrack18 per-sequence prediction files and COCO keypoint results (atomic writes).

poseval's hard requirements (docs/POSETRACK_METRICS.md §2): one file per GT sequence with the GT file name, every
GT frame in GT order (pairing is by position), one `person` category with the 17 PoseTrack18 slot names,
a `track_id` (< 10000, unique per frame) on every person, the ears written as (0, 0, 0), joint scores in
`scores` (17, slot order). A joint is absent only when written as exactly (0, 0, 0).
"""

import re
from typing import Iterable, List, Optional, Sequence

import numpy as np

from ..data.keypoint_meta import POSETRACK18_SLOT_NAMES, POSETRACK18_SLOTS_FOR_15
from ..utils.atomic import atomic_write_json
from ..utils.boxes import keypoint_extent_boxes

__all__ = [
    "atomic_write_json",
    "posetrack18_category",
    "posetrack18_person",
    "build_posetrack18_sequence",
    "posetrack_image_entries",
    "write_posetrack18_sequence",
    "coco_keypoint_results",
    "write_coco_keypoint_results",
]

_POSETRACK_SOURCES = {"mpii": 1, "bonn": 2, "mpiinew": 3}
_IMAGE_KEYS = (
    "id",
    "file_name",
    "frame_id",
    "vid_id",
    "nframes",
    "is_labeled",
    "has_no_densepose",
    "width",
    "height",
)


def posetrack18_category() -> dict:
    return {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(POSETRACK18_SLOT_NAMES),
    }


def _to_17_slots(keypoints15: np.ndarray, joint_score_thresh: Optional[float]):
    """(15, 3) x, y, score -> flat 51 (x, y, v) with ears (0, 0, 0) and 17 slot scores.

    Predicted joints are written with v = 1: only an exact (0, 0, 0) means "absent" to poseval. Joints below
    `joint_score_thresh` (if given) are written as absent, which is what tracking (MOTA) submissions need,
    since MOTA counts every present joint whatever its score."""
    kp = np.asarray(keypoints15, dtype=np.float64).reshape(len(POSETRACK18_SLOTS_FOR_15), 3)
    slots = np.zeros((len(POSETRACK18_SLOT_NAMES), 3))
    scores = np.zeros(len(POSETRACK18_SLOT_NAMES))
    slots[list(POSETRACK18_SLOTS_FOR_15), :2] = kp[:, :2]
    slots[list(POSETRACK18_SLOTS_FOR_15), 2] = 1.0
    scores[list(POSETRACK18_SLOTS_FOR_15)] = kp[:, 2]
    if joint_score_thresh is not None:
        drop = np.zeros(len(POSETRACK18_SLOT_NAMES), dtype=bool)
        drop[list(POSETRACK18_SLOTS_FOR_15)] = kp[:, 2] < joint_score_thresh
        slots[drop] = 0.0
    return [float(v) for v in slots.reshape(-1)], [float(s) for s in scores]


def posetrack18_person(
    image_id,
    keypoints15,
    score: float,
    track_id: int,
    ann_id: Optional[int] = None,
    joint_score_thresh: Optional[float] = None,
) -> dict:
    """One PoseTrack18 prediction annotation from (15, 3) x, y, score keypoints (the model's joint order)."""
    kps, scores = _to_17_slots(keypoints15, joint_score_thresh)
    ann = {
        "image_id": image_id,
        "track_id": int(track_id),
        "category_id": 1,
        "keypoints": kps,
        "scores": scores,
        "score": float(score),
    }
    if ann_id is not None:
        ann["id"] = int(ann_id)
    return ann


def build_posetrack18_sequence(
    gt_images: Sequence[dict],
    people_per_frame: Sequence[Iterable[dict]],
    joint_score_thresh: Optional[float] = None,
) -> dict:
    """A PoseTrack18 prediction dict covering every GT frame.

    gt_images: the GT `images` entries in GT order (their ids and file names are copied);
    people_per_frame[i]: dicts with `keypoints` (15, 3) x, y, score, `score` and `track_id` for frame i
    (an empty iterable for frames without predictions)."""
    if len(gt_images) != len(people_per_frame):
        raise ValueError(
            f"{len(people_per_frame)} prediction frames for {len(gt_images)} GT images"
        )
    images, annotations = [], []
    for fi, (im, people) in enumerate(zip(gt_images, people_per_frame)):
        entry = {k: im[k] for k in _IMAGE_KEYS if k in im}
        entry.setdefault("id", fi)
        images.append(entry)
        for pi, person in enumerate(people):
            image_id = entry["id"]
            ann_id = image_id * 100 + pi if isinstance(image_id, int) else None
            annotations.append(
                posetrack18_person(
                    image_id,
                    person["keypoints"],
                    person.get("score", 1.0),
                    person.get("track_id", pi),
                    ann_id,
                    joint_score_thresh,
                )
            )
    return {"images": images, "annotations": annotations, "categories": [posetrack18_category()]}


def posetrack_image_entries(
    name: str, frame_names: List[str], height: int, width: int
) -> List[dict]:
    """PoseTrack18 `images` entries for a video that has no GT file. A PoseTrack-style name
    (`000001_mpiinew_test`) gets PoseTrack ids (T SSSSSS FFFF) and file names poseval can parse; other
    names get frame indices."""
    m = re.match(r"^(\d+)_(mpii|bonn|mpiinew)(_|$)", name)
    entries = []
    for i, fname in enumerate(frame_names):
        image_id = int(f"{_POSETRACK_SOURCES[m.group(2)]}{int(m.group(1)):06d}{i:04d}") if m else i
        entries.append(
            {
                "id": image_id,
                "frame_id": image_id,
                "vid_id": m.group(1) if m else name,
                "file_name": f"images/demo/{name}/{fname}",
                "nframes": len(frame_names),
                "is_labeled": True,
                "width": int(width),
                "height": int(height),
            }
        )
    return entries


def write_posetrack18_sequence(
    path: str,
    gt_images: Sequence[dict],
    people_per_frame: Sequence[Iterable[dict]],
    joint_score_thresh: Optional[float] = None,
) -> dict:
    data = build_posetrack18_sequence(gt_images, people_per_frame, joint_score_thresh)
    atomic_write_json(path, data)
    return data


def coco_keypoint_results(predictions: Iterable[dict]) -> List[dict]:
    """COCO keypoint results (17 PoseTrack18 slots, v = joint score, ears 0) from dicts with `image_id`,
    `keypoints` (k, 15, 3), `scores` (k,) and optional `track_ids` (k,)."""
    out = []
    slots = list(POSETRACK18_SLOTS_FOR_15)
    for pred in predictions:
        kps = np.asarray(pred["keypoints"], dtype=np.float64).reshape(-1, len(slots), 3)
        tids = pred.get("track_ids")
        for i, (kp, score) in enumerate(zip(kps, np.asarray(pred["scores"]).reshape(-1))):
            full = np.zeros((len(POSETRACK18_SLOT_NAMES), 3))
            full[slots] = kp
            x0, y0, x1, y1 = keypoint_extent_boxes(kp[None, :, :2])[0]
            res = {
                "image_id": pred["image_id"],
                "category_id": 1,
                "keypoints": [float(v) for v in full.reshape(-1)],
                "score": float(score),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            }
            if tids is not None:
                res["track_id"] = int(tids[i])
            out.append(res)
    return out


def write_coco_keypoint_results(path: str, predictions: Iterable[dict]) -> List[dict]:
    results = coco_keypoint_results(predictions)
    atomic_write_json(path, results)
    return results
