"""Clip mapper: a key-frame dataset dict -> F frames with ONE set of augmentations + key-frame Instances.

Every random parameter is drawn once per clip on the key frame (detectron2 `T.AugInput` ->
`TransformList`) and the same `TransformList` is applied to every frame and to the keypoints
(docs/REFERENCE.md §10); horizontal flips swap left/right joints via the dataset's own flip map. Which
augmentations are drawn (photometric -> rotation -> flip -> resize policy (a) or (b); test: resize only) is
`data/augmentation.py`'s; this module owns reading the clip's frames (or the COCO pseudo-clip), applying the
drawn transforms, and the key frame's Instances.

Output (one dict per clip):
    images:     uint8 tensor (F, 3, H, W) in cfg.INPUT.FORMAT, key frame at index F // 2
    instances:  key-frame `Instances` (train; test too when GT exists) with gt_keypoints (N, K, 3),
                gt_boxes (visible-joint extents), gt_classes (N,) zeros, gt_areas (N,), gt_track_ids (N,)
    height, width (original key-frame size), file_name, file_names (F), image_id, video_id, frame_index
"""

import copy
import logging
import os
from typing import List, Optional

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances, Keypoints

from ..utils.boxes import keypoint_extent_boxes
from .augmentation import area_scale, build_clip_augmentations
from .clip_sampler import clip_frame_indices

logger = logging.getLogger(__name__)

__all__ = ["PoseTrackClipDatasetMapper"]


