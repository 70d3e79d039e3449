"""Reading PoseTrack GT and prediction files into `Poses` (docs/POSETRACK_METRICS.md §1, §2, §3 step 1).

It owns the three file formats and every check on their content: PoseTrack 2017 ("annolist", poseval's
joint ids), PoseTrack 2018/21 per-sequence files (COCO-like `images` / `annotations` with 15 or 17
keypoint slots) and one COCO-style file holding a whole split (split per video). Predictions are paired
with the GT frames by position, so `parse_predictions` also checks that a prediction file has the GT's
frame count and belongs to the same video, and poseval's track-id rules (integers < 10000, unique within
a frame). Every error is a `PoseTrackFormatError` naming the file and the field.
"""

import glob
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.keypoint_meta import POSETRACK_KEYPOINT_NAMES, POSEVAL_ID_FOR_15, POSEVAL_JOINT_NAMES
from ..data.posetrack_files import check_posetrack18_lists, finite_numbers, is_entry_id
from ..data.posetrack_files import load_json as _load_json
from .poses import MAX_TRACK_ID, NO_TRACK_ID, GTSequence, Poses, PoseTrackFormatError

__all__ = [
    "load_json",
    "parse_posetrack",
    "read_gt",
    "read_gt_sequence",
    "split_coco_by_video",
    "parse_predictions",
    "read_predictions",
    "frame_name",
    "video_key",
]

logger = logging.getLogger(__name__)

_NAME_TO_15 = {n: i for i, n in enumerate(POSETRACK_KEYPOINT_NAMES)}
# poseval joint id (0..14) -> our joint index
_POSEVAL_ID_TO_15 = {pid: i for i, pid in enumerate(POSEVAL_ID_FOR_15)}
assert set(POSEVAL_JOINT_NAMES) == set(POSETRACK_KEYPOINT_NAMES)


def load_json(path: str) -> dict:
    return _load_json(path)


def _one(v):
    """2017 files wrap every scalar in a 1-element list (jsonlab SingletArray)."""
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            return None
        return v[0]
    return v


def video_key(file_name: str) -> str:
    # poseval/convert.py: the video of a frame is the leading number of the frame's directory name.
    return os.path.basename(os.path.dirname(str(file_name))).split("_")[0]


def _check_categories(data: dict, path: str) -> List[Optional[int]]:
    """Map each keypoint slot of the file's category to our joint index (None for ears etc.)."""
    cats = data.get("categories")
    if not isinstance(cats, list) or len(cats) != 1 or not isinstance(cats[0], dict):
        raise PoseTrackFormatError(f"{path}: 'categories' must hold exactly one category (person)")
    cat = cats[0]
    if cat.get("name") != "person":
        raise PoseTrackFormatError(
            f"{path}: the category must be named 'person', got {cat.get('name')!r}"
        )
    names = cat.get("keypoints") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PoseTrackFormatError(f"{path}: categories[0].keypoints must be a list of joint names")
    if len(names) not in (15, 17):
        raise PoseTrackFormatError(
            f"{path}: categories[0].keypoints must list 15 or 17 names, got {len(names)}"
        )
    missing = [n for n in POSETRACK_KEYPOINT_NAMES if n not in names]
    if missing:
        raise PoseTrackFormatError(f"{path}: categories[0].keypoints lacks {missing}")
    return [_NAME_TO_15.get(n) for n in names]


