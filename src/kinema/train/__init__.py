"""Training: configs and presets, the DiT trainer, parallelism applied from outside the model,
atomic resumable checkpoints, EMA, metrics and export. See docs/training.md.

    kinema train configs/dit-debug.yaml [--set key=value ...]
"""

from kinema.train.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    get_preset,
    load_config,
    save_config,
)
from kinema.train.export import export_run
from kinema.train.synthetic import SyntheticData
from kinema.train.trainer import Trainer, TrainingDivergedError, learning_rate

__all__ = [
    "PRESETS",
    "ConfigError",
    "SyntheticData",
    "TrainConfig",
    "Trainer",
    "TrainingDivergedError",
    "export_run",
    "get_preset",
    "learning_rate",
    "load_config",
    "save_config",
]
