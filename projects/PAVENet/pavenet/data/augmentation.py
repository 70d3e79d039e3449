"""Clip augmentations: what is drawn once per clip and applied alike to its F frames and its keypoints.

Owns the augmentation classes detectron2 lacks (mmdet-style photometric distortion with parameters drawn
once, rotation about the centre with a mean-pixel border), the training / test augmentation lists built
from the config (policy (a) resize, policy (b) resize -> crop -> resize; docs/REFERENCE.md §10), and the
area scale of a drawn `TransformList`. Reading frames and building Instances is the clip mapper's
(`data/dataset_mapper.py`); this module only says which transforms are drawn.
"""

import cv2
import numpy as np
from detectron2.data import transforms as T

__all__ = [
    "PhotometricDistortion",
    "PhotometricTransform",
    "MeanFillRotation",
    "build_clip_augmentations",
    "area_scale",
]


class PhotometricTransform(T.Transform):
    """mmdet-style PhotoMetricDistortion with fixed, already drawn parameters (so every frame gets the
    same values). A parameter of None means that step is skipped. Coordinates are unchanged."""

    def __init__(
        self,
        brightness=None,
        contrast=None,
        contrast_first=True,
        saturation=None,
        hue=None,
        permutation=None,
        image_format="RGB",
    ):
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

    def __init__(
        self,
        brightness_delta=32.0,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18.0,
        image_format="RGB",
    ):
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
        assert img.shape[:2] == (self.h, self.w), (
            "every frame of a clip must have the key frame's size"
        )
        interp = interp if interp is not None else self.interp
        return cv2.warpAffine(
            img, self.rm_image, (self.bound_w, self.bound_h), flags=interp, borderValue=self.fill
        )


class MeanFillRotation(T.Augmentation):
    """Rotation by U(-max_angle, max_angle) degrees about the image centre, border = mean pixel
    (docs/REFERENCE.md §10)."""

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
        return (
            [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")],
            [],
            0.0,
        )
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
        raise ValueError(
            f"INPUT.RANDOM_FLIP={cfg.INPUT.RANDOM_FLIP!r}: PAVE-Net supports 'horizontal' or 'none'"
        )
    resize = T.ResizeShortestEdge(
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    )
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


def area_scale(transforms: T.TransformList) -> float:
    """|det| of the (locally affine) transform: how it scales areas (the OKS areas of the annotations)."""
    probe = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    p = transforms.apply_coords(probe.copy())
    a, b = (p[1] - p[0]) / 100.0, (p[2] - p[0]) / 100.0
    return float(abs(a[0] * b[1] - a[1] * b[0]))
