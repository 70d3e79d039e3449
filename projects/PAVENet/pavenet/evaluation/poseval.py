"""An independent, vectorised re-implementation of PoseTrack's official `poseval` (AP and MOTA).

Written from the rules in `docs/POSETRACK_METRICS.md` (§1-§7); no code is copied from poseval or
py-motmetrics. Only numpy (and scipy's Hungarian solver for the MOT assignment) is needed.

Internally every pose is stored in the model's 15-joint order (`keypoint_meta.POSETRACK_KEYPOINT_NAMES`);
per-joint results are keyed by those PoseTrack18 names. poseval's joint ids only matter when reading the
2017 ("annolist") format, through `keypoint_meta.POSEVAL_ID_FOR_15`.

Pipeline (docs/POSETRACK_METRICS.md §3, order matters):
  1. read GT and prediction files; predictions are paired with GT frames **by position**;
  2. keep only frames whose GT has at least one person (`is_labeled` is never read);
  3. drop persons without a point list (2017 `annopoints: []`);
  4. ignore regions: delete joints strictly inside a polygon (GT and predictions), then persons left
     without joints;
  5. per frame: PCKh@0.5 distances normalised by 0.6 x the GT head-box diagonal, score-free greedy
     person assignment, (score, label) pairs per joint, MOT inputs per joint;
  6. AP per joint pooled over all frames (VOC all-point), MOTA per joint summed over videos.
"""
import glob
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data.keypoint_meta import (
    POSETRACK_JOINT_GROUPS,
    POSETRACK_KEYPOINT_NAMES,
    POSEVAL_ID_FOR_15,
    POSEVAL_JOINT_NAMES,
)

logger = logging.getLogger(__name__)

NUM_JOINTS = len(POSETRACK_KEYPOINT_NAMES)  # 15
DIST_THRESH = 0.5  # PCKh threshold, inclusive (d <= 0.5)
HEAD_SIZE_FACTOR = 0.6  # head size = 0.6 x GT head-box diagonal
MIN_SCORE = -9999.0  # poseval's fallback joint score when a prediction carries none
MAX_TRACK_ID = 10000  # poseval asserts track_id < 10000
NO_TRACK_ID = np.iinfo(np.int64).min  # marks a person written without track_id (any int id is legal)
GROUP_NAMES: Tuple[str, ...] = tuple(POSETRACK_JOINT_GROUPS)  # Head, Shoulder, ..., Ankle
TABLE_COLUMNS: Tuple[str, ...] = GROUP_NAMES + ("Mean",)

_NAME_TO_15 = {n: i for i, n in enumerate(POSETRACK_KEYPOINT_NAMES)}
# poseval joint id (0..14) -> our joint index
_POSEVAL_ID_TO_15 = {pid: i for i, pid in enumerate(POSEVAL_ID_FOR_15)}
_GROUP_INDICES = {g: [_NAME_TO_15[n] for n in names] for g, names in POSETRACK_JOINT_GROUPS.items()}
assert set(POSEVAL_JOINT_NAMES) == set(POSETRACK_KEYPOINT_NAMES)


class PoseTrackFormatError(ValueError):
    """Bad GT or prediction input; the message names the offending file."""


# ------------------------------------------------------------------------------------------------
# Containers
# ------------------------------------------------------------------------------------------------
@dataclass
class Poses:
    """The people of one frame, in the 15-joint order.

    xy: (N, 15, 2) float64; present: (N, 15) bool (joint annotated / predicted);
    scores: (N, 15) float64 joint confidences (predictions; MIN_SCORE when missing);
    track_ids: (N,) int64, NO_TRACK_ID where the person has no track id;
    head: (N, 4) float64 GT head box x1, y1, x2, y2 (NaN when absent);
    has_points: (N,) bool, False for a 2017 person without `annopoints[0]["point"]` (dropped by cleanup).
    """

    xy: np.ndarray
    present: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    head: np.ndarray
    has_points: np.ndarray

    @staticmethod
    def empty() -> "Poses":
        return Poses.allocate(0)

    @staticmethod
    def allocate(n: int) -> "Poses":
        return Poses(
            xy=np.zeros((n, NUM_JOINTS, 2)),
            present=np.zeros((n, NUM_JOINTS), dtype=bool),
            scores=np.full((n, NUM_JOINTS), MIN_SCORE),
            track_ids=np.full((n,), NO_TRACK_ID, dtype=np.int64),
            head=np.full((n, 4), np.nan),
            has_points=np.ones((n,), dtype=bool),
        )

    def __len__(self) -> int:
        return self.xy.shape[0]

    def take(self, keep: np.ndarray) -> "Poses":
        return Poses(self.xy[keep], self.present[keep], self.scores[keep], self.track_ids[keep],
                     self.head[keep], self.has_points[keep])


