"""Clip mapper: a key-frame dataset dict -> F frames with ONE set of augmentations + key-frame Instances.

Every random parameter is drawn once per clip on the key frame (detectron2 `T.AugInput` ->
`TransformList`) and the same `TransformList` is applied to every frame and to the keypoints
(docs/REFERENCE.md §10). Training order, as the official pipeline: photometric distortion -> rotation about
the centre -> horizontal flip (left/right joints swapped via the dataset's own flip map) -> AutoAugment-like
resize policy (a) or resize -> crop -> resize policy (b). Test: ResizeShortestEdge only.

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

from .clip_sampler import clip_frame_indices

logger = logging.getLogger(__name__)

__all__ = [
    "PoseTrackClipDatasetMapper",
    "PhotometricDistortion",
    "PhotometricTransform",
    "MeanFillRotation",
    "build_clip_augmentations",
]


class PhotometricTransform(T.Transform):
    """mmdet-style PhotoMetricDistortion with fixed, already drawn parameters (so every frame gets the
    same values). A parameter of None means that step is skipped. Coordinates are unchanged."""

    def __init__(self, brightness=None, contrast=None, contrast_first=True, saturation=None, hue=None,
                 permutation=None, image_format="RGB"):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        dtype = img.dtype
        x = img.astype(np.float32)
        if self.image_format == "BGR":
            x = x[..., ::-1]
        if self.brightness is not None:
            x = x + self.brightness
        if self.contrast is not None and self.contrast_first:
            x = x * self.contrast
        if self.saturation is not None or self.hue is not None:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.float32), cv2.COLOR_RGB2HSV)
            if self.saturation is not None:
                hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0, 1)
            if self.hue is not None:
                hsv[..., 0] = np.mod(hsv[..., 0] + self.hue, 360.0)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if self.contrast is not None and not self.contrast_first:
            x = x * self.contrast
        if self.permutation is not None:
            x = x[..., list(self.permutation)]
        if self.image_format == "BGR":
            x = x[..., ::-1]
        x = np.clip(x, 0, 255)
        return np.ascontiguousarray(x.astype(dtype) if dtype == np.uint8 else x)

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation

    def inverse(self):
        return T.NoOpTransform()


class PhotometricDistortion(T.Augmentation):
    """Draws the PhotometricTransform parameters (each step with p=0.5, docs/REFERENCE.md §10)."""

    def __init__(self, brightness_delta=32.0, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                 hue_delta=18.0, image_format="RGB"):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        r = np.random.uniform
        coin = lambda: np.random.rand() < 0.5  # noqa: E731
        return PhotometricTransform(
            brightness=r(-self.brightness_delta, self.brightness_delta) if coin() else None,
            contrast=r(*self.contrast_range) if coin() else None,
            contrast_first=bool(np.random.randint(2)),
            saturation=r(*self.saturation_range) if coin() else None,
            hue=r(-self.hue_delta, self.hue_delta) if coin() else None,
            permutation=tuple(np.random.permutation(3).tolist()) if coin() else None,
            image_format=self.image_format,
        )


class _FilledRotationTransform(T.RotationTransform):
    """detectron2's RotationTransform (about the centre, no expansion) with a constant border value."""

    def __init__(self, h, w, angle, expand=False, center=None, interp=None, fill=(0, 0, 0)):
        super().__init__(h, w, angle, expand=expand, center=center, interp=interp)
        self.fill = tuple(float(f) for f in fill)

    def apply_image(self, img, interp=None):
        if len(img) == 0 or self.angle % 360 == 0:
            return img
        assert img.shape[:2] == (self.h, self.w), "every frame of a clip must have the key frame's size"
        interp = interp if interp is not None else self.interp
        return cv2.warpAffine(img, self.rm_image, (self.bound_w, self.bound_h), flags=interp, borderValue=self.fill)


class MeanFillRotation(T.Augmentation):
    """Rotation by U(-max_angle, max_angle) degrees about the image centre, border = mean pixel (docs/REFERENCE.md §10)."""

    def __init__(self, max_angle: float, fill=(124, 116, 104)):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        angle = np.random.uniform(-self.max_angle, self.max_angle)
        return _FilledRotationTransform(h, w, angle, expand=False, fill=self.fill)


