from . import keypoint_meta  # noqa: F401