@dataclass
class GTSequence:
    """One GT video: `frames[i]` are the people of frame i, `ignore[i]` its ignore polygons ((V, 2) arrays),
    `images[i]` the raw 2018-style image entry (used by the writer), `path` the source file (for messages)."""

    name: str
    frames: List[Poses]
    ignore: List[List[np.ndarray]]
    images: List[dict]
    path: str = ""

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class PoseTrackResults:
    """Per-joint metrics in percent, in the 15-joint order. `mota` is None when tracking was not evaluated."""

    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_gt: np.ndarray
    mota: Optional[np.ndarray] = None
    mot_counts: Optional[Dict[str, np.ndarray]] = None
    # poseval's other tracking columns (None without tracking): MOTP = 100 (1 - mean distance of the paired
    # joints), Prec = paired / (paired + FP), Rec = paired / objects, where "paired" counts matches and
    # switches (motmetrics' detections). MOTP follows motmetrics 1.0.2 (the one vendored with poseval).
    motp: Optional[np.ndarray] = None
    mot_precision: Optional[np.ndarray] = None
    mot_recall: Optional[np.ndarray] = None
    num_frames: int = 0
    num_sequences: int = 0

    @staticmethod
    def groups(values: np.ndarray) -> Dict[str, float]:
        """poseval's table columns: plain means over the joints of each group (a NaN joint makes the group
        NaN), and Mean/Total = the mean over the 15 joints ignoring NaNs. Mean != mean of the 7 columns."""
        out = {g: float(np.mean(values[idx])) for g, idx in _GROUP_INDICES.items()}
        finite = values[~np.isnan(values)]
        out["Mean"] = float(finite.mean()) if finite.size else float("nan")
        return out

    def summary(self) -> Dict[str, Dict[str, float]]:
        """{"AP": {Head, ..., Ankle, Mean}, "MOTA": {...}, "MOTP", "Prec", "Rec"} (tracking rows only when
        evaluated; Prec / Rec there are the tracking ones)."""
        out = {"AP": self.groups(self.ap)}
        for name, values in (("MOTA", self.mota), ("MOTP", self.motp), ("Prec", self.mot_precision),
                             ("Rec", self.mot_recall)):
            if values is not None:
                out[name] = self.groups(values)
        return out

    def to_json(self) -> dict:
        """The CLI schema: {"ap": {"per_joint", "groups", "total"}, "mota": {...}} (percent; NaN -> null)."""

        def block(values):
            groups = self.groups(values)
            return {
                "per_joint": {n: _num(v) for n, v in zip(POSETRACK_KEYPOINT_NAMES, values)},
                "groups": {g: _num(groups[g]) for g in GROUP_NAMES},
                "total": _num(groups["Mean"]),
            }

        out = {"ap": block(self.ap)}
        for name, values in (("mota", self.mota), ("motp", self.motp), ("mot_precision", self.mot_precision),
                             ("mot_recall", self.mot_recall)):
            if values is not None:
                out[name] = block(values)
        return out


def _num(v) -> Optional[float]:
    v = float(v)
    return None if math.isnan(v) else v


def format_table(results: PoseTrackResults) -> str:
    """A fixed-width table in the paper's column order (Head, Shoulder, ..., Ankle, Mean)."""
    width = 9
    lines = ["Metric".ljust(6) + "".join(c.rjust(width) for c in TABLE_COLUMNS)]
    for metric, groups in results.summary().items():
        lines.append(metric.ljust(6) + "".join(f"{groups[c]:{width}.2f}" for c in TABLE_COLUMNS))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Reading files
# ------------------------------------------------------------------------------------------------
def load_json(path: str) -> dict:
    try:
        with open(path, "r") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise PoseTrackFormatError(f"{path}: malformed JSON ({e})") from e
    except OSError as e:
        raise PoseTrackFormatError(f"{path}: cannot read ({e})") from e


def _one(v):
    """2017 files wrap every scalar in a 1-element list (jsonlab SingletArray)."""
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            return None
        return v[0]
    return v


def _video_key(file_name: str) -> str:
    # poseval/convert.py: the video of a frame is the leading number of the frame's directory name.
    return os.path.basename(os.path.dirname(str(file_name))).split("_")[0]


def _check_categories(data: dict, path: str) -> List[Optional[int]]:
    """Map each keypoint slot of the file's category to our joint index (None for ears etc.)."""
    cats = data.get("categories")
    if not isinstance(cats, list) or len(cats) != 1:
        raise PoseTrackFormatError(f"{path}: 'categories' must hold exactly one category (person)")
    cat = cats[0]
    if cat.get("name") != "person":
        raise PoseTrackFormatError(f"{path}: the category must be named 'person', got {cat.get('name')!r}")
    names = cat.get("keypoints") or []
    if len(names) not in (15, 17):
        raise PoseTrackFormatError(f"{path}: categories[0].keypoints must list 15 or 17 names, got {len(names)}")
    missing = [n for n in POSETRACK_KEYPOINT_NAMES if n not in names]
    if missing:
        raise PoseTrackFormatError(f"{path}: categories[0].keypoints lacks {missing}")
    return [_NAME_TO_15.get(n) for n in names]


