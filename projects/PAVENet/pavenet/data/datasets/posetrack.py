"""PoseTrack 2017 / 2018 / 21 loaders: one detectron2 dataset dict per (labelled) frame.

Two input layouts (docs/POSETRACK_METRICS.md §1, docs/REFERENCE.md §12):
* a directory of per-sequence PoseTrack18/21 JSONs (`images` = every frame of the video in order,
  `annotations` only on labelled frames, 17 keypoint slots with empty ears);
* one combined COCO-style JSON (PoseWarper/DCPose `posetrack_{train,val}[_fixed].json`) holding the
  labelled frames of every video; the video's full frame list is rebuilt from `nframes` and the frame
  naming (2017: 1-based, 8 digits; 2018/21: 0-based, 6 digits). Keypoints: 17 slots or the "fixed" 15.

Every dict follows the data-layer contract (see `load_posetrack_video_dicts`), so a clip is built from
`video_file_names[frame_index +- t]` without parsing file names.
"""

import logging
import os
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..keypoint_meta import NUM_POSETRACK_KEYPOINTS, POSETRACK18_SLOTS_FOR_15, posetrack_metadata
from ..posetrack_files import (
    PoseTrackFormatError,
    check_posetrack18_lists,
    finite_numbers,
    is_entry_id,
    load_json,
)

logger = logging.getLogger(__name__)

__all__ = [
    "load_posetrack_video_dicts",
    "register_posetrack",
    "read_json",
    "posetrack_frame_naming",
]


