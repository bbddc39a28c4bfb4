"""Training: the :class:`Trainer`, its options, the learning-rate schedule, weight averaging and DDP set-up."""

from nf_core.train.config import RunConfig, TrainConfig, make_run_config
from nf_core.train.ema import EMA
from nf_core.train.schedule import warmup_cosine
from nf_core.train.trainer import NonFiniteLossError, Trainer

__all__ = ["EMA", "NonFiniteLossError", "RunConfig", "TrainConfig", "Trainer", "make_run_config", "warmup_cosine"]