def _parse_posetrack18(data: dict, path: str, is_gt: bool) -> Tuple[List[Poses], List[List[np.ndarray]], List[dict]]:
    """PoseTrack 2018/21 per-sequence dict -> (frames, ignore polygons, image entries)."""
    if not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise PoseTrackFormatError(
            f"{path}: expected PoseTrack18 'images' and 'annotations' lists (got fields {sorted(data)}); a "
            "sequence without people has \"annotations\": []")
    slot_to_joint = _check_categories(data, path)
    n_slots = len(slot_to_joint)
    slots = np.array([s for s, j in enumerate(slot_to_joint) if j is not None])
    joints = np.array([slot_to_joint[s] for s in slots])

    images = data["images"]
    # poseval converts only the first video found in the file (grouped by the frame's directory).
    if images:
        first = _video_key(images[0].get("file_name", ""))
        kept = [im for im in images if _video_key(im.get("file_name", "")) == first]
        if len(kept) != len(images):
            logger.warning("%s: frames of several videos; only the first (%s) is used, as poseval does", path, first)
            images = kept

    by_image: Dict = {}
    for ann in data.get("annotations", []):
        by_image.setdefault(ann.get("image_id"), []).append(ann)

    frames, ignores = [], []
    for fi, im in enumerate(images):
        if "id" not in im:
            raise PoseTrackFormatError(f"{path}: images[{fi}] has no 'id'")
        anns = by_image.get(im["id"], [])
        poses = Poses.allocate(len(anns))
        for pi, ann in enumerate(anns):
            kp = ann.get("keypoints")
            if kp is None or len(kp) != 3 * n_slots:
                raise PoseTrackFormatError(
                    f"{path}: annotation {pi} of image {im['id']} has {0 if kp is None else len(kp)} keypoint "
                    f"values, expected {3 * n_slots} ({n_slots} x (x, y, v))"
                )
            try:
                kp = np.asarray(kp, dtype=np.float64).reshape(n_slots, 3)[slots]
            except (TypeError, ValueError) as e:
                raise PoseTrackFormatError(f"{path}: non-numeric keypoints in image {im['id']}: {e}") from e
            if not np.isfinite(kp).all():
                raise PoseTrackFormatError(
                    f"{path}: annotation {pi} of image {im['id']}: non-finite value in field 'keypoints'")
            # A joint is absent iff it is exactly (0, 0, 0); (x, y, 0) is a prediction / annotation.
            absent = (kp[:, 0] == 0) & (kp[:, 1] == 0) & (kp[:, 2] == 0)
            poses.xy[pi, joints] = kp[:, :2]
            poses.present[pi, joints] = ~absent
            sc = ann.get("scores")
            if sc:  # poseval: an empty or missing list means "no scores" -> MIN_SCORE fallback
                if len(sc) < n_slots:
                    raise PoseTrackFormatError(
                        f"{path}: annotation {pi} of image {im['id']} has {len(sc)} scores, expected {n_slots}"
                    )
                try:
                    sc = np.asarray(sc, dtype=np.float64)[slots]
                except (TypeError, ValueError) as e:
                    raise PoseTrackFormatError(f"{path}: annotation {pi} of image {im['id']}: field 'scores': {e}") from e
                if not np.isfinite(sc).all():  # NaN sorts unpredictably in the AP ranking
                    raise PoseTrackFormatError(
                        f"{path}: annotation {pi} of image {im['id']}: non-finite value in field 'scores'")
                poses.scores[pi, joints] = sc
            tid = ann.get("track_id")
            if tid is not None:
                poses.track_ids[pi] = _track_id(tid, path, im)
            hb = ann.get("bbox_head")
            if hb is not None and len(hb) == 4:
                poses.head[pi] = (hb[0], hb[1], hb[0] + hb[2], hb[1] + hb[3])
        frames.append(poses)
        polys = []
        if "ignore_regions_x" in im and "ignore_regions_y" in im:
            for xs, ys in zip(im["ignore_regions_x"], im["ignore_regions_y"]):
                polys.append(np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1).reshape(-1, 2))
        ignores.append(polys)
    return frames, ignores, images


def _track_id(tid, path, frame_desc) -> int:
    tid = _one(tid)
    try:
        tid_int = int(tid)
        if isinstance(tid, bool) or tid_int != float(tid):  # 1.5 or True are not track ids
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise PoseTrackFormatError(
            f"{path}: field 'track_id' = {tid!r} is not an integer ({_frame_name(frame_desc)})") from None
    if tid_int >= MAX_TRACK_ID:
        raise PoseTrackFormatError(f"{path}: track_id {tid_int} >= {MAX_TRACK_ID} ({_frame_name(frame_desc)})")
    return tid_int


def _frame_name(frame) -> str:
    if isinstance(frame, dict):
        if "file_name" in frame:
            return str(frame["file_name"])
        image = frame.get("image")
        if isinstance(image, list) and image:
            image = image[0]
        if isinstance(image, dict):
            return str(image.get("name", "?"))
    return "?"


