"""`VideoPoseEstimator`: PAVE-Net on a video from your own code.

    from pavenet.inference import VideoPoseEstimator

    estimator = VideoPoseEstimator.from_config("configs/synthetic/pavenet_tiny.yaml", weights="model_final.pth")
    for frame in estimator("my_video.mp4", save_json="my_video.json"):
        for person in frame.persons:
            print(frame.index, person.track_id, person.score, person.keypoints.shape)  # (K, 3): x, y, score

It is the streaming predictor (`predictor`, PyTorch or ONNX Runtime backend) and the pose tracker
(`tracker`) that the video demo runs, on a video file, a folder / glob / list of frames (`frames`) or any
iterable of BGR images, one frame at a time in constant memory.
"""

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.structures import Instances

from ..config import frozen_config
from ..evaluation.writer import (
    atomic_write_json,
    build_posetrack18_sequence,
    posetrack_image_entries,
)
from ..utils.visualization import demo_metadata
from .frames import FrameSource, ImageListSource, VideoFileSource
from .predictor import ClipPredictor
from .tracker import PoseTracker

__all__ = ["VideoPoseEstimator", "FramePoses", "PosePerson", "inference_config", "as_frame_source"]


def inference_config(
    config_file: str, opts: Sequence[str] = (), score_thresh: Optional[float] = None
):
    """The frozen config for inference (`frozen_config`): the file plus KEY VALUE `opts`; `score_thresh` sets
    MODEL.PAVENET.TEST.SCORE_THRESH; a CUDA device on a machine without one falls back to the CPU (warned)."""

    def adjust(cfg):
        if score_thresh is not None:
            cfg.MODEL.PAVENET.TEST.SCORE_THRESH = score_thresh

    cfg, device_warning = frozen_config(config_file, list(opts), adjust)
    if device_warning:
        logging.getLogger("pavenet").warning(device_warning)
    return cfg


@dataclass
class PosePerson:
    """One person in one frame, in the frame's pixels."""

    track_id: int
    score: float
    keypoints: np.ndarray  # (K, 3): x, y, joint score
    box: Optional[np.ndarray] = None  # (4,) x0, y0, x1, y1

    def to_posetrack(self) -> dict:
        """The person as `build_posetrack18_sequence` takes it."""
        return {"keypoints": self.keypoints, "score": self.score, "track_id": self.track_id}


@dataclass
class FramePoses:
    """The persons of one frame; `instances` is the model's output with `pred_track_ids`."""

    index: int
    frame: np.ndarray  # BGR uint8 (H, W, 3)
    persons: List[PosePerson]
    instances: Instances

    @classmethod
    def from_instances(cls, index: int, frame: np.ndarray, instances: Instances) -> "FramePoses":
        kpts = instances.pred_keypoints.numpy()
        boxes = (
            instances.pred_boxes.tensor.numpy()
            if instances.has("pred_boxes")
            else [None] * len(instances)
        )
        persons = [
            PosePerson(int(t), float(s), k, b)
            for k, s, t, b in zip(
                kpts, instances.scores.numpy(), instances.pred_track_ids.numpy(), boxes
            )
        ]
        return cls(index, frame, persons, instances)


class _FrameIterable(FrameSource):
    """Any iterable of BGR uint8 (H, W, 3) arrays, read once."""

    def __init__(self, frames: Iterable[np.ndarray], name: str = "video"):
        self._frames = frames
        self.name = name

    def __iter__(self):
        return iter(self._frames)


def as_frame_source(
    video: Union[str, os.PathLike, FrameSource, Iterable], name: Optional[str] = None
) -> FrameSource:
    """A video file, a folder or glob of frames, a list of image paths, a `FrameSource`, or an iterable of
    BGR uint8 (H, W, 3) arrays (`name` names it in the JSON; default "video")."""
    if isinstance(video, FrameSource):
        return video
    if isinstance(video, (str, os.PathLike)):
        path = os.fspath(video)
        if os.path.isdir(path) or not os.path.exists(path) and any(c in path for c in "*?["):
            return ImageListSource(path)
        return VideoFileSource(path)
    if isinstance(video, np.ndarray):
        raise TypeError(
            "a single array is not a video: pass a list or iterator of (H, W, 3) BGR frames"
        )
    if isinstance(video, (list, tuple)) and video and isinstance(video[0], (str, os.PathLike)):
        return ImageListSource([os.fspath(p) for p in video])
    if not hasattr(video, "__iter__"):
        raise TypeError(
            f"expected a video path, a folder of frames or an iterable of frames, got {type(video)}"
        )
    return _FrameIterable(video, name or "video")


