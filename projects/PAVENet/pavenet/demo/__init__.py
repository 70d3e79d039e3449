"""Video inference: streaming predictor with a per-frame encoder cache (`predictor`), OKS/Hungarian
tracker (`tracker`), frame sources (`frames`), track-coloured overlays (`visualization`), atomic outputs
(`outputs`) and the demo runner behind tools/demo.py (`runner`)."""
from .predictor import ClipPredictor, sliding_windows
from .tracker import PoseTracker, pose_oks

__all__ = ["ClipPredictor", "sliding_windows", "PoseTracker", "pose_oks"]
