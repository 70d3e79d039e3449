"""PAVE-Net model: meta-architecture, head, transformer layers, deformable attention, losses.

Importing this package registers `PAVENet` in detectron2's META_ARCH_REGISTRY and
`build_pavenet_swin_backbone` in BACKBONE_REGISTRY.
"""

from .backbone import ChannelMapperNeck, SinePositionalEncoding, build_pavenet_swin_backbone
from .head import EncodedFrames, PAVENetHead
from .meta_arch import PAVENet

__all__ = [
    "PAVENet",
    "PAVENetHead",
    "EncodedFrames",
    "ChannelMapperNeck",
    "SinePositionalEncoding",
    "build_pavenet_swin_backbone",
]