class VideoPoseEstimator:
    """Per-frame persons with keypoints, scores and track ids for a video.

    Args:
        cfg: PAVE-Net config (MODEL.WEIGHTS, MODEL.PAVENET.TEST.SCORE_THRESH, ...); `inference_config` makes one.
        mode: "stream" (each frame encoded once) or "window" (the full forward per window).
        track_patience / track_match_thresh: see `PoseTracker`.
        keypoint_thresh: joints below this score are written as absent in the PoseTrack JSON.
        predictor: an existing `ClipPredictor` (e.g. on the ONNX Runtime backend); built from `cfg` if None.
    """

    def __init__(
        self,
        cfg,
        mode: str = "stream",
        track_patience: int = 2,
        track_match_thresh: float = 0.3,
        keypoint_thresh: float = 0.0,
        predictor: Optional[ClipPredictor] = None,
    ):
        if mode not in ("stream", "window"):
            raise ValueError(f"mode must be 'stream' or 'window', got {mode!r}")
        self.predictor = predictor or ClipPredictor(cfg)
        self.mode = mode
        self.metadata = demo_metadata(cfg)
        self.track_patience = track_patience
        self.track_match_thresh = track_match_thresh
        self.keypoint_thresh = keypoint_thresh

    @classmethod
    def from_config(
        cls,
        config_file: str,
        weights: Optional[str] = None,
        backend: str = "pytorch",
        onnx_dir: Optional[str] = None,
        score_thresh: Optional[float] = None,
        device: Optional[str] = None,
        opts: Sequence[str] = (),
        **kwargs,
    ) -> "VideoPoseEstimator":
        """From a config file and weights (MODEL.WEIGHTS; None keeps the config's), on the "pytorch" backend
        or on "onnxruntime" with the graphs of tools/deploy/export_model.py in `onnx_dir`. `score_thresh`
        drops persons scoring below it (MODEL.PAVENET.TEST.SCORE_THRESH); `kwargs` go to the constructor."""
        from ..export import build_predictor

        opts = (
            list(opts)
            + (["MODEL.WEIGHTS", weights] if weights is not None else [])
            + (["MODEL.DEVICE", device] if device is not None else [])
        )
        cfg = inference_config(config_file, opts, score_thresh)
        return cls(cfg, predictor=build_predictor(cfg, backend, onnx_dir), **kwargs)

    def track(self, frames: Iterable[np.ndarray]) -> Iterator[Tuple[int, np.ndarray, Instances]]:
        """Yields (frame_index, frame_bgr, instances with `pred_track_ids`) for one video's BGR frames."""
        sigmas = self.metadata.get("keypoint_oks_sigmas", None)
        tracker = PoseTracker(
            self.predictor.num_frames, sigmas, self.track_match_thresh, self.track_patience
        )
        run = self.predictor.stream if self.mode == "stream" else self.predictor.window
        for index, frame, instances in run(frames):
            yield index, frame, tracker.update_instances(instances)

    def __call__(
        self, video, save_json: Optional[str] = None, name: Optional[str] = None
    ) -> Iterator[FramePoses]:
        """Yields a `FramePoses` per frame of `video` (see `as_frame_source`), in order. With `save_json`, the
        PoseTrack18 JSON of the video (track ids included) is written there once the last frame is yielded."""
        source = as_frame_source(video, name)
        if save_json and not os.path.isdir(os.path.dirname(os.path.abspath(save_json))):
            raise FileNotFoundError(f"save_json: the folder of {save_json} does not exist")
        people: List[List[dict]] = []
        frame_names: List[str] = []
        size = (0, 0)
        for index, frame, instances in self.track(source):
            poses = FramePoses.from_instances(index, frame, instances)
            if save_json:
                people.append([p.to_posetrack() for p in poses.persons])
                frame_names.append(source.frame_name(index))
                size = frame.shape[:2]
            yield poses
        if save_json:
            if not frame_names:
                raise ValueError(f"input {source.name!r} produced no frames")
            self.write_posetrack_json(
                save_json, posetrack_image_entries(source.name, frame_names, *size), people
            )

    def write_posetrack_json(
        self, path: str, images: Sequence[dict], people_per_frame: Sequence[List[dict]]
    ) -> None:
        """One video's PoseTrack18 JSON (atomically). Joints below `keypoint_thresh` are written as absent:
        MOTA counts every present joint whatever its score."""
        joint_thresh = self.keypoint_thresh if self.keypoint_thresh > 0 else None
        atomic_write_json(path, build_posetrack18_sequence(images, people_per_frame, joint_thresh))
