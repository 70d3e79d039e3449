from .defaults import main, setup
from .trainer import Trainer, build_pavenet_optimizer

__all__ = ["Trainer", "build_pavenet_optimizer", "main", "setup"]
