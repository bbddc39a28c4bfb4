"""The training loop: maximum likelihood of a registered flow on a registered dataset.

One optimizer step::

    x, labels = next batch                       # integer levels for images, floats otherwise
    x, labels = preprocessing(x, labels)        # dequantize / add noise / flip / drop labels (nfkit_core.data)
    log p(x)  = model(x, labels or None)        # Flow.forward is log_prob, so DistributedDataParallel sees it
    loss      = mean bits/dim = -(log p(x) + D log(bin width)) / (D ln 2)
    AdamW step with a warm-up + cosine learning rate, optional gradient clipping, optional weight average

Every random draw of a step (data order, dequantization, augmentation, the flow's stochastic layers) is a function of
``(seed, step)`` and of each example's position in the global batch (:mod:`nfkit_core.train.randomness`), so a run
resumed from a checkpoint continues exactly, and ``W`` processes with batch ``B / W`` train like one with batch
``B``. What else a run needs lives in its own module: the checkpoint format (:mod:`nfkit_core.checkpoint`),
held-out evaluation (:mod:`.evaluation`), the run folder's files and console output (:mod:`.artifacts`), stopping on
a signal (:mod:`.interrupt`), and what the process sets up before training (:mod:`.process`).

Nothing is lost and nothing broken is kept: checkpoints are written atomically and never with non-finite weights;
a NaN or infinite loss, gradient or weight stops the run before the bad update is saved; Ctrl-C or ``SIGTERM``
finishes the step and writes a checkpoint first.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate

from nfkit_core import noise, version
from nfkit_core.checkpoint import (
    CHECKPOINT_NAME,
    NonFiniteStateError,
    capture_rng,
    read_checkpoint,
    restore_rng,
    restore_training,
    save_checkpoint,
    training_checkpoint,
)
from nfkit_core.data import Preprocessing, dataset_info
from nfkit_core.data.sampler import EpochSampler
from nfkit_core.errors import ConfigError, NfError
from nfkit_core.flow import bits_per_dim
from nfkit_core.plugins import DataInfo, Registry, get_registry
from nfkit_core.sampling import grid_columns, sample_labels
from nfkit_core.train.artifacts import RunFolder
from nfkit_core.train.config import RunConfig, TrainConfig
from nfkit_core.train.distributed import Distributed, current
from nfkit_core.train.ema import EMA
from nfkit_core.train.evaluation import Evaluation, Evaluator
from nfkit_core.train.interrupt import StopRequests, TrainingInterrupted
from nfkit_core.train.randomness import ShardedNoise, step_seed
from nfkit_core.train.schedule import warmup_cosine

__all__ = ["Trainer", "NonFiniteLossError", "LAST_SANE_CHECKPOINT"]

LAST_SANE_CHECKPOINT = "checkpoint.sane.pt"
"""While the checkpoints of a run have diverging losses, the last one whose loss was sane is kept under this name."""


class NonFiniteLossError(NfError, RuntimeError):
    """The training loss, gradient or weights became NaN or infinite; training stopped before saving the update."""


def _versions(registry: Registry, arch: str) -> dict[str, str]:
    versions = {"nfkit-core": version(), "torch": str(torch.__version__)}
    entry = registry.architectures.entry(arch)
    versions[entry.distribution] = entry.version
    return versions


def _number(value: float) -> float | str:
    """``value``, or its text when it is not finite (JSON has no NaN)."""
    return value if math.isfinite(value) else str(value)


class Trainer:
    """Trains the flow of a :class:`RunConfig`, writing into ``out_dir``.

    Start a run with ``Trainer(run, out_dir).fit()``, continue one with ``Trainer.resume(out_dir).fit()``. Under
    ``torchrun`` every process calls :func:`~nfkit_core.train.start_process`, builds a Trainer and calls
    :meth:`fit`; they train one model with DistributedDataParallel. Building a Trainer changes nothing
    process-wide; :meth:`fit` runs with its own stream of PyTorch's global random numbers (for layers such as
    dropout that draw from it) and leaves the caller's untouched.

    Args:
        run: what to train.
        out_dir: the run folder.
        registry: where architectures and datasets are looked up (the process-wide registry by default).
        checkpoint: a checkpoint of this run to continue from (see :meth:`resume`).
        dist: this process's place in a distributed run (by default read from the environment; a ``torchrun``
            worker must have joined the process group, see :func:`~nfkit_core.train.start_process`).
    """

    def __init__(self, run: RunConfig, out_dir: str | Path, registry: Registry | None = None,
                 checkpoint: dict[str, Any] | None = None, dist: Distributed | None = None) -> None:
        self.run = run
        self.config: TrainConfig = run.train
        self.registry = registry or get_registry()
        self.dist = dist or current(self.config.device)
        self.device = self.dist.device
        if self.config.batch_size % self.dist.world_size:
            raise ConfigError(f"train.batch_size={self.config.batch_size} must be divisible by the number of "
                              f"processes ({self.dist.world_size})")
        self.local_batch_size = self.config.batch_size // self.dist.world_size

        self.train_set = self.load_split("train")
        self.val_set = self.load_split("val")
        self.info = self._data_info(dataset_info(self.train_set))
        self.steps_per_epoch = len(self.train_set) // self.dist.world_size // self.local_batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the {run.dataset!r} training split has {len(self.train_set)} examples, fewer than "
                              f"one batch of train.batch_size={self.config.batch_size}")
        self.num_dims = math.prod(self.info.shape)
        self.flow = self._build_flow()
        self.preprocessing = self._preprocessing()
        # The fused kernel updates all parameters in one call: a flow has thousands of small parameter tensors, and
        # the per-tensor loop of the default implementation costs several percent of a step.
        self.optimizer = torch.optim.AdamW(self.flow.parameters(), lr=self.config.lr, betas=self.config.betas,
                                           weight_decay=self.config.weight_decay,
                                           fused=self.device.type in ("cpu", "cuda"))
        self.evaluator = Evaluator(self.preprocessing, self.num_dims, self.info.num_classes > 0, self.dist,
                                   self.config.seed, self.local_batch_size, self.config.num_workers,
                                   self.config.eval_sample_batch_size)
        self.sampler = EpochSampler(len(self.train_set), self.local_batch_size, self.config.seed, self.dist.rank,
                                    self.dist.world_size)

        self.step = 0
        self.saved_step: int | None = None
        self.ema: EMA | None = None
        self.initial_loss: float | None = None  # the loss of step 1: the reference a diverging loss is judged by
        self.saved_loss_sane = True
        self._rng: dict[str, Any] | None = None  # this run's stream of the global generators, between fit() calls
        self._rng_live = False
        self._last_loss = math.nan
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            self._initialize()
        self.model: nn.Module = self.flow
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.flow, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.config.compile:
            # Training batches all have one shape (drop_last); static shapes also avoid symbolic-shape failures
            # that some architectures (DenseFlow) hit under automatic dynamic shapes.
            self.model = torch.compile(self.model, dynamic=False)
        self.folder = RunFolder(out_dir, write=self.dist.is_main, start_step=self.step)
        self.out_dir = self.folder.path
        self.metrics = self.folder.metrics

    @classmethod
    def resume(cls, out_dir: str | Path, train_overrides: dict[str, Any] | None = None,
               registry: Registry | None = None, dist: Distributed | None = None) -> Trainer:
        """Continue the run in ``out_dir`` from its checkpoint.

        ``train_overrides`` change training options, e.g. ``{"steps": 4000}`` to train for longer (which also
        stretches the learning-rate schedule, so the continuation is no longer the run that was planned).

        Args:
            out_dir: the run folder.
            train_overrides: training options that replace the run's.
            registry: where architectures and datasets are looked up (the process-wide registry by default).
            dist: this process's place in a distributed run.

        Returns:
            a Trainer at the checkpoint's step; call :meth:`fit`.
        """
        state = read_checkpoint(Path(out_dir) / CHECKPOINT_NAME)
        registry = registry or get_registry()
        run = RunConfig.from_checkpoint(state, train_overrides, registry)
        return cls(run, out_dir, registry=registry, checkpoint=state, dist=dist)

    # ----------------------------------------------------------------------------------------------- set-up

    def load_split(self, split: str) -> Dataset:
        """The ``split`` part of the run's dataset.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
        """
        return self.registry.load_dataset(self.run.dataset, self.run.data, split)

    def _data_info(self, info: DataInfo) -> DataInfo:
        """What the architecture is told: the data's shape and bins, and its classes if the run is conditional."""
        if self.config.class_conditional and info.num_classes == 0:
            raise ConfigError(f"train.class_conditional=true, but dataset {self.run.dataset!r} has no class labels")
        return DataInfo(shape=tuple(info.shape), num_classes=info.num_classes if self.config.class_conditional else 0,
                        num_bins=info.num_bins)

    def _build_flow(self) -> nn.Module:
        """The architecture's flow, initialised from ``train.seed`` without touching the global generators."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return self.registry.build_flow(self.run.arch, self.run.model, self.info).to(self.device)

    def _preprocessing(self) -> Preprocessing:
        # What the flow needs from the pipeline is declared on it (the nfkit_core.Flow contract).
        noise_std = self.flow.noise_std if self.config.noise_std is None else self.config.noise_std
        return Preprocessing.choose(self.info, self.flow.dequantizes, noise_std, self.config.hflip,
                                    self.config.label_dropout)

    def _autocast(self):
        bf16 = self.config.precision == "bf16" or (self.config.precision == "auto" and self.device.type == "cuda")
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def train_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """This process's training batches from the current step on: where training data is loaded.

        The data position is ``divmod(step, steps_per_epoch)``; :class:`~nfkit_core.data.sampler.EpochSampler` gives
        epoch ``e``'s seeded shuffle and this process's share of every global batch. Feeding the loop another way (a
        streaming dataset, another sampler) means changing this method only: it must yield, for step ``s``, this
        process's rows of global batch ``s``.
        """
        while True:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            # The loader's own generator seeds its workers, so that resuming mid-epoch draws nothing extra from the
            # global generators (which layers such as dropout use).
            generator = torch.Generator().manual_seed(step_seed(self.config.seed, epoch))
            yield from DataLoader(self.train_set, batch_sampler=self.sampler.epoch(epoch, start=offset),
                                  num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                                  generator=generator)

    @torch.no_grad()
    def _initialize(self) -> None:
        """Run the flow once on the first global batch, on every process, before training starts.

        Layers with data-dependent initialisation (ActNorm) are thus initialised from the same data with the same
        noise as the first training step sees, on every process. The weight average starts afterwards.
        """
        first = EpochSampler(len(self.train_set), self.config.batch_size, self.config.seed).epoch(0)
        x, labels = default_collate([self.train_set[i] for i in next(iter(first))])
        self.flow.train()
        with noise.use(ShardedNoise(self.config.seed, 0, device=self.device)):
            x, labels = self.preprocessing(x.to(self.device), labels.to(self.device), train=True)
            self.flow(x, self.evaluator.context(labels))
        if self.config.ema_decay is not None:
            self.ema = EMA(self.flow, self.config.ema_decay)

    def _restore(self, state: dict[str, Any]) -> None:
        if self.config.ema_decay is not None:
            self.ema = EMA(self.flow, self.config.ema_decay)
        self.step = self.saved_step = restore_training(state, self.flow, self.optimizer,
                                                       self.ema.model if self.ema is not None else None)
        for group in self.optimizer.param_groups:  # options changed on resume (e.g. a longer run) take effect
            group.update(betas=self.config.betas, weight_decay=self.config.weight_decay)
        self.initial_loss = state.get("initial_loss")
        self.saved_loss_sane = self._loss_is_sane(state.get("train_loss"))
        saved = state.get("data_position")
        if saved is not None and saved["train_examples"] != len(self.train_set):
            raise ConfigError(f"the checkpoint was trained on {saved['train_examples']} training examples, the dataset "
                              f"now has {len(self.train_set)}; the data order cannot continue where it stopped "
                              f"(point data.root at the data the run started with)")
        rng = state.get("rng") or []
        if len(rng) == self.dist.world_size:
            self._rng = rng[self.dist.rank]
        elif self.dist.is_main:
            warnings.warn(f"the checkpoint holds the RNG states of {len(rng)} processes, this run has "
                          f"{self.dist.world_size}; the global RNGs are not restored (data order and noise still are)",
                          stacklevel=2)

    # ------------------------------------------------------------------------------------------ one step

    @property
    def schedule(self) -> dict[str, Any]:
        """The learning-rate schedule's parameters as the checkpoint records them, with the warm-up in optimizer
        steps (``train.warmup_epochs`` resolved against this run's epoch length when it is set)."""
        c = self.config
        return {"name": "warmup_cosine", "lr": c.lr, "warmup_steps": c.warmup_steps_for(self.steps_per_epoch),
                "total_steps": c.steps, "min_lr_ratio": c.min_lr_ratio, "warmup_start_ratio": c.warmup_start_ratio}

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step``.

        Args:
            step: the optimizer step, from 0.
        """
        s = self.schedule
        return warmup_cosine(step, s["lr"], s["warmup_steps"], s["total_steps"], s["min_lr_ratio"],
                             s["warmup_start_ratio"])

    def train_step(self, x: Tensor, labels: Tensor, stop_requested: bool = False) -> Tensor:
        """One optimizer step.

        Args:
            x: a batch of dataset values (this process's share of the global batch).
            labels: their class labels, ``(B,)``.
            stop_requested: this process was asked to stop (e.g. by a signal).

        Returns:
            ``[loss (nats), bits/dim, gradient norm, stop]`` averaged over all processes, where ``stop`` is
            positive when any process was asked to stop (so that all of them stop after the same step).
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        x = x.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        self.model.train()
        with noise.use(ShardedNoise(self.config.seed, self.step, self.dist.rank, self.dist.world_size, self.device)):
            x, labels = self.preprocessing(x, labels, train=True)
            loss, log_prob = self.objective(x, self.evaluator.context(labels))
        bpd = bits_per_dim(log_prob.detach(), self.num_dims, self.preprocessing.log_bin_width).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), max_norm)
        stats = torch.stack([-log_prob.detach().mean(), bpd, grad_norm.detach().float(),
                             torch.tensor(float(stop_requested), device=loss.device)])
        stats = self.dist.all_reduce_sum(stats) / self.dist.world_size
        if not torch.isfinite(stats).all():
            self._stop_non_finite(f"non-finite training loss at step {self.step + 1}: loss {stats[0].item()}, "
                                  f"bits/dim {stats[1].item()}, gradient norm {stats[2].item()}", stats)
        self.optimizer.step()
        # The largest magnitude is finite exactly when every weight is (a norm of finite weights can overflow).
        if not torch.isfinite(torch.nn.utils.get_total_norm(list(self.flow.parameters()), math.inf)):
            self._stop_non_finite(f"the update of step {self.step + 1} made the weights non-finite (learning rate "
                                  f"{self.learning_rate(self.step):.3g})", stats)
        if self.ema is not None:
            self.ema.update(self.flow, num_updates=self.step)
        if self.initial_loss is None:
            self.initial_loss = stats[0].item()
        self._last_loss = stats[0].item()
        return stats

    def objective(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The loss to minimise on one preprocessed batch, and the batch's ``log p(x)`` in nats, shape ``(batch,)``.

        Maximum likelihood: the mean bits/dim. It runs inside the step's noise source, in training mode; the
        log-likelihood is what the metrics report. This is the seam for other objectives: a subclass that returns
        another loss (nfkit-distill adds knowledge-distillation terms) keeps everything else of the trainer.

        Args:
            x: a preprocessed batch, ``(B, *data_shape)``.
            context: its conditioning, or ``None``.
        """
        with self._autocast():
            log_prob = self.model(x, context).float()
        return bits_per_dim(log_prob, self.num_dims, self.preprocessing.log_bin_width).mean(), log_prob

    # ----------------------------------------------------------------------------------------- the loop

    def fit(self, until: int | None = None) -> dict[str, Any] | None:
        """Train up to step ``until`` (default: ``train.steps``) and write a checkpoint there.

        Args:
            until: the step to stop at (at most ``train.steps``).

        Returns:
            the final report (also written to ``report.json`` and printed) when the run reaches ``train.steps``,
            else ``None``.

        Raises:
            NonFiniteLossError: the loss, gradient or weights became NaN or infinite; the last checkpoint with a
                sane loss is left in place.
            TrainingInterrupted: ``SIGINT`` or ``SIGTERM`` stopped the run after a checkpoint of the current step.
        """
        c = self.config
        end = c.steps if until is None else min(until, c.steps)
        self._announce()
        interval = torch.zeros(3, dtype=torch.float64)  # sums of loss, bits/dim, gradient norm since the last log
        interval_steps, interval_time, train_time, trained_steps = 0, 0.0, 0.0, 0
        with self._own_rng(), StopRequests() as stop, self.folder.progress(c.steps, self.step, c.progress,
                                                                           f"{self.run.arch} on {self.run.dataset}") \
                as bar:
            batches = self.train_batches()
            while self.step < end:
                started = time.perf_counter()
                x, labels = next(batches)
                stats = self.train_step(x, labels, stop.requested)
                self.step += 1
                elapsed = time.perf_counter() - started
                interval += stats[:3].double().cpu()
                interval_steps, interval_time = interval_steps + 1, interval_time + elapsed
                train_time, trained_steps = train_time + elapsed, trained_steps + 1
                bar.update(1)
                if self.step % c.log_every == 0 or self.step == end:
                    loss, bpd, grad_norm = (interval / interval_steps).tolist()
                    speed = interval_steps * c.batch_size / interval_time
                    self.metrics.append({"step": self.step, "loss": loss, "bpd": bpd, "grad_norm": grad_norm,
                                         "lr": self.learning_rate(self.step - 1), "samples_per_s": speed})
                    bar.set_postfix(loss=f"{loss:.3f}", bpd=f"{bpd:.3f}", samples_per_s=f"{speed:.0f}")
                    interval.zero_()
                    interval_steps, interval_time = 0, 0.0
                if self.step % c.val_every == 0 or self.step == c.steps:
                    val = self.evaluator(self.eval_flow, self.val_set, "val", c.val_max_examples)
                    self.metrics.append({"step": self.step, "val_bpd": val.bits_per_dim, "val_nats": val.nats})
                    self.say(f"step {self.step}: validation bits/dim {val.bits_per_dim:.4f}")
                if self.step % c.sample_every == 0 or self.step == c.steps:
                    self._write_figures()
                stopping = stats[3].item() > 0
                if self.step % c.checkpoint_every == 0 or self.step == end or stopping:
                    self.save()
                if stopping:
                    self._stop_on_signal(stop.signal_number)
        if self.step < c.steps:
            return None
        return self.report(trained_steps * c.batch_size / train_time if train_time > 0 else None)

    @contextmanager
    def _own_rng(self):
        """Run the block with this run's stream of the global generators; the caller's stream is restored after."""
        if self._rng_live:
            yield
            return
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if self._rng is None:
                torch.manual_seed(self.config.seed)
            else:
                restore_rng(self._rng, self.device)
            self._rng_live = True
            try:
                yield
            finally:
                self._rng, self._rng_live = capture_rng(self.device), False

    def _announce(self) -> None:
        c = self.config
        preset = f" (preset {self.run.preset!r})" if self.run.preset else ""
        what = f"{self.run.arch}{preset} on {self.run.dataset}"
        plan = (f"resuming {what} at step {self.step} of {c.steps}" if self.step
                else f"training {what} for {c.steps} steps")
        self.say(f"{plan} on {self.dist.world_size} x {self.device}, writing to {self.out_dir}")
        if self.step == 0:
            self.folder.write_run({**self.run.to_dict(), "versions": _versions(self.registry, self.run.arch)})

    def say(self, message: str) -> None:
        """Print a line on the console (rank 0 only), above the progress bar.

        Args:
            message: the line, without a trailing newline.
        """
        self.folder.say(message)

    # ------------------------------------------------------------------------------ stopping and saving

    def _loss_is_sane(self, loss: float | None) -> bool:
        """Whether ``loss`` (nats) is within ``D`` nats (1 nat per dimension) of the loss at the first step: a run
        whose loss rose far above that of its untrained flow has diverged, even while it is finite."""
        if loss is None or self.initial_loss is None:
            return loss is None or math.isfinite(loss)
        return math.isfinite(loss) and loss <= self.initial_loss + self.num_dims

    def save(self) -> Path:
        """Write the checkpoint (rank 0, atomically; every process must call this).

        While the losses of a run diverge, the last checkpoint whose loss was sane is kept as
        :data:`LAST_SANE_CHECKPOINT` (it is put back in place if the run then stops on a non-finite loss).
        """
        rng = self.dist.all_gather(capture_rng(self.device) if self._rng_live or self._rng is None else self._rng)
        path = self.folder.checkpoint
        sane = self._loss_is_sane(self._last_loss if math.isfinite(self._last_loss) else None)
        if self.dist.is_main:
            kept = path.with_name(LAST_SANE_CHECKPOINT)
            if not sane and self.saved_loss_sane and path.is_file():
                kept.unlink(missing_ok=True)
                os.link(path, kept)
            state = training_checkpoint(
                self.run.to_dict(), self.info, self.preprocessing.to_dict(), self.flow, self.optimizer,
                self.ema.model if self.ema is not None else None,
                self.schedule, self.step, rng, _versions(self.registry, self.run.arch),
                self._last_loss if math.isfinite(self._last_loss) else None)
            state["initial_loss"] = self.initial_loss
            state["data_position"] = self._data_position()
            try:
                save_checkpoint(state, path)
            except NonFiniteStateError as error:
                self._stop_non_finite(str(error), None)
            if sane:
                kept.unlink(missing_ok=True)
        self.dist.barrier()
        self.saved_step, self.saved_loss_sane = self.step, sane
        return path

    def _stop_non_finite(self, what: str, stats: Tensor | None) -> None:
        checkpoint, kept = self.folder.checkpoint, self.folder.checkpoint.with_name(LAST_SANE_CHECKPOINT)
        if self.saved_step is None:
            where = "no checkpoint had been written yet"
        elif self.saved_loss_sane:
            where = f"the last good checkpoint, {checkpoint} (step {self.saved_step}), is kept"
        elif kept.is_file():
            sane_step = read_checkpoint(kept)["step"]
            if self.dist.is_main:
                os.replace(kept, checkpoint)
            where = (f"the checkpoints after step {sane_step} had diverging losses (far above the "
                     f"{self.initial_loss:.4g} nats of the first step), so {checkpoint} is back at step {sane_step}, "
                     f"the last with a sane loss")
        else:
            where = (f"no checkpoint had a sane loss: the last, {checkpoint} (step {self.saved_step}), was written "
                     f"while the loss diverged; start a new run")
        self.say(f"stopped: {what}")
        if stats is not None:
            self.metrics.append({"step": self.step + 1, "event": "non-finite loss", "loss": _number(stats[0].item()),
                                 "bpd": _number(stats[1].item())})
        raise NonFiniteLossError(f"{what}. Training stopped without saving this update; {where}. Try a lower "
                                 f"train.lr, train.grad_clip, or a longer train.warmup_steps.")

    def _stop_on_signal(self, signal_number: int) -> None:
        import signal

        number = signal_number or signal.SIGTERM  # a process that was not signalled itself stops with the others
        name = signal.Signals(number).name
        message = f"{name}: stopped after step {self.step}; checkpoint written to {self.folder.checkpoint}"
        raise TrainingInterrupted(message, number, str(self.out_dir))

    # ------------------------------------------------------------------------------------- evaluation

    @property
    def eval_flow(self) -> nn.Module:
        """The weights that validation, samples and reports use (the moving average when there is one)."""
        return self.ema.model if self.ema is not None else self.flow

    def evaluate(self, dataset: Dataset, max_examples: int | None = None, num_samples: int = 1,
                 split: str = "val") -> float:
        """Mean bits/dim of :attr:`eval_flow` over ``dataset`` (see :class:`~nfkit_core.train.evaluation.Evaluator`
        for the full result).

        Args:
            dataset: the examples to score.
            max_examples: score at most this many (all when ``None``).
            num_samples: ``K`` of the importance-weighted bound (1: the single-sample bound).
            split: the split's name, for the report.

        Returns:
            the mean bits/dim.
        """
        return self.evaluator(self.eval_flow, dataset, split, max_examples, num_samples).bits_per_dim

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` samples of :attr:`eval_flow` at the configured temperature, from a fixed seed (so that grids of
        different steps are comparable); class-conditional runs cycle through the classes.

        Args:
            n: the number of samples.

        Returns:
            samples of shape ``(n, *data_shape)``, in the flow's units.
        """
        flow = self.eval_flow.eval()
        context = sample_labels(n, self.info.num_classes, device=self.device)
        generator = torch.Generator().manual_seed(self.config.seed)
        return flow.sample(n, context, temperature=self.config.sample_temperature, generator=generator)

    def _write_figures(self) -> None:
        if self.dist.is_main:
            self.folder.write_figures(self.step, self.sample(self.config.num_samples), self.preprocessing,
                                      grid_columns(self.info.num_classes))

    def _data_position(self) -> dict[str, int]:
        """Where the data order stands: epoch and batch follow from the step; the example count pins the order."""
        epoch, batch = divmod(self.step, self.steps_per_epoch)
        return {"epoch": epoch, "batch": batch, "train_examples": len(self.train_set)}

    def report(self, samples_per_s: float | None = None) -> dict[str, Any]:
        """Evaluate the final weights on the full validation and test splits; write ``report.json`` and print it.

        Args:
            samples_per_s: the training throughput to record (examples per second), or ``None`` if not measured.

        Returns:
            the report, with ``val_bpd``/``test_bpd`` in bits/dim and ``val_nats``/``test_nats`` in nats per example
            (dequantization term included), the importance-weighted ``*_bpd_iw`` when the likelihood draws noise
            (else ``None``), the run's configuration and the paths of its checkpoint, samples and curves.

        Raises:
            NonFiniteEvaluationError: the log-likelihood of some examples is not finite.
        """
        with self._own_rng():
            return self._report(samples_per_s)

    def _report(self, samples_per_s: float | None) -> dict[str, Any]:
        test_set = self.load_split("test")
        flow, k = self.eval_flow, self.config.eval_samples
        results: dict[str, Evaluation] = {"val": self.evaluator(flow, self.val_set, "val"),
                                          "test": self.evaluator(flow, test_set, "test")}
        weighted = k > 1 and self.evaluator.likelihood_draws_noise(flow, self.val_set)
        if weighted:
            results["val_iw"] = self.evaluator(flow, self.val_set, "val", num_samples=k)
            results["test_iw"] = self.evaluator(flow, test_set, "test", num_samples=k)
        train_rows = [row for row in self.metrics.rows if "bpd" in row and "event" not in row]
        log_abs_det = float(getattr(self.train_set, "log_abs_det", 0.0))
        report = {
            "architecture": self.run.arch, "preset": self.run.preset, "dataset": self.run.dataset,
            "data_dimension": self.num_dims, "data_shape": list(self.info.shape),
            "steps": self.step, "batch_size": self.config.batch_size, "processes": self.dist.world_size,
            "device": str(self.device), "parameters": sum(p.numel() for p in self.flow.parameters()),
            "weights": "ema" if self.ema is not None else "model",
            "preprocessing": self.preprocessing.mode, "log_bin_width": self.preprocessing.log_bin_width,
            "train_bpd": train_rows[-1]["bpd"] if train_rows else None,
            "val_bpd": results["val"].bits_per_dim, "test_bpd": results["test"].bits_per_dim,
            "val_nats": results["val"].nats, "test_nats": results["test"].nats,
            # A dataset that standardised its values (tabular) says by how much: -log p(x) in the file's units.
            **({"data_log_abs_det": log_abs_det, "val_nats_file_units": results["val"].nats - log_abs_det,
                "test_nats_file_units": results["test"].nats - log_abs_det} if log_abs_det else {}),
            "eval_samples": k if weighted else None,
            "val_bpd_iw": results["val_iw"].bits_per_dim if weighted else None,
            "test_bpd_iw": results["test_iw"].bits_per_dim if weighted else None,
            "train_samples_per_s": samples_per_s,
            "checkpoint": str(self.folder.checkpoint),
            "samples": str(self.folder.sample_grid_path(self.step)),
            "curves": str(self.out_dir / "curves.png"),
        }
        self.folder.write_report(report)
        self.say(self._summary(report))
        self.dist.barrier()  # every process returns once the run's files are written, and leaves the group together
        return report

    def _summary(self, report: dict[str, Any]) -> str:
        """The report as the console shows it; held-out nats next to bits/dim for continuous data, whose bits/dim
        can be negative and hide the data's dimension."""
        train = f"{report['train_bpd']:.4f}" if report["train_bpd"] is not None else "n/a"
        lines = [f"\n{self.run.arch} on {self.run.dataset}, {self.step} steps: bits/dim train {train} (last log "
                 f"interval), validation {report['val_bpd']:.4f}, test {report['test_bpd']:.4f} "
                 f"({report['weights']} weights, {self.preprocessing.mode})"]
        if self.info.num_bins is None:
            lines.append(f"negative log-likelihood per example ({self.num_dims} dimensions): validation "
                         f"{report['val_nats']:.4f} nats, test {report['test_nats']:.4f} nats")
            if "test_nats_file_units" in report:
                lines.append(f"of the standardised data; in the data file's units: validation "
                             f"{report['val_nats_file_units']:.4f} nats, test {report['test_nats_file_units']:.4f}"
                             f" nats")
        if report["eval_samples"]:
            lines.append(f"importance-weighted bound over {report['eval_samples']} noise draws: validation "
                         f"{report['val_bpd_iw']:.4f}, test {report['test_bpd_iw']:.4f} bits/dim")
        lines += [f"report: {self.out_dir / 'report.json'}", f"samples: {report['samples']}",
                  f"curves: {report['curves']}", f"checkpoint: {report['checkpoint']}"]
        return "\n".join(lines)

    def close(self) -> None:
        """Leave the process group of a distributed run."""
        self.dist.close()
