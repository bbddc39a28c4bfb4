"""Distillation as a training run: nf's :class:`~nfkit_core.train.Trainer` with the objective of eq. 15.

Everything but the loss is the trainer's (progress bar, checkpoints, exact resume, EMA, DDP, bf16 autocast), so a
distilled student is an ordinary run folder that ``nf sample`` and ``nf eval`` read. The folder also holds
``distill.json``: the teacher, the method, its options and the matched pairs, which ``--resume`` reads back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import default_collate

from nfkit_core import noise
from nfkit_core.checkpoint import build_flow, read_checkpoint
from nfkit_core.errors import ConfigError
from nfkit_core.plugins import Registry
from nfkit_core.train import RunConfig, Trainer
from nfkit_core.train.distributed import Distributed
from nfkit_core.train.randomness import ShardedNoise
from nfkit_distill.objective import DistillationObjective, freeze

__all__ = ["DISTILL_FILE", "DistillTrainer"]

DISTILL_FILE = "distill.json"


class DistillTrainer(Trainer):
    """Trains the student of ``run`` with a registered distiller against the teacher run ``teacher``.

    Start with ``DistillTrainer(run, out_dir, teacher=DIR, distiller="ilkd").fit()``; continue with
    ``DistillTrainer.resume(out_dir).fit()`` (the teacher and method come from ``distill.json``).

    Args:
        run: the student's run: architecture, model options, training options. Its dataset must be the teacher's.
        out_dir: the student's run folder.
        registry: where architectures, datasets and distillers are looked up.
        checkpoint: a checkpoint of this run to continue from.
        dist: this process's place in a distributed run (see :class:`~nfkit_core.train.Trainer`).
        teacher: the teacher's run folder or checkpoint file (read from ``distill.json`` on resume).
        distiller: the registered distiller's name (``lkd``, ``ilkd``, ``skd``, ``ilkd+skd``, ...).
        options: overrides of the distiller's config fields (e.g. ``{"latent_weight": 0.2}``).
    """

    def __init__(self, run: RunConfig, out_dir: str | Path, registry: Registry | None = None,
                 checkpoint: dict[str, Any] | None = None, dist: Distributed | None = None, *,
                 teacher: str | Path | None = None, distiller: str | None = None,
                 options: dict[str, Any] | None = None) -> None:
        if run.train.compile:
            raise ConfigError("train.compile=true is not supported by nf distill: the matched intermediates are read "
                              "by forward hooks, which torch.compile's graph does not run")
        super().__init__(run, out_dir, registry=registry, checkpoint=checkpoint, dist=dist)
        if teacher is None:
            stored = self._stored_settings()
            teacher, distiller, options = stored["teacher"], stored["distiller"], stored["options"]
        self.teacher_path = str(teacher)
        state = read_checkpoint(self.teacher_path, map_location=self.device)
        self._check_same_data(state)
        self.teacher = freeze(build_flow(state, registry=self.registry).to(self.device))
        self.say(f"distilling {self.teacher_path} ({state['architecture']}, "
                    f"{sum(p.numel() for p in self.teacher.parameters())} parameters) into {run.arch} "
                    f"({sum(p.numel() for p in self.flow.parameters())} parameters)")
        self.use_distiller(distiller or "ilkd", options, write=checkpoint is None)

    def use_distiller(self, distiller: str, options: dict[str, Any] | None = None, write: bool = True) -> None:
        """Distill with the registered ``distiller`` (and its ``options``) from the next step on.

        The pairing is checked and printed; with ``write``, ``distill.json`` records the method, so that a resumed
        run continues with it. Switching mid-run is the paper's warm start: ILKD first, then ILKD+SKD.

        Args:
            distiller: the registered distiller's name (``lkd``, ``ilkd``, ``skd``, ``ilkd+skd``, ...).
            options: overrides of its config fields (e.g. ``{"sample_weight": 0.1}``); ``None`` for its defaults.
            write: record the method in ``distill.json`` (rank 0 only).

        Raises:
            UnknownNameError: no distiller of that name.
            ConfigError: an option its config does not have or refuses.
            DistillationMismatchError: teacher and student cannot be matched.
        """
        spec = self.registry.distillers.get(distiller)
        try:
            config = spec.config_class(**(options or {}))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"options of distiller {distiller!r}: {error}") from None
        x, context = self._probe_batch()
        self.distillation: DistillationObjective = spec.build(config, self.teacher, self.flow, x, context,
                                                              self.num_dims, self.preprocessing.log_bin_width)
        self.distiller, self.distill_config = distiller, config
        self.say(f"from step {self.step}, {distiller}: {self._weights()}\n{self.distillation.pairing.describe()}")
        if write and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            settings = {"teacher": self.teacher_path, "distiller": distiller, "from_step": self.step,
                        "options": dataclasses.asdict(config), **self.distillation.state()}
            (self.out_dir / DISTILL_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    def _stored_settings(self) -> dict[str, Any]:
        path = self.out_dir / DISTILL_FILE
        if not path.is_file():
            raise ConfigError(f"{path} not found: {self.out_dir} is not a distillation run (resume it with nf train "
                              f"--resume), or pass the teacher")
        return json.loads(path.read_text())

    def _check_same_data(self, teacher: dict[str, Any]) -> None:
        mine = (self.run.dataset, dataclasses.asdict(self.run.data))
        theirs = (teacher["dataset"], teacher["data_config"])
        if mine != theirs:
            raise ConfigError(f"the teacher was trained on {theirs[0]} {theirs[1]}, the student would be on "
                              f"{mine[0]} {mine[1]}; distillation needs the teacher's data")
        if teacher["preprocessing"]["mode"] != self.preprocessing.mode:
            raise ConfigError(f"the teacher saw {teacher['preprocessing']['mode']!r} data, the student would see "
                              f"{self.preprocessing.mode!r}: they must see the same inputs (a flow with its own "
                              f"dequantizer, or noise augmentation, on one side only?)")

    def _probe_batch(self) -> tuple[Tensor, Tensor | None]:
        """The first training examples, preprocessed, to check the pairing's shapes on (the same at every call)."""
        size = min(self.local_batch_size, len(self.train_set))
        x, labels = default_collate([self.train_set[i] for i in range(size)])
        with noise.use(ShardedNoise(self.config.seed, 0, device=self.device)):
            x, labels = self.preprocessing(x.to(self.device), labels.to(self.device), train=True)
        return x, self.evaluator.context(labels)

    def _weights(self) -> str:
        c = self.distill_config
        return (f"loss = {c.nll_weight} * NLL ({c.nll_unit}) + {c.latent_weight} * "
                f"{'LKD' if c.matching == 'final' else 'ILKD'} ({c.latent_distance}) + {c.sample_weight} * SKD "
                f"({c.sample_distance})")

    def objective(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """Eq. 15 on the batch, which teacher and student both see (see :class:`DistillationObjective`).

        Args:
            x: a preprocessed batch, ``(B, *data_shape)``.
            context: its conditioning, or ``None``.

        Returns:
            ``(loss, log_prob)``, the scalar loss and the student's ``log p(x)`` in nats, shape ``(B,)``.
        """
        with self._autocast():
            loss, log_prob, terms = self.distillation(self.model, x, context)
        if (self.step + 1) % self.config.log_every == 0:  # this process's batch, next to the trainer's averages
            self.metrics.append({"step": self.step + 1, **{f"distill_{k}": v.item() for k, v in terms.items()}})
        return loss, log_prob
