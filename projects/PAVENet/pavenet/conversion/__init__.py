"""Official checkpoint conversion (mmdetection PAVE-Net / PETR -> our detectron2 names).

`official.py` runs a conversion; `naming.py` and `swin.py` hold the naming contract, `keypoints.py` the
joint slicing, `report.py` the error and the report; `cli.py` is tools/convert_official_ckpt.py's body.
"""

from .official import convert_official_state_dict, convert_official_state_dict_with_report
from .report import ConversionError, ConversionReport

__all__ = [
    "ConversionError",
    "ConversionReport",
    "convert_official_state_dict",
    "convert_official_state_dict_with_report",
]
