"""Video inference shared by the demo, the evaluator and the benchmark: the streaming predictor with a
per-frame encoder cache (`predictor`: each frame is encoded once, windows of F frames are decoded) and
the OKS/Hungarian pose tracker (`tracker`) that gives track ids across windows, and the two together as the
Python API `VideoPoseEstimator` (`video`)."""

from .predictor import ClipPredictor, sliding_windows
from .tracker import PoseTracker, pose_oks
from .video import FramePoses, PosePerson, VideoPoseEstimator

__all__ = [
    "ClipPredictor",
    "sliding_windows",
    "PoseTracker",
    "pose_oks",
    "VideoPoseEstimator",
    "FramePoses",
    "PosePerson",
]
