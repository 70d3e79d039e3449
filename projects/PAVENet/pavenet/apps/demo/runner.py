"""The video demo: predictor + tracker + overlays + PoseTrack18 / COCO JSON, all written atomically.

`tools/demo.py` is a thin CLI over `VideoPoseDemo` and `run_demo`.
"""

import json
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.structures import Instances

from ...evaluation.writer import atomic_write_json, coco_keypoint_results, posetrack_image_entries
from ...inference.frames import FrameSource
from ...inference.video import FramePoses, VideoPoseEstimator, inference_config
from ...utils.visualization import TrackVisualizer
from .outputs import (
    VIDEO_EXTENSIONS,
    DemoOutputError,
    VideoWriter,
    atomic_dir,
    atomic_path,
    check_output_path,
)

__all__ = ["VideoPoseDemo", "demo_config", "run_demo", "plan_outputs", "posetrack_image_entries"]


def demo_config(
    config_file: str, opts: Sequence[str] = (), confidence_threshold: Optional[float] = None
):
    """The demo's frozen config: `pavenet.inference.video.inference_config` (`confidence_threshold` sets
    MODEL.PAVENET.TEST.SCORE_THRESH)."""
    return inference_config(config_file, opts, confidence_threshold)


class VideoPoseDemo(VideoPoseEstimator):
    """The Python API's estimator (predictions with track ids for every frame) plus the demo's overlays."""

    def run(self, frames) -> Iterator[Tuple[int, np.ndarray, Instances]]:
        """Yields (frame_index, frame_bgr, instances with `pred_track_ids`) for one video."""
        return self.track(frames)

    def visualizer(self) -> TrackVisualizer:
        return TrackVisualizer(self.metadata, self.keypoint_thresh)


def plan_outputs(
    name: str,
    output: Optional[str] = None,
    save_frames: bool = False,
    save_json: Optional[str] = None,
    save_coco: Optional[str] = None,
    gt_json: Optional[str] = None,
) -> dict:
    """The final paths of `run_demo`'s outputs for a video called `name`: {"video", "frames", "json", "coco"}
    (None where not asked for). Raises, before any work, DemoOutputError for an output that cannot be
    written and FileNotFoundError for a missing `gt_json`, each naming the option and the path."""
    video_path = frames_dir = None
    if save_frames and (not output or output.lower().endswith(VIDEO_EXTENSIONS)):
        raise DemoOutputError(f"--save-frames needs --output to be a folder, got {output!r}")
    if output:
        if output.lower().endswith(VIDEO_EXTENSIONS):
            video_path = output
            check_output_path(video_path, "--output")
        else:
            check_output_path(output, "--output", is_dir=True)
            video_path = os.path.join(output, name + ".mp4")
            frames_dir = os.path.join(output, name) if save_frames else None
    if save_json and not save_json.lower().endswith(".json"):
        check_output_path(save_json, "--save-json", is_dir=True)
        save_json = os.path.join(save_json, name + ".json")
    for path, option in (
        (video_path, "--output"),
        (save_json, "--save-json"),
        (save_coco, "--save-coco"),
    ):
        if path:
            check_output_path(path, option)
    if frames_dir and os.path.exists(frames_dir) and not os.path.isdir(frames_dir):
        raise DemoOutputError(
            f"--save-frames: {frames_dir} exists and is a file, expected a folder"
        )
    if gt_json and not os.path.isfile(gt_json):
        raise FileNotFoundError(f"--gt-json: PoseTrack GT file not found: {gt_json}")
    return {"video": video_path, "frames": frames_dir, "json": save_json, "coco": save_coco}


def _load_gt_images(path: str, num_frames: int) -> List[dict]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PoseTrack GT file not found: {path}")
    with open(path) as f:
        images = json.load(f).get("images")
    if not images:
        raise ValueError(f"{path} has no 'images' list (expected a PoseTrack18 per-sequence JSON)")
    if len(images) != num_frames:
        raise ValueError(f"{path} lists {len(images)} images but the input has {num_frames} frames")
    return images