def read_json(path: str):
    """json.load with errors that name the file (missing or truncated files are common)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PoseTrack annotation file not found: {path}")
    return load_json(path)


def posetrack_frame_naming(file_name: str):
    """(frame_number, n_digits, base) of a PoseTrack frame path: 8 digits -> 2017 (1-based), else 0-based."""
    stem = os.path.splitext(os.path.basename(file_name))[0]
    if not stem.isdigit():
        raise ValueError(f"frame file name {file_name!r} is not a zero-padded frame number")
    return int(stem), len(stem), (1 if len(stem) == 8 else 0)


def _keypoints_15(kpts, where: str) -> List[float]:
    """17-slot (ears empty) or 15-joint 'fixed' flat list -> flat 15*3 in the model's order.

    Unlabelled joints become (0, 0, 0), the COCO convention detectron2 relies on."""
    if not isinstance(kpts, list) or len(kpts) not in (17 * 3, NUM_POSETRACK_KEYPOINTS * 3):
        n = len(kpts) if isinstance(kpts, list) else kpts
        raise PoseTrackFormatError(
            f"{where}: field 'keypoints' has {n} values, expected 51 (17 slots) or 45 (15 joints)"
        )
    slots = POSETRACK18_SLOTS_FOR_15 if len(kpts) == 51 else range(NUM_POSETRACK_KEYPOINTS)
    out = []
    for s in slots:
        x, y, v = _finite(kpts[3 * s : 3 * s + 3], f"{where}: field 'keypoints' slot {s}")
        out.extend((x, y, v) if v > 0 else (0.0, 0.0, 0.0))
    return out


_finite = finite_numbers


def _convert_annotation(ann: dict, where: str) -> dict:
    kpts = _keypoints_15(ann.get("keypoints"), where)
    vis = [
        (kpts[3 * k], kpts[3 * k + 1])
        for k in range(NUM_POSETRACK_KEYPOINTS)
        if kpts[3 * k + 2] > 0
    ]
    bbox = _optional_box(ann, "bbox", where)
    if bbox is None:
        if vis:  # no person box in some files: use the labelled joints' extent
            xs, ys = [p[0] for p in vis], [p[1] for p in vis]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        else:
            bbox = [0.0, 0.0, 0.0, 0.0]
    bbox = _finite(bbox, f"{where}: field 'bbox'")
    head = _optional_box(ann, "bbox_head", where)
    head_bbox = None
    if head is not None:
        x, y, w, h = head
        head_bbox = (x, y, x + w, y + h)
    track_id = ann.get("track_id", -1)
    if isinstance(track_id, bool) or not isinstance(track_id, int):
        if not (isinstance(track_id, float) and track_id.is_integer()):
            raise PoseTrackFormatError(
                f"{where}: field 'track_id' = {track_id!r}, expected an integer"
            )
    area = ann.get("area")
    if area is None:
        area = bbox[2] * bbox[3]
    else:
        area = _finite([area], f"{where}: field 'area'")[0]
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1):  # True / False / 0 / 1
        raise PoseTrackFormatError(f"{where}: field 'iscrowd' = {iscrowd!r}, expected 0 or 1")
    return {
        "keypoints": kpts,
        "bbox": bbox,
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": 0,
        "track_id": int(track_id),
        "head_bbox": head_bbox,
        "area": float(area),
        "iscrowd": int(iscrowd),
    }


def _optional_box(ann: dict, field: str, where: str) -> Optional[List[float]]:
    """[x, y, w, h] of an optional box field; missing, null or [] -> None (some files have no person box)."""
    box = ann.get(field)
    if box is None or box == []:
        return None
    if not isinstance(box, list) or len(box) != 4:
        raise PoseTrackFormatError(f"{where}: field '{field}' = {box!r}, expected [x, y, w, h]")
    return _finite(box, f"{where}: field '{field}'")


def _ignore_regions(img: dict, where: str) -> List[List[tuple]]:
    xs, ys = img.get("ignore_regions_x") or [], img.get("ignore_regions_y") or []
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        raise PoseTrackFormatError(
            f"{where}: fields 'ignore_regions_x' / 'ignore_regions_y' must be lists of "
            "polygons of equal length"
        )
    out = []
    for k, (px, py) in enumerate(zip(xs, ys)):
        px = _finite(px, f"{where}: field 'ignore_regions_x'[{k}]")
        py = _finite(py, f"{where}: field 'ignore_regions_y'[{k}]")
        if len(px) != len(py):
            raise PoseTrackFormatError(
                f"{where}: ignore region {k} has {len(px)} x but {len(py)} y values"
            )
        if len(px) >= 3:
            out.append(list(zip(px, py)))
    return out


def _group_annotations(data: dict, path: str) -> Dict[object, List[dict]]:
    by_image = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        if "image_id" not in ann:
            raise PoseTrackFormatError(f"{path}: annotations[{i}] has no field 'image_id'")
        if not is_entry_id(ann["image_id"]):
            raise PoseTrackFormatError(
                f"{path}: annotations[{i}]: field 'image_id' = {ann['image_id']!r}, "
                "expected an integer or a string"
            )
        by_image[ann["image_id"]].append((i, ann))
    return by_image


def _frame_dict(img, image_root, video_id, frame_index, video_file_names, anns, path) -> dict:
    annotations = [
        _convert_annotation(a, f"{path}: annotations[{i}] (image_id {img['id']})") for i, a in anns
    ]
    return {
        "file_name": os.path.join(image_root, img["file_name"]),
        "image_id": img["id"],
        "height": int(img["height"]) if img.get("height") is not None else None,
        "width": int(img["width"]) if img.get("width") is not None else None,
        "video_id": video_id,
        "frame_index": frame_index,
        "video_file_names": video_file_names,
        "is_labeled": bool(img.get("is_labeled", bool(anns))),
        "ignore_regions": _ignore_regions(img, f"{path}: image {img['id']}"),
        "annotations": annotations,
    }


def _check_image(img: dict, path: str, i: int):
    for field in ("file_name", "id"):
        if field not in img:
            raise PoseTrackFormatError(f"{path}: images[{i}] has no field '{field}'")
    if not isinstance(img["file_name"], str) or not img["file_name"]:
        raise PoseTrackFormatError(
            f"{path}: images[{i}]: field 'file_name' = {img['file_name']!r}, expected a path"
        )
    if not is_entry_id(img["id"]):
        raise PoseTrackFormatError(
            f"{path}: images[{i}]: field 'id' = {img['id']!r}, expected an integer or a string"
        )
    for field in ("height", "width", "nframes"):
        v = img.get(field)
        if v is not None and (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not float(v).is_integer()
            or v <= 0
        ):
            raise PoseTrackFormatError(
                f"{path}: images[{i}]: field '{field}' = {v!r}, expected a positive integer"
            )
    if not isinstance(img.get("is_labeled", False), bool):
        raise PoseTrackFormatError(
            f"{path}: images[{i}]: field 'is_labeled' = {img['is_labeled']!r}, expected "
            "true or false"
        )


def _load_sequence_file(path: str, image_root: str, frames: str) -> List[dict]:
    """One PoseTrack18/21 per-sequence JSON -> dicts (every image entry is a frame of this video)."""
    data = read_json(path)
    check_posetrack18_lists(data, path)
    images = data["images"]
    if not images:
        raise PoseTrackFormatError(f"{path}: sequence has no frames (field 'images' is empty)")
    for i, img in enumerate(images):
        _check_image(img, path, i)
    video_id = os.path.splitext(os.path.basename(path))[0]
    # Zero-padded frame names: lexicographic order is temporal order (a stable sort keeps the file's order otherwise).
    images = sorted(images, key=lambda im: im["file_name"])
    video_file_names = [os.path.join(image_root, im["file_name"]) for im in images]
    by_image = _group_annotations(data, path)
    out = []
    for idx, img in enumerate(images):
        anns = by_image.get(img["id"], [])
        if frames == "labeled" and not img.get("is_labeled", bool(anns)):
            continue
        out.append(_frame_dict(img, image_root, video_id, idx, video_file_names, anns, path))
    return out


def _load_combined_file(path: str, image_root: str, frames: str) -> List[dict]:
    """A COCO-style file of labelled frames from many videos (PoseWarper/DCPose style)."""
    data = read_json(path)
    check_posetrack18_lists(data, path)
    images = data["images"]
    if not images:
        raise PoseTrackFormatError(f"{path}: no frames (field 'images' is empty)")
    by_image = _group_annotations(data, path)
    videos: "OrderedDict[str, list]" = OrderedDict()
    for i, img in enumerate(images):
        _check_image(img, path, i)
        videos.setdefault(os.path.basename(os.path.dirname(img["file_name"])), []).append(img)
    out = []
    for video_id, imgs in videos.items():
        first = imgs[0]["file_name"]
        try:
            _, n_digits, base = posetrack_frame_naming(first)
            numbers = {posetrack_frame_naming(img["file_name"])[0]: img for img in imgs}
        except ValueError as e:
            raise PoseTrackFormatError(f"{path}: {e}") from None
        ext = os.path.splitext(first)[1]
        rel_dir = os.path.dirname(first)
        nframes = imgs[0].get("nframes")
        if nframes is None:
            nframes = max(numbers) - base + 1
            logger.warning(f"{path}: video {video_id} has no 'nframes'; assuming {nframes} frames")
        nframes = int(nframes)
        if nframes <= 0:
            raise ValueError(
                f"{path}: video {video_id} has no frames (field 'nframes' = {nframes})"
            )
        video_file_names = [
            os.path.join(image_root, rel_dir, f"{i + base:0{n_digits}d}{ext}")
            for i in range(nframes)
        ]
        for number in sorted(numbers) if frames == "labeled" else range(base, base + nframes):
            img = numbers.get(number)
            if (
                img is None
            ):  # unlabelled frame absent from the file: build its entry from the naming
                ref = imgs[0]
                img = {
                    "file_name": os.path.join(rel_dir, f"{number:0{n_digits}d}{ext}"),
                    "id": f"{video_id}/{number - base}",
                    "is_labeled": False,
                }
                for key in ("height", "width"):
                    if key in ref:
                        img[key] = ref[key]
            anns = by_image.get(img["id"], [])
            if frames == "labeled" and not img.get("is_labeled", bool(anns)):
                continue
            frame_index = number - base
            if not 0 <= frame_index < nframes:
                raise ValueError(
                    f"{path}: frame {img['file_name']} lies outside the video's {nframes} frames (field 'nframes')"
                )
            out.append(
                _frame_dict(img, image_root, video_id, frame_index, video_file_names, anns, path)
            )
    return out


def load_posetrack_video_dicts(
    annotations: str, image_root: str, frames: str = "labeled"
) -> List[dict]:
    """Load PoseTrack annotations into detectron2 dicts, one per frame, in video order.

    Args:
        annotations: a directory of per-sequence JSONs (PoseTrack18/21) or one COCO-style JSON file.
        image_root: the folder the JSON `file_name`s are relative to.
        frames: "labeled" (one dict per labelled frame, the training / evaluation items) or "all".
    Returns:
        list of dicts with `file_name`, `image_id`, `height`, `width`, `video_id`, `frame_index` (0-based
        position in the video), `video_file_names` (every frame path, in order; shared between the
        dicts of one video), `is_labeled`, `ignore_regions` (list of [(x, y), ...] polygons) and
        `annotations`: [{`keypoints` flat 15*3 (model order), `bbox` XYWH_ABS, `bbox_mode`,
        `category_id` 0, `track_id`, `head_bbox` (x1, y1, x2, y2) or None, `area`, `iscrowd`}].
    """
    if frames not in ("labeled", "all"):
        raise ValueError(f"frames must be 'labeled' or 'all', got {frames!r}")
    if os.path.isdir(annotations):
        files = sorted(f for f in os.listdir(annotations) if f.endswith(".json"))
        if not files:
            raise FileNotFoundError(f"no per-sequence PoseTrack JSON files in {annotations}")
        dicts = []
        for f in files:
            dicts.extend(_load_sequence_file(os.path.join(annotations, f), image_root, frames))
    elif os.path.isfile(annotations):
        dicts = _load_combined_file(annotations, image_root, frames)
    else:
        raise FileNotFoundError(
            f"PoseTrack annotations not found: {annotations} (expected a directory or a JSON file)"
        )
    # Frame sizes missing in some files (the PoseTrack18 originals): read them from the key frame lazily
    # would cost one image decode per frame; the mapper fills them in instead.
    logger.info(
        f"Loaded {len(dicts)} frames of {len({d['video_id'] for d in dicts})} videos from {annotations}"
    )
    return dicts


def register_posetrack(
    name: str, annotations: str, image_root: str, gt_dir: Optional[str] = None, **metadata
):
    """Register a PoseTrack split under `name`. Nothing is read from disk until the dicts are asked for.

    Metadata: the keypoint_meta fields, `evaluator_type="posetrack"`, `dataset_type="posetrack"`,
    `annotations`, `image_root` and `gt_dir` (per-sequence ground truth for poseval; defaults to
    `annotations` when that is a directory).
    """
    DatasetCatalog.register(name, lambda: load_posetrack_video_dicts(annotations, image_root))
    meta = posetrack_metadata()
    meta.update(
        evaluator_type="posetrack",
        dataset_type="posetrack",
        annotations=annotations,
        image_root=image_root,
        gt_dir=gt_dir
        if gt_dir is not None
        else (annotations if not annotations.endswith(".json") else ""),
    )
    meta.update(metadata)
    MetadataCatalog.get(name).set(**meta)
