"""Training: the run configuration, dataset specs → graphs, the one :class:`Trainer`, and fine-tuning on it."""

from crystalframer.train.runconfig import ConfigError, DataConfig, RunConfig, load_run_config
from crystalframer.train.trainer import TrainConfig, Trainer, TrainingError

__all__ = ["ConfigError", "DataConfig", "RunConfig", "load_run_config", "TrainConfig", "Trainer", "TrainingError"]