def run_demo(
    demo: VideoPoseDemo,
    source: FrameSource,
    output: Optional[str] = None,
    save_frames: bool = False,
    save_json: Optional[str] = None,
    save_coco: Optional[str] = None,
    gt_json: Optional[str] = None,
    progress: bool = True,
    show: bool = False,
) -> dict:
    """Run one video. Outputs (each only if asked; each appears at its final path only when complete):
    - `output`: a video file (.mp4/.mkv/.avi) or a directory (gets `<name>.mp4`, and with `save_frames`
      a `<name>/` folder of overlay frames);
    - `save_json`: PoseTrack18 JSON with track ids (a file, or a directory that gets `<name>.json`);
      `gt_json` copies the GT sequence's `images` (ids, file names) so poseval pairs frames by position;
    - `save_coco`: COCO keypoint results (17 PoseTrack18 slots) with `track_id`.
    Returns a summary: number of frames, persons, distinct track ids and the written paths.
    """
    from tqdm import tqdm

    name = source.name
    paths = plan_outputs(name, output, save_frames, save_json, save_coco, gt_json)
    video_path, frames_dir, save_json = paths["video"], paths["frames"], paths["json"]

    people_per_frame: List[List[dict]] = []
    coco_preds: List[dict] = []
    frame_names: List[str] = []
    size = (0, 0)
    track_ids = set()
    num_persons = num_frames = 0
    keep_results = bool(save_json or save_coco)
    written = {}
    with _maybe(atomic_path, video_path) as tmp_video, _maybe(atomic_dir, frames_dir) as tmp_frames:
        writer = VideoWriter(tmp_video, source.fps) if tmp_video else None
        vis = demo.visualizer() if (writer or tmp_frames or show) else None
        try:
            for index, frame, inst in tqdm(
                demo.run(source),
                total=source.num_frames,
                disable=not progress,
                desc=name,
                unit="frame",
            ):
                size = frame.shape[:2]
                num_frames += 1
                frame_name = source.frame_name(index)
                poses = FramePoses.from_instances(index, frame, inst)
                tids = inst.pred_track_ids.numpy()
                track_ids.update(tids.tolist())
                num_persons += len(tids)
                if (
                    keep_results
                ):  # only for the JSON files: a webcam / overlay-only run keeps nothing per frame
                    frame_names.append(frame_name)
                    people_per_frame.append([p.to_posetrack() for p in poses.persons])
                    coco_preds.append(
                        {
                            "image_id": index,
                            "keypoints": inst.pred_keypoints.numpy(),
                            "scores": inst.scores.numpy(),
                            "track_ids": tids,
                        }
                    )
                if vis is not None:
                    overlay = vis.draw(frame, inst)
                    if writer:
                        writer.write(overlay)
                    if tmp_frames:
                        stem = os.path.splitext(frame_name)[0]
                        if not cv2.imwrite(os.path.join(tmp_frames, stem + ".jpg"), overlay):
                            raise DemoOutputError(
                                f"cannot write overlay frame {stem}.jpg into {frames_dir}"
                            )
                    if show and _show(name, overlay):
                        break
        finally:
            if writer:
                writer.close()
        if not num_frames:
            raise ValueError(f"input {name!r} produced no frames")
        if writer:
            written["video"] = video_path
        if frames_dir:
            written["frames"] = frames_dir
        # JSON inside the same block: if it fails, the video is not published either.
        if keep_results:
            images = (
                _load_gt_images(gt_json, len(frame_names))
                if gt_json
                else posetrack_image_entries(name, frame_names, *size)
            )
        if save_json:  # joints the overlay hides are written as absent
            demo.write_posetrack_json(save_json, images, people_per_frame)
            written["json"] = save_json
        if save_coco:
            for pred, im in zip(
                coco_preds, images
            ):  # COCO image ids = the JSON's (or GT's) image ids
                pred["image_id"] = im["id"]
            atomic_write_json(save_coco, coco_keypoint_results(coco_preds))
            written["coco"] = save_coco
    return {
        "name": name,
        "num_frames": num_frames,
        "num_persons": num_persons,
        "num_tracks": len(track_ids),
        "outputs": written,
    }


class _maybe:
    """`with _maybe(cm, path)`: cm(path) when path is given, else yields None."""

    def __init__(self, cm, path):
        self._cm = cm(path) if path else None

    def __enter__(self):
        return self._cm.__enter__() if self._cm else None

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc) if self._cm else False


def _show(name: str, overlay: np.ndarray) -> bool:
    """Show a frame in a window; True when the user pressed Esc."""
    try:
        cv2.imshow(name, overlay)
        return cv2.waitKey(1) == 27
    except cv2.error as e:  # headless OpenCV build
        raise ValueError(
            "cannot open a window (headless OpenCV?): pass --output or --save-json"
        ) from e
