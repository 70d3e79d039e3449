"""Built-in dataset names, registered on `import pavenet` (nothing is read from disk until used).

Expected tree under `$DETECTRON2_DATASETS` (default `datasets`), documented in `datasets/README.md`:
  posetrack17/annotations/posetrack_{train,val}.json    COCO-style (PoseWarper/DCPose), 8-digit 1-based frames
  posetrack17/annotations/val/                          per-sequence poseval GT (DCPose posetrack17_annotation_dirs)
  posetrack17/images/...                                 as the JSON file_names say
  posetrack18/annotations/{train,val}/*.json            per-sequence PoseTrack18 files
  posetrack18/images/{train,val}/<seq>/000000.jpg
  posetrack21/posetrack_data/{train,val}/*.json         per-sequence PoseTrack21 files
  posetrack21/images/{train,val}/<seq>/000000.jpg
  coco/annotations/person_keypoints_{train,val}2017.json, coco/{train,val}2017/
  posetrack_synthetic/                                  generated on first use (pavenet.data.synthetic)
"""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..keypoint_meta import coco_metadata
from .posetrack import load_posetrack_video_dicts, register_posetrack

_POSETRACK = {
    "posetrack17_train": (
        "posetrack17/annotations/posetrack_train.json",
        "posetrack17",
        "posetrack17/annotations/train",
    ),
    "posetrack17_val": (
        "posetrack17/annotations/posetrack_val.json",
        "posetrack17",
        "posetrack17/annotations/val",
    ),
    "posetrack18_train": ("posetrack18/annotations/train", "posetrack18", None),
    "posetrack18_val": ("posetrack18/annotations/val", "posetrack18", None),
    "posetrack21_train": ("posetrack21/posetrack_data/train", "posetrack21", None),
    "posetrack21_val": ("posetrack21/posetrack_data/val", "posetrack21", None),
}
_COCO = {
    "coco_2017_train_pavenet": (
        "coco/annotations/person_keypoints_train2017.json",
        "coco/train2017",
    ),
    "coco_2017_val_pavenet": ("coco/annotations/person_keypoints_val2017.json", "coco/val2017"),
}


def datasets_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def load_coco_pseudo_clip_dicts(json_file: str, image_root: str, dataset_name: str = None):
    """COCO person keypoints as one-frame "videos": the clip mapper repeats the image and
    rotates the auxiliary copies. Keypoints stay in COCO's 17-joint order; crowd boxes are dropped
    (the official loader only uses them as ignore boxes, which PAVE-Net never reads).

    `dataset_name` lets `load_coco_json` record the JSON's category-id mapping in the metadata
    (`thing_dataset_id_to_contiguous_id`); COCOEvaluator needs it to turn class 0 back into the JSON's
    person id, without it every prediction has the wrong category and scores AP 0."""
    from detectron2.data.datasets.coco import load_coco_json

    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO keypoint annotations not found: {json_file}")
    out = []
    for d in load_coco_json(
        json_file, image_root, dataset_name, extra_annotation_keys=["area"]
    ):  # OKS uses the mask area
        anns = []
        for i, a in enumerate(d.get("annotations", [])):
            if a.get("iscrowd", 0) or "keypoints" not in a:
                continue
            x, y, w, h = a["bbox"]
            anns.append(
                {
                    "keypoints": [float(v) for v in a["keypoints"]],
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "bbox_mode": a["bbox_mode"],
                    "category_id": 0,
                    "track_id": i,
                    "head_bbox": None,
                    "area": float(a.get("area", w * h)),
                    "iscrowd": 0,
                }
            )
        d.update(
            annotations=anns,
            video_id=str(d["image_id"]),
            frame_index=0,
            video_file_names=[d["file_name"]],
            is_labeled=True,
            ignore_regions=[],
        )
        out.append(d)
    return out


def register_coco_pseudo_clips(name: str, json_file: str, image_root: str):
    DatasetCatalog.register(name, lambda: load_coco_pseudo_clip_dicts(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        evaluator_type="coco",
        dataset_type="coco_pseudo_clip",
        json_file=json_file,
        image_root=image_root,
        **coco_metadata(),
    )


def _load_synthetic(root: str, split: str):
    from ..synthetic import ensure_synthetic_dataset

    root = ensure_synthetic_dataset(root)
    return load_posetrack_video_dicts(os.path.join(root, "annotations", split), root)


def register_all(root: str = None):
    root = datasets_root() if root is None else root
    registered = set(DatasetCatalog.list())
    for name, (ann, img, gt) in _POSETRACK.items():
        if name not in registered:
            register_posetrack(
                name,
                os.path.join(root, ann),
                os.path.join(root, img),
                gt_dir=None if gt is None else os.path.join(root, gt),
            )
    for name, (ann, img) in _COCO.items():
        if name not in registered:
            register_coco_pseudo_clips(name, os.path.join(root, ann), os.path.join(root, img))
    syn = os.path.join(root, "posetrack_synthetic")
    for split in ("train", "val"):
        name = f"posetrack_synthetic_{split}"
        if name not in registered:
            register_posetrack(name, os.path.join(syn, "annotations", split), syn)
            # Generate on first use: replace the plain loader with one that ensures the data exists.
            DatasetCatalog.remove(name)
            DatasetCatalog.register(name, lambda syn=syn, split=split: _load_synthetic(syn, split))


register_all()