def _parse_posetrack17(data: dict, path: str, is_gt: bool) -> Tuple[List[Poses], List[List[np.ndarray]], List[dict]]:
    """PoseTrack 2017 'annolist' dict -> (frames, ignore polygons, 2018-style image entries)."""
    annolist = data.get("annolist")
    if not isinstance(annolist, list):
        raise PoseTrackFormatError(f"{path}: 'annolist' must be a list")
    frames, ignores, images = [], [], []
    for fi, fr in enumerate(annolist):
        rects = fr.get("annorect") or []
        poses = Poses.allocate(len(rects))
        for ri, r in enumerate(rects):
            ap = r.get("annopoints")
            # poseval's rectHasPoints: annopoints non-empty, annopoints[0] non-empty with a "point" key.
            has = isinstance(ap, list) and len(ap) > 0 and isinstance(ap[0], dict) and len(ap[0]) > 0 \
                and "point" in ap[0]
            poses.has_points[ri] = has
            if has:
                for pt in ap[0]["point"] or []:
                    pid = _one(pt.get("id"))
                    if pid is None:
                        continue
                    j = _POSEVAL_ID_TO_15.get(int(pid))
                    if j is None or poses.present[ri, j]:
                        continue  # poseval takes the first point with a given id
                    try:
                        poses.xy[ri, j] = (float(_one(pt["x"])), float(_one(pt["y"])))
                    except (KeyError, TypeError, ValueError) as e:
                        raise PoseTrackFormatError(f"{path}: frame {fi} person {ri}: bad point {pt!r}") from e
                    poses.present[ri, j] = True
                    if "score" in pt:
                        poses.scores[ri, j] = float(_one(pt["score"]))
                    if not (np.isfinite(poses.xy[ri, j]).all() and np.isfinite(poses.scores[ri, j])):
                        raise PoseTrackFormatError(f"{path}: frame {fi} person {ri}: non-finite value in point {pt!r}")
            if "track_id" in r:
                poses.track_ids[ri] = _track_id(r["track_id"], path, fr)
            if all(k in r for k in ("x1", "y1", "x2", "y2")):
                poses.head[ri] = [float(_one(r[k])) for k in ("x1", "y1", "x2", "y2")]
        frames.append(poses)
        polys = []
        for reg in fr.get("ignore_regions") or []:
            pts = reg.get("point") or []
            polys.append(np.array([(float(_one(p["x"])), float(_one(p["y"]))) for p in pts]).reshape(-1, 2))
        ignores.append(polys)
        images.append({"file_name": _frame_name(fr), "imgnum": _one(fr.get("imgnum"))})
    return frames, ignores, images


def parse_posetrack(data: dict, path: str, is_gt: bool):
    """Detect the format (2017 if it has 'annolist', else 2018) and parse it."""
    if not isinstance(data, dict):
        raise PoseTrackFormatError(f"{path}: expected a JSON object")
    if "annolist" in data:
        return _parse_posetrack17(data, path, is_gt)
    return _parse_posetrack18(data, path, is_gt)


def _check_gt(seq: GTSequence) -> None:
    for fi, poses in enumerate(seq.frames):
        bad = poses.present.any(axis=1) & np.isnan(poses.head).any(axis=1)
        if bad.any():
            raise PoseTrackFormatError(
                f"{seq.path}: GT person {int(np.nonzero(bad)[0][0])} of frame {fi} has joints but no head box "
                "(bbox_head / x1..y2); poseval needs it for the PCKh normalisation"
            )


def read_gt_sequence(path: str, name: Optional[str] = None) -> GTSequence:
    """One GT file (2017 or 2018/21 format) -> GTSequence. `name` defaults to the file stem."""
    data = load_json(path)
    frames, ignores, images = parse_posetrack(data, path, is_gt=True)
    seq = GTSequence(name or os.path.basename(path).split(".")[0], frames, ignores, images, path)
    _check_gt(seq)
    return seq


def split_coco_by_video(data: dict, path: str = "<coco json>") -> Dict[str, dict]:
    """One COCO-style PoseTrack JSON (e.g. PoseWarper/DCPose `posetrack_val.json`) -> per-sequence 2018 dicts.

    The sequence name is the frame's directory (e.g. `003418_mpii_test`); frames keep their temporal order
    (sorted by file name, which is zero-padded)."""
    if not isinstance(data.get("images"), list):
        raise PoseTrackFormatError(f"{path}: expected a COCO-style 'images' list")
    seqs: Dict[str, dict] = {}
    for im in data["images"]:
        name = os.path.basename(os.path.dirname(str(im.get("file_name", ""))))
        seqs.setdefault(name, {"images": [], "annotations": [], "categories": data.get("categories")})
        seqs[name]["images"].append(im)
    owner = {im["id"]: n for n, s in seqs.items() for im in s["images"]}
    for ann in data.get("annotations", []):
        n = owner.get(ann.get("image_id"))
        if n is not None:
            seqs[n]["annotations"].append(ann)
    for s in seqs.values():
        s["images"].sort(key=lambda im: str(im.get("file_name", "")))
    return dict(sorted(seqs.items()))


