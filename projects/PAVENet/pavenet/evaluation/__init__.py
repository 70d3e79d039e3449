"""PoseTrack evaluation: poseval's AP/MOTA re-implemented (`poseval`), writers, the DatasetEvaluator, the CLI."""

from .posetrack_evaluator import PoseTrackEvaluator
from .poseval import (
    PoseTrackFormatError,
    PoseTrackResults,
    evaluate,
    evaluate_dirs,
    format_table,
    read_gt,
)
from .writer import (
    atomic_write_json,
    build_posetrack18_sequence,
    write_coco_keypoint_results,
    write_posetrack18_sequence,
)

__all__ = [
    "PoseTrackEvaluator",
    "PoseTrackFormatError",
    "PoseTrackResults",
    "atomic_write_json",
    "build_posetrack18_sequence",
    "evaluate",
    "evaluate_dirs",
    "format_table",
    "read_gt",
    "write_coco_keypoint_results",
    "write_posetrack18_sequence",
]
