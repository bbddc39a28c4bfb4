"""Training: the :class:`Trainer`, its options, the learning-rate schedule, weight averaging and DDP set-up."""

from nfkit_core.train.config import RunConfig, TrainConfig, make_run_config
from nfkit_core.train.ema import EMA
from nfkit_core.train.schedule import warmup_cosine
from nfkit_core.train.trainer import NonFiniteLossError, Trainer

__all__ = ["EMA", "NonFiniteLossError", "RunConfig", "TrainConfig", "Trainer", "make_run_config", "warmup_cosine"]
