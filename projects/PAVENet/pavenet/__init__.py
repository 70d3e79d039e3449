"""PAVE-Net (Yu et al., AAAI 2026) as a Detectron2 project.

Importing the package registers the meta-architecture, the backbones and the built-in datasets.
"""
from . import data, modeling  # noqa: F401  (registration on import)
from .config import ConfigError, add_pavenet_config, load_pavenet_config

__all__ = ["ConfigError", "add_pavenet_config", "load_pavenet_config"]