def read_gt(path: str) -> List[GTSequence]:
    """GT from a directory of per-sequence files (2017 or 2018/21; sorted by name) or one COCO-style JSON."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.json")))
        if not files:
            raise PoseTrackFormatError(f"{path}: no *.json GT files (expected one PoseTrack JSON per sequence, "
                                       "or pass one COCO-style JSON file)")
        return [read_gt_sequence(f) for f in files]
    if not os.path.exists(path):
        raise PoseTrackFormatError(f"{path}: GT path does not exist (expected a folder of per-sequence JSONs or "
                                   "one COCO-style JSON)")
    data = load_json(path)
    if isinstance(data, dict) and "annolist" not in data and isinstance(data.get("images"), list):
        names = {os.path.basename(os.path.dirname(str(im.get("file_name", "")))) for im in data["images"]}
        if len(names) > 1:  # a whole split in one COCO-style file
            out = []
            for name, sub in split_coco_by_video(data, path).items():
                frames, ignores, images = _parse_posetrack18(sub, path, is_gt=True)
                seq = GTSequence(name, frames, ignores, images, path)
                _check_gt(seq)
                out.append(seq)
            return out
    frames, ignores, images = parse_posetrack(data, path, is_gt=True)
    seq = GTSequence(os.path.basename(path).split(".")[0], frames, ignores, images, path)
    _check_gt(seq)
    return [seq]


def parse_predictions(data: dict, path: str, gt: GTSequence) -> List[Poses]:
    """A prediction dict (2017 or 2018 format) for GT sequence `gt` -> list of Poses, one per GT frame.

    Checks poseval's hard rules: same number of frames as the GT (pairing is by position), unique track
    ids within a frame, track ids < 10000."""
    frames, _, images = parse_posetrack(data, path, is_gt=False)
    if len(frames) != len(gt):
        raise PoseTrackFormatError(
            f"{path}: {len(frames)} prediction frames but the GT sequence {gt.name} ({gt.path}) has {len(gt)}; "
            "write every GT frame, in GT order (frames without people get no annotations)"
        )
    for fi, (pred_im, gt_im) in enumerate(zip(images, gt.images)):
        # Pairing is by position: a file of another sequence would be scored against this GT.
        pred_name, gt_name = _frame_name(pred_im), _frame_name(gt_im)
        pred_video, gt_video = _video_key(pred_name), _video_key(gt_name)
        if pred_video and gt_video and pred_video != gt_video:
            raise PoseTrackFormatError(
                f"{path}: frame {fi} is {pred_name}, of video {pred_video}, but GT sequence {gt.name} ({gt.path}) "
                f"is video {gt_video} ({gt_name}): the prediction file belongs to another sequence"
            )
    for fi, poses in enumerate(frames):
        tids = poses.track_ids[poses.track_ids != NO_TRACK_ID]
        if np.unique(tids).size != tids.size:
            vals, counts = np.unique(tids, return_counts=True)
            raise PoseTrackFormatError(
                f"{path}: non-unique track ids {vals[counts > 1].tolist()} in frame {fi} "
                f"({_frame_name(images[fi]) if fi < len(images) else '?'})"
            )
    return frames


def read_predictions(path: str, gt: GTSequence) -> List[Poses]:
    return parse_predictions(load_json(path), path, gt)


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------
def points_strictly_inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(M, 2) points, (V, 2) polygon -> (M,) bool, True iff strictly inside (the edge is outside).

    Even-odd ray crossing, like shapely's `Polygon.contains` on a point. Polygons with fewer than 3
    vertices contain nothing (shapely would refuse to build them)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if poly.shape[0] < 3 or points.shape[0] == 0:
        return np.zeros(points.shape[0], dtype=bool)
    px, py = points[:, 0:1], points[:, 1:2]
    ax, ay = poly[None, :, 0], poly[None, :, 1]
    nxt = np.roll(poly, -1, axis=0)
    bx, by = nxt[None, :, 0], nxt[None, :, 1]
    straddle = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
    inside = (np.count_nonzero(straddle & (px < x_cross), axis=1) % 2) == 1
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    on_edge = (cross == 0) & (px >= np.minimum(ax, bx)) & (px <= np.maximum(ax, bx)) \
        & (py >= np.minimum(ay, by)) & (py <= np.maximum(ay, by))
    return inside & ~on_edge.any(axis=1)


def _remove_ignored(poses: Poses, polys: List[np.ndarray]) -> Poses:
    """Delete joints strictly inside any polygon, then every person left without joints (even one that had
    none to begin with, as poseval does)."""
    if len(poses) == 0:
        return poses
    pts = poses.xy.reshape(-1, 2)
    inside = np.zeros(pts.shape[0], dtype=bool)
    for poly in polys:
        inside |= points_strictly_inside(pts, poly)
    present = poses.present & ~inside.reshape(poses.present.shape)
    out = Poses(poses.xy, present, poses.scores, poses.track_ids, poses.head, poses.has_points)
    return out.take(present.any(axis=1))


def prepare_frame(gt: Poses, pred: Poses, polys: List[np.ndarray]) -> Tuple[Poses, Poses]:
    """docs/POSETRACK_METRICS.md §3 steps 4-5 for one frame that is evaluated (its GT had people)."""
    gt = gt.take(gt.has_points)
    pred = pred.take(pred.has_points)
    if polys:
        gt = _remove_ignored(gt, polys)
        pred = _remove_ignored(pred, polys)
    return gt, pred


# ------------------------------------------------------------------------------------------------
# Matching
# ------------------------------------------------------------------------------------------------
def pckh_distances(gt: Poses, pred: Poses) -> np.ndarray:
    """(P, G, 15) normalised distances ||pred - gt|| / (0.6 x GT head diagonal); inf where either joint is
    absent. A zero-size head box gives inf/NaN, which never matches (as in poseval)."""
    head = gt.head
    head_size = HEAD_SIZE_FACTOR * np.hypot(head[:, 2] - head[:, 0], head[:, 3] - head[:, 1])  # (G,)
    diff = pred.xy[:, None] - gt.xy[None]  # (P, G, 15, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.sqrt((diff ** 2).sum(-1)) / head_size[None, :, None]
    both = pred.present[:, None, :] & gt.present[None, :, :]
    return np.where(both, d, np.inf)


def assign_people(match: np.ndarray, gt_present: np.ndarray) -> np.ndarray:
    """poseval's greedy, score-free person assignment.

    match: (P, G, 15) bool; gt_present: (G, 15) bool. Returns (P,) the GT index assigned to each
    prediction, -1 if none. Each prediction keeps only its best GT (first index on ties); each GT then takes
    the prediction with the largest remaining PCKh (first on ties); a 0 PCKh leaves the GT unmatched, and a
    prediction that lost its preferred GT is not re-assigned."""
    n_pred, n_gt = match.shape[:2]
    pck = match.sum(axis=2).astype(np.float64)  # (P, G)
    n_ann = gt_present.sum(axis=1)  # joints annotated in the GT, not joints in common
    pck = np.where(n_ann[None, :] > 0, pck / np.maximum(n_ann, 1)[None, :], pck)
    best = np.argmax(pck, axis=1)
    keep = np.zeros_like(pck, dtype=bool)
    keep[np.arange(n_pred), best] = True
    pck = np.where(keep, pck, 0.0)
    pred_for_gt = np.argmax(pck, axis=0)  # (G,)
    matched = pck.max(axis=0) > 0
    assigned = np.full(n_pred, -1, dtype=np.int64)
    assigned[pred_for_gt[matched]] = np.nonzero(matched)[0]
    return assigned


class MOTAccumulator:
    """Per-joint, per-video CLEAR-MOT event counter with py-motmetrics' update semantics.

    Each frame: (1) keep last pairings that are still allowed (finite distance), (2) min-cost assignment of
    the rest with maximum cardinality (NaN = may not pair), a pairing that differs from the object's previous
    one is a switch (no time limit), (3) unpaired objects are misses, unpaired hypotheses false positives."""

    def __init__(self):
        self.pairing: Dict[int, int] = {}
        self.misses = self.switches = self.false_positives = self.objects = self.matches = 0
        self.total_distance = 0.0  # sum of the paired (matched or switched) distances, for MOTP

    def update(self, oids: np.ndarray, hids: np.ndarray, dist: np.ndarray) -> None:
        """oids (No,), hids (Nh,), dist (No, Nh) with NaN for forbidden pairs."""
        n_o, n_h = len(oids), len(hids)
        self.objects += n_o
        if n_o == 0 or n_h == 0:
            self.misses += n_o
            self.false_positives += n_h
            return
        dist = np.array(dist, dtype=np.float64).reshape(n_o, n_h)
        o_done = [False] * n_o
        h_done = [False] * n_h
        oids = [int(o) for o in oids]
        hids = [int(h) for h in hids]
        if len(set(hids)) == n_h:  # the usual case (prediction ids are unique per frame)
            h_index = {h: j for j, h in enumerate(hids)}
        else:  # motmetrics pairs with the first still-free hypothesis carrying that id
            h_index = None
        n_done = 0
        for i, o in enumerate(oids):
            h_prev = self.pairing.get(o)
            if h_prev is None:
                continue
            if h_index is not None:
                j = h_index.get(h_prev)
                j = None if j is None or h_done[j] else j
            else:
                j = next((j for j, h in enumerate(hids) if h == h_prev and not h_done[j]), None)
            if j is not None and math.isfinite(dist[i, j]):
                o_done[i] = h_done[j] = True
                self.matches += 1
                self.total_distance += float(dist[i, j])
                n_done += 1
        if n_done < min(n_o, n_h):
            if n_done:
                dist[np.array(o_done), :] = np.nan
                dist[:, np.array(h_done)] = np.nan
            valid = np.isfinite(dist)
            if valid.any():
                # Forbidden pairs get a cost so high that any solution using one is worse than one without.
                large = 2 * min(dist.shape) * (np.abs(dist[valid]).max() + 1) + 1
                rows, cols = linear_sum_assignment(np.where(valid, dist, large))
                for i, j in zip(rows.tolist(), cols.tolist()):
                    if not valid[i, j]:
                        continue
                    o, h = oids[i], hids[j]
                    if o in self.pairing and self.pairing[o] != h:
                        self.switches += 1
                    else:
                        self.matches += 1
                    self.pairing[o] = h
                    self.total_distance += float(dist[i, j])
                    o_done[i] = h_done[j] = True
        self.misses += n_o - sum(o_done)
        self.false_positives += n_h - sum(h_done)


_DUMMY = (np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.full((1, 1), np.nan))


def _voc_ap(scores: np.ndarray, labels: np.ndarray, n_gt: float) -> Tuple[float, float, float]:
    """VOC all-point AP (percent), last precision and recall (percent). No predictions -> 0; no GT -> NaN."""
    if scores.size == 0:
        return 0.0, 0.0, 0.0
    order = np.argsort(scores)[::-1]  # poseval's descending sort (numpy's default, unstable on ties)
    tp = np.cumsum(labels[order].astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / n_gt
    prec = tp / np.arange(1, tp.size + 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    ap = float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))
    return 100.0 * ap, 100.0 * float(prec[-1]), 100.0 * float(rec[-1])


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
def evaluate(gt_seqs: Sequence[GTSequence], predictions: Sequence[Sequence[Poses]],
             eval_track: bool = True) -> PoseTrackResults:
    """AP (and MOTA when `eval_track`) of `predictions[s][i]` (the people predicted in frame i of GT
    sequence s) against `gt_seqs`. Frame counts must match (see `parse_predictions`)."""
    if len(gt_seqs) != len(predictions):
        raise ValueError(f"{len(gt_seqs)} GT sequences but {len(predictions)} prediction sequences")
    score_chunks: List[np.ndarray] = []  # per evaluated frame: (P, 15) scores
    label_chunks: List[np.ndarray] = []  # (P, 15) labels
    has_chunks: List[np.ndarray] = []  # (P, 15) joint predicted
    n_gt = np.zeros(NUM_JOINTS)
    counts = {k: np.zeros(NUM_JOINTS, dtype=np.int64) for k in ("misses", "switches", "false_positives",
                                                                  "objects", "matches")}
    total_distance = np.zeros(NUM_JOINTS)
    n_frames = 0
    for seq, pred_frames in zip(gt_seqs, predictions):
        if len(pred_frames) != len(seq):
            raise PoseTrackFormatError(
                f"{seq.path}: {len(pred_frames)} prediction frames for {len(seq)} GT frames of {seq.name}")
        # Only frames whose GT has people are evaluated; predictions elsewhere are ignored entirely.
        frame_ids = [i for i, f in enumerate(seq.frames) if len(f) > 0]
        n_frames += len(frame_ids)
        if eval_track and len(frame_ids) == 1:
            logger.warning("%s: only one evaluated frame; poseval's tracking evaluation would crash on it "
                           "(it skips the last frame), so it adds nothing to MOTA", seq.name)
        accs = [MOTAccumulator() for _ in range(NUM_JOINTS)] if eval_track else None
        for t, fi in enumerate(frame_ids):
            gt, pred = prepare_frame(seq.frames[fi], pred_frames[fi], seq.ignore[fi])
            n_gt += gt.present.sum(axis=0)
            feed_mot = eval_track and t < len(frame_ids) - 1  # poseval skips each video's last frame
            if len(pred) == 0:
                if feed_mot:
                    for acc in accs:
                        acc.update(*_DUMMY)
                continue
            if len(gt) == 0:  # every predicted joint is a false positive
                labels = np.zeros((len(pred), NUM_JOINTS), dtype=bool)
                if feed_mot:
                    for acc in accs:
                        acc.update(*_DUMMY)
            else:
                d = pckh_distances(gt, pred)  # (P, G, 15)
                match = d <= DIST_THRESH
                assigned = assign_people(match, gt.present)
                rows = np.arange(len(pred))
                labels = np.where((assigned >= 0)[:, None], match[rows, np.maximum(assigned, 0)], False)
                if feed_mot:
                    for k, acc in enumerate(accs):
                        gi = np.nonzero(gt.present[:, k])[0]
                        pi = np.nonzero(pred.present[:, k])[0]
                        dk = d[pi][:, gi, k].T  # (objects, hypotheses)
                        dk = np.where(dk <= DIST_THRESH, dk, np.nan)
                        acc.update(gt.track_ids[gi], pred.track_ids[pi], dk)
            score_chunks.append(pred.scores)
            label_chunks.append(labels)
            has_chunks.append(pred.present)
        if eval_track:
            for k, acc in enumerate(accs):
                for name in counts:
                    counts[name][k] += getattr(acc, name)
                total_distance[k] += acc.total_distance

    ap = np.zeros(NUM_JOINTS)
    pre = np.zeros(NUM_JOINTS)
    rec = np.zeros(NUM_JOINTS)
    if score_chunks:
        scores = np.concatenate(score_chunks)
        labels = np.concatenate(label_chunks)
        has = np.concatenate(has_chunks)
        for k in range(NUM_JOINTS):
            sel = has[:, k]
            ap[k], pre[k], rec[k] = _voc_ap(scores[sel, k], labels[sel, k], n_gt[k])

    mot = {}
    if eval_track:
        objects = counts["objects"].astype(np.float64)
        paired = (counts["matches"] + counts["switches"]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mot["mota"] = 100.0 * (1.0 - (counts["misses"] + counts["switches"] + counts["false_positives"])
                                   / np.where(objects > 0, objects, np.nan))
            mot["motp"] = 100.0 * (1.0 - total_distance / np.where(paired > 0, paired, np.nan))
            denom = paired + counts["false_positives"]
            mot["mot_precision"] = 100.0 * paired / np.where(denom > 0, denom, np.nan)
            mot["mot_recall"] = 100.0 * paired / np.where(objects > 0, objects, np.nan)
    return PoseTrackResults(ap=ap, precision=pre, recall=rec, num_gt=n_gt,
                            mot_counts=counts if eval_track else None, num_frames=n_frames,
                            num_sequences=len(gt_seqs), **mot)


def check_track_ids(gt_seqs: Sequence[GTSequence], predictions: Sequence[Sequence[Poses]],
                    pred_paths: Optional[Sequence[str]] = None) -> None:
    """Tracking needs a track id on every person (GT and predictions); raise naming the file otherwise."""
    for si, (seq, frames) in enumerate(zip(gt_seqs, predictions)):
        for fi, (g, p) in enumerate(zip(seq.frames, frames)):
            frame = _frame_name(seq.images[fi]) if fi < len(seq.images) else "?"
            if (g.track_ids == NO_TRACK_ID).any():
                raise PoseTrackFormatError(
                    f"{seq.path}: GT person {int(np.argmax(g.track_ids == NO_TRACK_ID))} without track_id in frame "
                    f"{fi} ({frame}); MOTA needs field 'track_id' on every person: evaluate AP only (--no-track)")
            if (p.track_ids == NO_TRACK_ID).any():
                where = pred_paths[si] if pred_paths else f"predictions for {seq.name}"
                raise PoseTrackFormatError(
                    f"{where}: person {int(np.argmax(p.track_ids == NO_TRACK_ID))} without track_id in frame {fi} "
                    f"({frame}); tracking (MOTA) needs field 'track_id' on every person: write track ids, or "
                    "evaluate AP only (--no-track; TEST.POSETRACK.EVAL_TRACKING False)")


def evaluate_dirs(gt_path: str, pred_dir: str, eval_track: bool = True) -> PoseTrackResults:
    """poseval over a GT directory (or one COCO-style GT JSON) and a directory of prediction files named like
    the GT sequences. A missing prediction file is warned about and its frames count as misses."""
    if not os.path.isdir(pred_dir):
        raise PoseTrackFormatError(f"{pred_dir}: prediction directory does not exist")
    gt_seqs = read_gt(gt_path)
    if not any(len(poses) for seq in gt_seqs for poses in seq.frames):
        raise PoseTrackFormatError(f"{gt_path}: no GT frame has a person ({len(gt_seqs)} sequences), so nothing "
                                   "can be evaluated; expected annotated frames (field 'annotations')")
    written = sorted(glob.glob(os.path.join(pred_dir, "*.json")))
    if not written:
        raise PoseTrackFormatError(
            f"{pred_dir}: no *.json prediction files; expected one per GT sequence, named like the GT files "
            f"(e.g. {gt_seqs[0].name}.json)")
    if not any(os.path.isfile(os.path.join(pred_dir, seq.name + ".json")) for seq in gt_seqs):
        raise PoseTrackFormatError(
            f"{pred_dir}: none of its {len(written)} prediction files is named like a GT sequence of {gt_path} "
            f"(found {', '.join(os.path.basename(w) for w in written[:3])}; expected e.g. {gt_seqs[0].name}.json): "
            "wrong folder or split?")
    preds, paths = [], []
    for seq in gt_seqs:
        path = os.path.join(pred_dir, seq.name + ".json")
        paths.append(path)
        if not os.path.isfile(path):
            msg = f"{path}: prediction file missing; its {len(seq)} frames count as misses"
            logger.warning(msg)
            warnings.warn(msg)
            preds.append([Poses.empty() for _ in range(len(seq))])
            continue
        preds.append(read_predictions(path, seq))
    if eval_track:
        check_track_ids(gt_seqs, preds, paths)
    return evaluate(gt_seqs, preds, eval_track=eval_track)


def predictions_from_arrays(keypoints: np.ndarray, track_ids: Optional[Iterable[int]] = None) -> Poses:
    """(N, 15, 3) x, y, score in the 15-joint order (+ optional (N,) track ids) -> Poses. Every joint is
    a prediction unless it is exactly (0, 0, 0), as in the written files."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    poses = Poses.allocate(kp.shape[0])
    poses.xy[:] = kp[..., :2]
    poses.scores[:] = kp[..., 2]
    poses.present[:] = ~((kp[..., 0] == 0) & (kp[..., 1] == 0) & (kp[..., 2] == 0))
    if track_ids is not None:
        poses.track_ids[:] = np.asarray(list(track_ids), dtype=np.int64)
    return poses
