"""PAVE-Net (Yu et al., AAAI 2026) as a Detectron2 project.

Importing the package registers the meta-architecture, the backbones and the built-in datasets.
"""

from .utils.d2compat import restore_pillow_linear
from .utils.dependency_warnings import filter_dependency_warnings

filter_dependency_warnings()  # before detectron2 (and fvcore, torch's cpp_extension) is first imported
restore_pillow_linear()  # before detectron2.data is imported: detectron2 v0.6 needs Image.LINEAR (utils/d2compat.py)

from . import data, modeling  # noqa: E402, F401  (registration on import)
from .config import ConfigError, add_pavenet_config, load_pavenet_config  # noqa: E402

__all__ = ["ConfigError", "add_pavenet_config", "load_pavenet_config"]
