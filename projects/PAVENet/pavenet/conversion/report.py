"""What a conversion says about itself: the error it raises and the report of what became of every tensor.

`ConversionError` is a checkpoint that does not fit the requested architecture or target model; a
`ConversionReport` lists the tensors mapped, ignored (with the reason), sliced to fewer joints, initialised
from a fresh model, and the joint-attention offset-bias groups tied to one value. Both sit below the naming
tables (`naming.py`, `swin.py`), the keypoint slicing (`keypoints.py`) and the driver (`official.py`).
"""

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

__all__ = ["ConversionError", "ConversionReport"]


class ConversionError(ValueError):
    """A checkpoint that does not fit the requested architecture / target model."""


@dataclass
class ConversionReport:
    """What happened to every tensor: mapped (src -> dst), ignored (src, reason), initialised (dst)."""

    mapped: Dict[str, str] = field(default_factory=dict)
    ignored: Dict[str, str] = field(default_factory=dict)
    initialised: List[str] = field(default_factory=list)
    sliced: List[str] = field(default_factory=list)
    # joint-attention offset-bias groups tied to one value: (winning source name, [our names], values differed)
    tied: List[Tuple[str, List[str], bool]] = field(default_factory=list)
    backbone: str = ""
    num_frames: int = 0
    num_keypoints_src: int = 0
    num_keypoints_dst: int = 0

    def summary(self) -> str:
        differed = sum(d for _, _, d in self.tied)
        tied = (
            (
                f"; {len(self.tied)} joint-attention offset-bias groups tied to the official load winner"
                f" ({differed} had differing values)"
            )
            if self.tied
            else ""
        )
        return (
            f"{len(self.mapped)} tensors mapped ({len(self.sliced)} sliced {self.num_keypoints_src}->"
            f"{self.num_keypoints_dst} joints), {len(self.ignored)} ignored, {len(self.initialised)} "
            f"initialised from the fresh model; backbone={self.backbone}, frames={self.num_frames}{tied}"
        )