def _parse_posetrack18(
    data: dict, path: str
) -> Tuple[List[Poses], List[List[np.ndarray]], List[dict]]:
    """PoseTrack 2018/21 per-sequence dict -> (frames, ignore polygons, image entries)."""
    check_posetrack18_lists(data, path)
    for i, im in enumerate(data["images"]):
        _check_image_entry(im, path, i)
    slot_to_joint = _check_categories(data, path)
    n_slots = len(slot_to_joint)
    slots = np.array([s for s, j in enumerate(slot_to_joint) if j is not None])
    joints = np.array([slot_to_joint[s] for s in slots])

    images = data["images"]
    # poseval converts only the first video found in the file (grouped by the frame's directory).
    if images:
        first = video_key(images[0].get("file_name", ""))
        kept = [im for im in images if video_key(im.get("file_name", "")) == first]
        if len(kept) != len(images):
            logger.warning(
                "%s: frames of several videos; only the first (%s) is used, as poseval does",
                path,
                first,
            )
            images = kept

    by_image: Dict = {}
    for ai, ann in enumerate(data["annotations"]):
        if not is_entry_id(ann.get("image_id")):
            raise PoseTrackFormatError(
                f"{path}: annotations[{ai}]: field 'image_id' = {ann.get('image_id')!r}, "
                "expected an integer or a string"
            )
        by_image.setdefault(ann["image_id"], []).append(ann)

    frames, ignores = [], []
    for fi, im in enumerate(images):
        if "id" not in im:
            raise PoseTrackFormatError(f"{path}: images[{fi}] has no 'id'")
        anns = by_image.get(im["id"], [])
        poses = Poses.allocate(len(anns))
        for pi, ann in enumerate(anns):
            kp = ann.get("keypoints")
            if not isinstance(kp, list) or len(kp) != 3 * n_slots:
                raise PoseTrackFormatError(
                    f"{path}: annotation {pi} of image {im['id']} has {len(kp) if isinstance(kp, list) else kp!r} "
                    f"keypoint values, expected {3 * n_slots} ({n_slots} x (x, y, v))"
                )
            where = f"{path}: annotation {pi} of image {im['id']}"
            kp = np.asarray(finite_numbers(kp, where, "keypoints"), dtype=np.float64)
            kp = kp.reshape(n_slots, 3)[slots]
            # A joint is absent iff it is exactly (0, 0, 0); (x, y, 0) is a prediction / annotation.
            absent = (kp[:, 0] == 0) & (kp[:, 1] == 0) & (kp[:, 2] == 0)
            poses.xy[pi, joints] = kp[:, :2]
            poses.present[pi, joints] = ~absent
            sc = ann.get("scores")
            if sc:  # poseval: an empty or missing list means "no scores" -> MIN_SCORE fallback
                if not isinstance(sc, list) or len(sc) < n_slots:
                    raise PoseTrackFormatError(
                        f"{where} has {len(sc) if isinstance(sc, list) else sc!r} scores, expected {n_slots}"
                    )
                # NaN sorts unpredictably in the AP ranking: refused
                sc = np.asarray(finite_numbers(sc, where, "scores"), dtype=np.float64)[slots]
                poses.scores[pi, joints] = sc
            tid = ann.get("track_id")
            if tid is not None:
                poses.track_ids[pi] = _track_id(tid, path, im)
            hb = ann.get("bbox_head")
            if hb is not None and hb != []:
                if not isinstance(hb, list) or len(hb) != 4:
                    raise PoseTrackFormatError(
                        f"{where}: field 'bbox_head' = {hb!r}, expected [x, y, w, h]"
                    )
                hb = finite_numbers(hb, where, "bbox_head")
                poses.head[pi] = (hb[0], hb[1], hb[0] + hb[2], hb[1] + hb[3])
        frames.append(poses)
        polys = []
        if ("ignore_regions_x" in im) != ("ignore_regions_y" in im):
            raise PoseTrackFormatError(
                f"{path}: image {im['id']} has only one of the fields 'ignore_regions_x' and "
                "'ignore_regions_y'"
            )
        if "ignore_regions_x" in im:
            regions_x, regions_y = im["ignore_regions_x"], im["ignore_regions_y"]
            if (
                not isinstance(regions_x, list)
                or not isinstance(regions_y, list)
                or len(regions_x) != len(regions_y)
            ):
                raise PoseTrackFormatError(
                    f"{path}: image {im['id']}: fields 'ignore_regions_x' / 'ignore_regions_y' "
                    "must be lists of polygons of equal length"
                )
            for k, (xs, ys) in enumerate(zip(regions_x, regions_y)):
                xs = finite_numbers(xs, f"{path}: image {im['id']}", f"ignore_regions_x[{k}]")
                ys = finite_numbers(ys, f"{path}: image {im['id']}", f"ignore_regions_y[{k}]")
                if len(xs) != len(ys):
                    raise PoseTrackFormatError(
                        f"{path}: image {im['id']}: ignore region {k} has {len(xs)} x but "
                        f"{len(ys)} y values"
                    )
                polys.append(
                    np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1).reshape(-1, 2)
                )
        ignores.append(polys)
    return frames, ignores, images


def _check_image_entry(im: dict, path: str, i: int) -> None:
    if not is_entry_id(im.get("id")):
        raise PoseTrackFormatError(
            f"{path}: images[{i}]: field 'id' = {im.get('id')!r}, expected an integer or a string"
        )
    if not isinstance(im.get("file_name", ""), str):
        raise PoseTrackFormatError(
            f"{path}: images[{i}]: field 'file_name' = {im['file_name']!r}, expected a path"
        )


def _track_id(tid, path, frame_desc) -> int:
    tid = _one(tid)
    try:
        tid_int = int(tid)
        if isinstance(tid, bool) or tid_int != float(tid):  # 1.5 or True are not track ids
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise PoseTrackFormatError(
            f"{path}: field 'track_id' = {tid!r} is not an integer ({frame_name(frame_desc)})"
        ) from None
    if tid_int >= MAX_TRACK_ID:
        raise PoseTrackFormatError(
            f"{path}: track_id {tid_int} >= {MAX_TRACK_ID} ({frame_name(frame_desc)})"
        )
    return tid_int


