"""Official checkpoint conversion (mmdetection PAVE-Net / PETR -> our detectron2 names)."""
from .official import (
    ConversionError,
    ConversionReport,
    convert_official_state_dict,
    convert_official_state_dict_with_report,
)

__all__ = [
    "ConversionError",
    "ConversionReport",
    "convert_official_state_dict",
    "convert_official_state_dict_with_report",
]
