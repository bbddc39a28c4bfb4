"""Training: the :class:`~nfkit_core.train.Trainer`, its options, the learning-rate schedule, weight averaging, DDP
set-up."""

from nfkit_core.train.config import RunConfig, TrainConfig, make_run_config
from nfkit_core.train.ema import EMA
from nfkit_core.train.evaluation import Evaluation, Evaluator, NonFiniteEvaluationError
from nfkit_core.train.interrupt import TrainingInterrupted
from nfkit_core.train.process import cpu_threads, start_process
from nfkit_core.train.schedule import warmup_cosine
from nfkit_core.train.trainer import NonFiniteLossError, Trainer

__all__ = ["EMA", "Evaluation", "Evaluator", "NonFiniteEvaluationError", "NonFiniteLossError", "RunConfig",
           "TrainConfig", "Trainer", "TrainingInterrupted", "cpu_threads", "make_run_config", "start_process",
           "warmup_cosine"]
