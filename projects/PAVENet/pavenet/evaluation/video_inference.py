"""Evaluation on whole videos with the streaming predictor: each frame is encoded once, and track ids come
from the demo's tracker.

`VideoInference` wraps a PAVE-Net model so that detectron2's `inference_on_dataset` can drive it with the
`VideoInferenceLoader`: its input is the list of one video's test-frame dicts (dataset dicts, not mapped
clips), its output one `{"instances": Instances}` per dict, as the model's own forward returns per clip. So
the evaluators (PoseTrack and COCO) see the same inputs and outputs in both TEST.POSETRACK.VIDEO_MODEs.
"""

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import detection_utils
from torch import nn

from ..inference.predictor import ClipPredictor
from ..inference.tracker import PoseTracker
from ..utils.ddp import unwrap_model

__all__ = ["VideoInference", "VIDEO_MODES", "video_mode"]

VIDEO_MODES = ("stream", "clips")


def video_mode(cfg) -> str:
    mode = cfg.TEST.POSETRACK.VIDEO_MODE
    if mode not in VIDEO_MODES:
        raise ValueError(f"TEST.POSETRACK.VIDEO_MODE must be one of {VIDEO_MODES}, got {mode!r}")
    return mode


class VideoInference(nn.Module):
    """One video per call: the streaming predictor's cached decoding (`ClipPredictor.stream_video`), plus
    track ids (`pred_track_ids`) when `track` is set.

    Args:
        cfg: the PAVE-Net config (test resize, INPUT.FORMAT, score threshold, F).
        model: the PAVE-Net model (a DDP wrapper is unwrapped); its train/eval mode is left as it was,
            `inference_on_dataset` switches it to eval while it runs.
        track: assign track ids. The tracker then sees every frame from the video's first to its last test
            frame (consecutive windows), while only the test frames are returned.
        oks_sigmas / track_match_thresh / track_patience: the `PoseTracker`'s settings.
    """

    def __init__(
        self,
        cfg,
        model: nn.Module,
        track: bool = False,
        oks_sigmas: Optional[Sequence[float]] = None,
        track_match_thresh: float = 0.3,
        track_patience: int = 2,
    ):
        super().__init__()
        model = unwrap_model(model)
        training = model.training
        self.model = model
        self.predictor = ClipPredictor(
            cfg, model=model
        )  # puts the model in eval mode: restored below
        self.train(training)
        self.track = bool(track)
        self.oks_sigmas = oks_sigmas
        self.track_match_thresh = float(track_match_thresh)
        self.track_patience = int(track_patience)

    @classmethod
    def from_config(
        cls, cfg, model: nn.Module, dataset_name: Optional[str] = None
    ) -> "VideoInference":
        from detectron2.data import MetadataCatalog

        P = cfg.TEST.POSETRACK
        sigmas = (
            MetadataCatalog.get(dataset_name).get("keypoint_oks_sigmas", None)
            if dataset_name
            else None
        )
        return cls(
            cfg,
            model,
            track=P.EVAL_TRACKING,
            oks_sigmas=sigmas,
            track_match_thresh=P.TRACK_MATCH_THRESH,
            track_patience=P.TRACK_PATIENCE,
        )

    @staticmethod
    def _reader(video: List[dict]):
        names = video[0]["video_file_names"]
        vid = video[0].get("video_id")

        def read(i: int) -> np.ndarray:
            path = names[i]
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"image not found: {path} (field 'video_file_names[{i}]' of video {vid!r})"
                )
            return detection_utils.read_image(
                path, format="BGR"
            )  # the predictor converts to INPUT.FORMAT

        return read, len(names)

    def forward(self, video: List[dict]) -> List[Dict[str, object]]:
        """video: the frame dicts of ONE video (`video_file_names`, `frame_index`, ...), in frame order.
        Returns one {"instances": Instances in original pixels} per dict (`pred_keypoints` (k, K, 3),
        `scores`, `pred_boxes`, `pred_classes`, `pred_frame_keypoints` (k, F, K, 2), `pred_track_ids` (k,)
        when tracking)."""
        if not video:
            return []
        read, length = self._reader(video)
        keys = [int(d["frame_index"]) for d in video]
        wanted = set(keys)
        decode = range(min(keys), max(keys) + 1) if self.track else sorted(wanted)
        tracker = None
        if self.track:
            tracker = PoseTracker(
                self.predictor.num_frames,
                self.oks_sigmas,
                self.track_match_thresh,
                self.track_patience,
            )
        found = {}
        for key, inst in self.predictor.stream_video(read, length, decode):
            if tracker is not None:
                tracker.update_instances(inst)
            if key in wanted:
                found[key] = inst
        outputs = []
        for d, key in zip(video, keys):
            inst = found[key]
            if d.get("height") is not None and (d["height"], d["width"]) != tuple(inst.image_size):
                raise ValueError(
                    f"{d['file_name']}: image is {inst.image_size[1]}x{inst.image_size[0]} but the "
                    f"annotation says {d['width']}x{d['height']} (fields 'width', 'height')"
                )
            outputs.append({"instances": inst})
        return outputs