def frame_name(frame) -> str:
    if isinstance(frame, dict):
        if "file_name" in frame:
            return str(frame["file_name"])
        image = frame.get("image")
        if isinstance(image, list) and image:
            image = image[0]
        if isinstance(image, dict):
            return str(image.get("name", "?"))
    return "?"


def _parse_posetrack17(
    data: dict, path: str
) -> Tuple[List[Poses], List[List[np.ndarray]], List[dict]]:
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
            has = (
                isinstance(ap, list)
                and len(ap) > 0
                and isinstance(ap[0], dict)
                and len(ap[0]) > 0
                and "point" in ap[0]
            )
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
                        raise PoseTrackFormatError(
                            f"{path}: frame {fi} person {ri}: bad point {pt!r}"
                        ) from e
                    poses.present[ri, j] = True
                    if "score" in pt:
                        poses.scores[ri, j] = float(_one(pt["score"]))
                    if not (
                        np.isfinite(poses.xy[ri, j]).all() and np.isfinite(poses.scores[ri, j])
                    ):
                        raise PoseTrackFormatError(
                            f"{path}: frame {fi} person {ri}: non-finite value in point {pt!r}"
                        )
            if "track_id" in r:
                poses.track_ids[ri] = _track_id(r["track_id"], path, fr)
            if all(k in r for k in ("x1", "y1", "x2", "y2")):
                poses.head[ri] = [float(_one(r[k])) for k in ("x1", "y1", "x2", "y2")]
        frames.append(poses)
        polys = []
        for reg in fr.get("ignore_regions") or []:
            pts = reg.get("point") or []
            polys.append(
                np.array([(float(_one(p["x"])), float(_one(p["y"]))) for p in pts]).reshape(-1, 2)
            )
        ignores.append(polys)
        images.append({"file_name": frame_name(fr), "imgnum": _one(fr.get("imgnum"))})
    return frames, ignores, images


def parse_posetrack(data: dict, path: str):
    """Detect the format (2017 if it has 'annolist', else 2018) and parse it."""
    if not isinstance(data, dict):
        raise PoseTrackFormatError(f"{path}: expected a JSON object")
    if "annolist" in data:
        return _parse_posetrack17(data, path)
    return _parse_posetrack18(data, path)


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
    frames, ignores, images = parse_posetrack(data, path)
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
        seqs.setdefault(
            name, {"images": [], "annotations": [], "categories": data.get("categories")}
        )
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
            raise PoseTrackFormatError(
                f"{path}: no *.json GT files (expected one PoseTrack JSON per sequence, "
                "or pass one COCO-style JSON file)"
            )
        return [read_gt_sequence(f) for f in files]
    if not os.path.exists(path):
        raise PoseTrackFormatError(
            f"{path}: GT path does not exist (expected a folder of per-sequence JSONs or "
            "one COCO-style JSON)"
        )
    data = load_json(path)
    if isinstance(data, dict) and "annolist" not in data and isinstance(data.get("images"), list):
        names = {
            os.path.basename(os.path.dirname(str(im.get("file_name", "")))) for im in data["images"]
        }
        if len(names) > 1:  # a whole split in one COCO-style file
            out = []
            for name, sub in split_coco_by_video(data, path).items():
                frames, ignores, images = _parse_posetrack18(sub, path)
                seq = GTSequence(name, frames, ignores, images, path)
                _check_gt(seq)
                out.append(seq)
            return out
    frames, ignores, images = parse_posetrack(data, path)
    seq = GTSequence(os.path.basename(path).split(".")[0], frames, ignores, images, path)
    _check_gt(seq)
    return [seq]


def parse_predictions(data: dict, path: str, gt: GTSequence) -> List[Poses]:
    """A prediction dict (2017 or 2018 format) for GT sequence `gt` -> list of Poses, one per GT frame.

    Checks poseval's hard rules: same number of frames as the GT (pairing is by position), unique track
    ids within a frame, track ids < 10000."""
    frames, _, images = parse_posetrack(data, path)
    if len(frames) != len(gt):
        raise PoseTrackFormatError(
            f"{path}: {len(frames)} prediction frames but the GT sequence {gt.name} ({gt.path}) has {len(gt)}; "
            "write every GT frame, in GT order (frames without people get no annotations)"
        )
    for fi, (pred_im, gt_im) in enumerate(zip(images, gt.images)):
        # Pairing is by position: a file of another sequence would be scored against this GT.
        pred_name, gt_name = frame_name(pred_im), frame_name(gt_im)
        pred_video, gt_video = video_key(pred_name), video_key(gt_name)
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
                f"({frame_name(images[fi]) if fi < len(images) else '?'})"
            )
    return frames


def read_predictions(path: str, gt: GTSequence) -> List[Poses]:
    return parse_predictions(load_json(path), path, gt)
