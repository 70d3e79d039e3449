from . import keypoint_meta  # noqa: F401
from .datasets import builtin  # noqa: F401  (registers the built-in dataset names)
from .datasets.posetrack import load_posetrack_video_dicts, register_posetrack  # noqa: F401