def build_clip_augmentations(cfg, is_train: bool):
    """(augmentations, crop_augmentations, crop_prob).

    Train: [photometric?, rotation?, flip?] followed by policy (a) resize, or with probability crop_prob by
    policy (b) `crop_augmentations` (resize short side to a choice of CROP_PRE_RESIZE_SHORT -> random crop
    INPUT.CROP -> resize as (a)). Test: [ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)], no policy (b).
    """
    P = cfg.INPUT.PAVENET
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")], [], 0.0
    augs = []
    if P.COLOR_AUG:
        augs.append(PhotometricDistortion(image_format=cfg.INPUT.FORMAT))
    if P.ROTATION > 0:
        # PIXEL_MEAN is given in INPUT.FORMAT's channel order, as the frames are.
        mean = cfg.MODEL.PIXEL_MEAN
        augs.append(MeanFillRotation(P.ROTATION, fill=tuple(mean)))
    if cfg.INPUT.RANDOM_FLIP == "horizontal":
        augs.append(T.RandomFlip(prob=0.5, horizontal=True, vertical=False))
    elif cfg.INPUT.RANDOM_FLIP not in ("none", ""):
        raise ValueError(f"INPUT.RANDOM_FLIP={cfg.INPUT.RANDOM_FLIP!r}: PAVE-Net supports 'horizontal' or 'none'")
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
    crop_augs, crop_prob = [], 0.0
    if cfg.INPUT.CROP.ENABLED and P.CROP_PROB > 0:
        crop_augs = augs + [
            # mmdet's policy (b) allows a very long side (4200) before the crop.
            T.ResizeShortestEdge(list(P.CROP_PRE_RESIZE_SHORT), 4200, "choice"),
            T.RandomCrop(cfg.INPUT.CROP.TYPE, list(cfg.INPUT.CROP.SIZE)),
            resize,
        ]
        crop_prob = float(P.CROP_PROB)
    return augs + [resize], crop_augs, crop_prob


def _linear_det(transforms: T.TransformList) -> float:
    """|det| of the (locally affine) transform: area scale for OKS areas."""
    probe = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    p = transforms.apply_coords(probe.copy())
    a, b = (p[1] - p[0]) / 100.0, (p[2] - p[0]) / 100.0
    return float(abs(a[0] * b[1] - a[1] * b[0]))


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
            pseudo_clip: COCO pseudo-clip (docs/REFERENCE.md §11): every frame is the key image, auxiliary frames rotated.
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
        logger.info(f"[PoseTrackClipDatasetMapper] F={num_frames}, augmentations in {mode}: {self.augmentations}"
                    + (f", crop policy (p={self.crop_prob}): {self.crop_augmentations}" if self.crop_prob else ""))

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
                out.append(cv2.warpAffine(key, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)))
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
        det = _linear_det(tfms)
        for a in annos:
            if a.get("iscrowd", 0):
                continue
            k = utils.transform_keypoint_annotations(a["keypoints"], tfms, image_size, self.keypoint_hflip_indices)
            if not (k[:, 2] > 0).any():
                continue
            kpts.append(k)
            areas.append(float(a.get("area", 0.0)) * det)
            tids.append(int(a.get("track_id", -1)))
        inst = Instances(tuple(image_size))
        n = len(kpts)
        K = len(annos[0]["keypoints"]) // 3 if annos else (len(self.keypoint_hflip_indices) if self.keypoint_hflip_indices is not None else 0)
        kp = torch.as_tensor(np.stack(kpts), dtype=torch.float32) if n else torch.zeros((0, K, 3))
        boxes = torch.zeros((n, 4))
        for i in range(n):
            vis = kp[i, kp[i, :, 2] > 0, :2]
            boxes[i] = torch.cat([vis.min(0).values, vis.max(0).values])
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
                raise FileNotFoundError(f"image not found: {path} (field 'file_name', image_id {d.get('image_id')!r})")
            key = utils.read_image(path, format=self.image_format)
            frames, file_names = self._pseudo_clip_frames(key), [path] * self.num_frames
        else:
            frames, file_names = self._read_frames(d)
        half = self.num_frames // 2
        h0, w0 = frames[half].shape[:2]
        for f, name in zip(frames, file_names):
            if f.shape[:2] != (h0, w0):
                raise ValueError(f"{name}: frame size {f.shape[:2]} differs from the key frame's {(h0, w0)} "
                                 f"({d.get('file_name')})")
        if d.get("height") is not None and (d["height"], d["width"]) != (h0, w0):
            raise ValueError(f"{d['file_name']}: image is {w0}x{h0} but the annotation says "
                             f"{d['width']}x{d['height']} (fields 'width', 'height')")

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