class PoseTrackClipDatasetMapper:
    """Maps a key-frame dataset dict (data-layer contract) to a clip (see the module docstring)."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[T.Augmentation],
        crop_augmentations: Optional[List[T.Augmentation]] = None,
        crop_prob: float = 0.0,
        num_frames: int = 3,
        image_format: str = "RGB",
        keypoint_hflip_indices: Optional[np.ndarray] = None,
        pseudo_clip: bool = False,
        pseudo_clip_max_rotation: int = 5,
        max_redraws: int = 10,
    ):
        """
        Args:
            augmentations: applied once per clip (policy (a) in training).
            crop_augmentations / crop_prob: policy (b), chosen with probability crop_prob (training).
            num_frames: F = 2T+1.
            keypoint_hflip_indices: flip permutation from the dataset's metadata (required with flips).
            pseudo_clip: COCO pseudo-clip (docs/REFERENCE.md §11): every frame is the key image, auxiliary
                frames rotated.
            max_redraws: training re-draws of the augmentation when no person keeps a visible joint.
        """
        if num_frames < 1 or num_frames % 2 == 0:
            raise ValueError(f"MODEL.PAVENET.NUM_FRAMES must be odd (F = 2T+1), got {num_frames}")
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.crop_augmentations = list(crop_augmentations or [])
        self.crop_prob = crop_prob if self.crop_augmentations else 0.0
        self.num_frames = num_frames
        self.image_format = image_format
        self.keypoint_hflip_indices = keypoint_hflip_indices
        self.pseudo_clip = pseudo_clip
        self.pseudo_clip_max_rotation = pseudo_clip_max_rotation
        self.max_redraws = max_redraws
        mode = "training" if is_train else "inference"
        logger.info(
            f"[PoseTrackClipDatasetMapper] F={num_frames}, augmentations in {mode}: {self.augmentations}"
            + (
                f", crop policy (p={self.crop_prob}): {self.crop_augmentations}"
                if self.crop_prob
                else ""
            )
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, dataset_name: Optional[str] = None):
        if dataset_name is None:
            names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
            dataset_name = names[0] if len(names) else None
        meta = MetadataCatalog.get(dataset_name) if dataset_name else None
        hflip = None
        if meta is not None and hasattr(meta, "keypoint_flip_map"):
            hflip = utils.create_keypoint_hflip_indices([dataset_name])
        augs, crop_augs, crop_prob = build_clip_augmentations(cfg, is_train)
        return {
            "is_train": is_train,
            "augmentations": augs,
            "crop_augmentations": crop_augs,
            "crop_prob": crop_prob,
            "num_frames": cfg.MODEL.PAVENET.NUM_FRAMES,
            "image_format": cfg.INPUT.FORMAT,
            "keypoint_hflip_indices": hflip,
            "pseudo_clip": meta is not None and meta.get("dataset_type", "") == "coco_pseudo_clip",
            "pseudo_clip_max_rotation": cfg.INPUT.PAVENET.PSEUDO_CLIP_MAX_ROTATION,
        }

    # ----------------------------------------------------------------------------------------------
    def _read_frames(self, d: dict) -> List[np.ndarray]:
        names = d["video_file_names"]
        idx = clip_frame_indices(d["frame_index"], self.num_frames, len(names))
        cache = {}
        frames = []
        for i in idx:
            if i not in cache:
                path = names[i]
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"image not found: {path} (field 'video_file_names[{i}]' of video {d.get('video_id')!r}, "
                        f"key frame {d.get('file_name')!r})"
                    )
                cache[i] = utils.read_image(path, format=self.image_format)
            frames.append(cache[i])
        return frames, [names[i] for i in idx]

    def _pseudo_clip_frames(self, key: np.ndarray) -> List[np.ndarray]:
        """docs/REFERENCE.md §11: frame t+d is the key image rotated by d*r degrees about its centre (positive =
        counter-clockwise; t-1 clockwise), black border. F=3: r ~ randint{0..max}; F>=5: r = 2 (official).
        At test time r = 0 (pure replication) so evaluation is deterministic."""
        half = self.num_frames // 2
        if not self.is_train:
            r = 0
        elif self.num_frames <= 3:
            r = np.random.randint(0, self.pseudo_clip_max_rotation + 1)
        else:
            r = 2
        h, w = key.shape[:2]
        out = []
        for d in range(-half, half + 1):
            if d == 0 or r == 0:
                out.append(key)
            else:
                m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(d * r), 1.0)
                out.append(
                    cv2.warpAffine(key, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
                )
        return out

    def _draw_transforms(self, key: np.ndarray):
        augs = self.augmentations
        if self.crop_prob > 0 and np.random.rand() < self.crop_prob:
            augs = self.crop_augmentations
        aug_input = T.AugInput(key)
        tfms = T.AugmentationList(augs)(aug_input)
        return aug_input.image, tfms

    def _instances(self, annos: List[dict], tfms: T.TransformList, image_size) -> Instances:
        """Key-frame Instances; persons with no visible joint after the transform are dropped."""
        kpts, areas, tids = [], [], []
        det = area_scale(tfms)
        for a in annos:
            if a.get("iscrowd", 0):
                continue
            k = utils.transform_keypoint_annotations(
                a["keypoints"], tfms, image_size, self.keypoint_hflip_indices
            )
            if not (k[:, 2] > 0).any():
                continue
            kpts.append(k)
            areas.append(float(a.get("area", 0.0)) * det)
            tids.append(int(a.get("track_id", -1)))
        inst = Instances(tuple(image_size))
        n = len(kpts)
        K = (
            len(annos[0]["keypoints"]) // 3
            if annos
            else (
                len(self.keypoint_hflip_indices) if self.keypoint_hflip_indices is not None else 0
            )
        )
        kp = torch.as_tensor(np.stack(kpts), dtype=torch.float32) if n else torch.zeros((0, K, 3))
        boxes = keypoint_extent_boxes(kp[..., :2], kp[..., 2] > 0)
        inst.gt_keypoints = Keypoints(kp)
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.zeros(n, dtype=torch.int64)
        inst.gt_areas = torch.as_tensor(areas, dtype=torch.float32).reshape(n)
        inst.gt_track_ids = torch.as_tensor(tids, dtype=torch.int64).reshape(n)
        return inst

    def __call__(self, dataset_dict: dict) -> Optional[dict]:
        d = dict(dataset_dict)  # shallow: only the key frame's annotations are copied below
        annos = copy.deepcopy(d.get("annotations", []))
        if self.pseudo_clip:
            path = d["file_name"]
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"image not found: {path} (field 'file_name', image_id {d.get('image_id')!r})"
                )
            key = utils.read_image(path, format=self.image_format)
            frames, file_names = self._pseudo_clip_frames(key), [path] * self.num_frames
        else:
            frames, file_names = self._read_frames(d)
        half = self.num_frames // 2
        h0, w0 = frames[half].shape[:2]
        for f, name in zip(frames, file_names):
            if f.shape[:2] != (h0, w0):
                raise ValueError(
                    f"{name}: frame size {f.shape[:2]} differs from the key frame's {(h0, w0)} "
                    f"({d.get('file_name')})"
                )
        if d.get("height") is not None and (d["height"], d["width"]) != (h0, w0):
            raise ValueError(
                f"{d['file_name']}: image is {w0}x{h0} but the annotation says "
                f"{d['width']}x{d['height']} (fields 'width', 'height')"
            )

        tries = self.max_redraws if (self.is_train and annos) else 1
        for _ in range(tries):
            key_t, tfms = self._draw_transforms(frames[half])
            image_size = key_t.shape[:2]
            instances = self._instances(annos, tfms, image_size) if annos else None
            if not self.is_train or (instances is not None and len(instances) > 0):
                break
        else:
            if self.is_train:
                return None  # detectron2's MapDataset then draws another item
        out_frames = []
        cache = {}
        for i, f in enumerate(frames):
            if i == half or f is frames[half]:
                out_frames.append(key_t)
            else:  # replicated border frames share one array: transform it once
                if id(f) not in cache:
                    cache[id(f)] = tfms.apply_image(f)
                out_frames.append(cache[id(f)])
        images = torch.as_tensor(np.ascontiguousarray(np.stack(out_frames).transpose(0, 3, 1, 2)))
        if instances is None and self.is_train:
            return None
        out = {
            "images": images,
            "height": h0,
            "width": w0,
            "file_name": d["file_name"],
            "file_names": file_names,
            "image_id": d["image_id"],
            "video_id": d.get("video_id"),
            "frame_index": d.get("frame_index", 0),
        }
        if instances is not None:
            out["instances"] = instances
        return out
