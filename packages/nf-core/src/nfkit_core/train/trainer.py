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
``B``. Rank 0 writes everything under the output folder:

``checkpoint.pt``         the last checkpoint (:mod:`nfkit_core.checkpoint`)
``metrics.jsonl``         training and validation metrics, one JSON object per line
``samples/step_*.png``    sample grids (scatter plots for vector data)
``curves.png``            loss and bits/dim curves
``report.json``           the final bits/dim report
``run.json``              the configuration, as started
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from nfkit_core import noise, version
from nfkit_core.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint
from nfkit_core.data import Preprocessing, dataset_info
from nfkit_core.errors import ConfigError, NfError
from nfkit_core.flow import bits_per_dim, forward_draws_noise, importance_weighted_log_prob
from nfkit_core.plugins import DataInfo, Registry, get_registry
from nfkit_core.sampling import grid_columns, sample_labels
from nfkit_core.train.config import RunConfig, TrainConfig, coerce_options
from nfkit_core.train.distributed import setup
from nfkit_core.train.ema import EMA
from nfkit_core.train.metrics import MetricsLog
from nfkit_core.train.plots import plot_curves, save_samples
from nfkit_core.train.randomness import ShardedNoise
from nfkit_core.train.schedule import warmup_cosine

__all__ = ["Trainer", "NonFiniteLossError"]


class NonFiniteLossError(NfError, RuntimeError):
    """The training loss or gradient became NaN or infinite; training stopped before applying the update."""


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _versions(registry: Registry, arch: str) -> dict[str, str]:
    versions = {"nfkit-core": version(), "torch": str(torch.__version__)}
    entry = registry.architectures.entry(arch)
    versions[entry.distribution] = entry.version
    return versions


class Trainer:
    """Trains the flow of a :class:`RunConfig`, writing into ``out_dir``.

    Start a run with ``Trainer(run, out_dir).fit()``, continue one with ``Trainer.resume(out_dir).fit()``. Under
    ``torchrun`` every process builds a Trainer and calls :meth:`fit`; they train one model with
    DistributedDataParallel.

    Args:
        run: what to train.
        out_dir: the run folder.
        registry: where architectures and datasets are looked up (the process-wide registry by default).
        checkpoint: a checkpoint of this run to continue from (see :meth:`resume`).
    """

    def __init__(self, run: RunConfig, out_dir: str | Path, registry: Registry | None = None,
                 checkpoint: dict[str, Any] | None = None) -> None:
        self.run = run
        self.config: TrainConfig = run.train
        self.out_dir = Path(out_dir)
        self.registry = registry or get_registry()
        self.dist = setup(self.config.device)
        self.device = self.dist.device
        if self.device.type == "cpu" and self.config.cpu_threads is not None:
            torch.set_num_threads(self.config.cpu_threads)
        if self.config.batch_size % self.dist.world_size:
            raise ConfigError(f"train.batch_size={self.config.batch_size} must be divisible by the number of "
                             f"processes ({self.dist.world_size})")
        self.local_batch_size = self.config.batch_size // self.dist.world_size

        self.train_set = self.load_split("train")
        self.val_set = self.load_split("val")
        self.info = self._data_info(dataset_info(self.train_set))

        torch.manual_seed(self.config.seed)
        self.flow: nn.Module = self.registry.build_flow(run.arch, run.model, self.info).to(self.device)
        self.num_dims = math.prod(self.info.shape)
        noise_sigma = self.config.noise_sigma
        if noise_sigma is None:  # a flow trained on noisy data (TarFlow) declares the noise it expects
            noise_sigma = float(getattr(self.flow, "noise_std", 0.0) or 0.0)
        self.preprocessing = Preprocessing.choose(self.info, getattr(self.flow, "dequantizer", None) is not None,
                                                  noise_sigma, self.config.hflip, self.config.label_dropout)
        # The fused kernel updates all parameters in one call: a flow has thousands of small parameter tensors, and
        # the per-tensor loop of the default implementation costs several percent of a step.
        self.optimizer = torch.optim.AdamW(self.flow.parameters(), lr=self.config.lr, betas=self.config.betas,
                                           weight_decay=self.config.weight_decay,
                                           fused=self.device.type in ("cpu", "cuda"))
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=self.config.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.local_batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the {run.dataset!r} training split has {len(self.train_set)} examples, fewer than one "
                             f"batch of train.batch_size={self.config.batch_size}")
        self.autocast = self._autocast()

        self.step = 0
        self.saved_step: int | None = None
        self.ema: EMA | None = None
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
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl", write=self.dist.is_main, start_step=self.step)

    @classmethod
    def resume(cls, out_dir: str | Path, train_overrides: dict[str, Any] | None = None,
               registry: Registry | None = None) -> Trainer:
        """Continue the run in ``out_dir`` from its checkpoint.

        ``train_overrides`` change training options, e.g. ``{"steps": 4000}`` to train for longer (which also
        stretches the learning-rate schedule, so the continuation is no longer the run that was planned).
        """
        state = read_checkpoint(Path(out_dir) / CHECKPOINT_NAME)
        train = {**state["train_config"], **coerce_options(TrainConfig, train_overrides or {}, "train")}
        registry = registry or get_registry()
        arch_spec = registry.architectures.get(state["architecture"])
        data_spec = registry.datasets.get(state["dataset"])
        run = RunConfig(arch=state["architecture"], dataset=state["dataset"],
                        model=arch_spec.config_class(**state["model_config"]),
                        data=data_spec.config_class(**state["data_config"]),
                        train=TrainConfig(**coerce_options(TrainConfig, train, "train")), preset=state.get("preset"))
        return cls(run, out_dir, registry=registry, checkpoint=state)

    # ----------------------------------------------------------------------------------------------- set-up

    def load_split(self, split: str) -> Dataset:
        """The ``split`` part of the run's dataset."""
        return self.registry.load_dataset(self.run.dataset, self.run.data, split)

    def _data_info(self, info: DataInfo) -> DataInfo:
        """What the architecture is told: the data's shape and bins, and its classes if the run is conditional."""
        if self.config.class_conditional and info.num_classes == 0:
            raise ConfigError(f"train.class_conditional=true, but dataset {self.run.dataset!r} has no class labels")
        return DataInfo(shape=tuple(info.shape), num_classes=info.num_classes if self.config.class_conditional else 0,
                        num_bins=info.num_bins)

    def _autocast(self):
        bf16 = self.config.precision == "bf16" or (self.config.precision == "auto" and self.device.type == "cuda")
        if not bf16:
            return nullcontext
        return lambda: torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _first_global_batch(self) -> tuple[Tensor, Tensor]:
        order = DistributedSampler(self.train_set, num_replicas=1, rank=0, shuffle=True, seed=self.config.seed,
                                   drop_last=True)
        order.set_epoch(0)
        indices = list(order)[:self.config.batch_size]
        loader = DataLoader(self.train_set, batch_size=len(indices), sampler=indices)
        return next(iter(loader))

    @torch.no_grad()
    def _initialize(self) -> None:
        """Run the flow once on the first global batch, on every process, before training starts.

        Layers with data-dependent initialisation (ActNorm) are thus initialised from the same data with the same
        noise as the first training step sees, on every process. The weight average starts afterwards.
        """
        x, labels = self._first_global_batch()
        self.flow.train()
        with noise.use(ShardedNoise(self.config.seed, 0, device=self.device)):
            x, labels = self.preprocessing(x.to(self.device), labels.to(self.device), train=True)
            self.flow(x, self._context(labels))
        if self.config.ema_decay is not None:
            self.ema = EMA(self.flow, self.config.ema_decay)

    def _restore(self, state: dict[str, Any]) -> None:
        self.flow.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # options changed on resume (e.g. a longer run) take effect
            group.update(betas=self.config.betas, weight_decay=self.config.weight_decay)
        if self.config.ema_decay is not None:
            self.ema = EMA(self.flow, self.config.ema_decay)
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
        self.step = self.saved_step = int(state["step"])
        rng = state.get("rng") or []
        if len(rng) == self.dist.world_size:
            _set_rng_state(rng[self.dist.rank])
        elif self.dist.is_main:
            warnings.warn(f"the checkpoint holds the RNG states of {len(rng)} processes, this run has "
                          f"{self.dist.world_size}; the global RNGs are not restored (data order and noise still are)",
                          stacklevel=2)

    # ------------------------------------------------------------------------------------------ one step

    def _context(self, labels: Tensor) -> Tensor | None:
        return labels if self.info.num_classes > 0 else None

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Training batches from the current step on: epoch ``e`` is the sampler's shuffle with seed ``seed + e``."""
        while True:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)
            size = self.local_batch_size
            batches = [indices[i * size:(i + 1) * size] for i in range(offset, self.steps_per_epoch)]
            yield from DataLoader(self.train_set, batch_sampler=batches, num_workers=self.config.num_workers,
                                  pin_memory=self.device.type == "cuda")

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step``."""
        c = self.config
        return warmup_cosine(step, c.lr, c.warmup_steps_for(self.steps_per_epoch), c.steps, c.min_lr_ratio,
                             c.warmup_start_ratio)

    def _train_step(self, x: Tensor, labels: Tensor) -> Tensor:
        """One optimizer step; returns ``[loss (nats), bits/dim, gradient norm]`` averaged over all processes."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        x = x.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        self.model.train()
        with noise.use(ShardedNoise(self.config.seed, self.step, self.dist.rank, self.dist.world_size, self.device)):
            x, labels = self.preprocessing(x, labels, train=True)
            loss, log_prob = self.objective(x, self._context(labels))
        bpd = bits_per_dim(log_prob.detach(), self.num_dims, self.preprocessing.log_bin_width).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), max_norm)
        stats = torch.stack([-log_prob.detach().mean(), bpd, grad_norm.detach().float()])
        stats = self.dist.all_reduce_sum(stats) / self.dist.world_size
        if not torch.isfinite(stats).all():
            self._stop_non_finite(stats)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.flow, num_updates=self.step)
        return stats

    def objective(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The loss to minimise on one preprocessed batch, and the batch's ``log p(x)`` in nats, shape ``(batch,)``.

        Maximum likelihood: the mean bits/dim. It runs inside the step's noise source, in training mode; the
        log-likelihood is what the metrics report. This is the seam for other objectives: a subclass that returns
        another loss (nfkit-distill adds knowledge-distillation terms) keeps everything else of the trainer.
        """
        with self.autocast():
            log_prob = self.model(x, context).float()
        return bits_per_dim(log_prob, self.num_dims, self.preprocessing.log_bin_width).mean(), log_prob

    def _stop_non_finite(self, stats: Tensor) -> None:
        loss, bpd, grad_norm = stats.tolist()
        checkpoint = self.out_dir / CHECKPOINT_NAME
        kept = (f"the last good checkpoint, {checkpoint} (step {self.saved_step}), is kept"
                if self.saved_step is not None else "no checkpoint had been written yet")
        message = (f"non-finite training loss at step {self.step + 1}: loss {loss}, bits/dim {bpd}, gradient norm "
                   f"{grad_norm}. Training stopped without applying this update; {kept}. Try a lower train.lr, "
                   f"train.grad_clip, or a longer train.warmup_steps.")
        self.metrics.append({"step": self.step + 1, "event": "non-finite loss", "loss": loss, "bpd": bpd})
        raise NonFiniteLossError(message)

    # ------------------------------------------------------------------------------------- evaluation

    @property
    def eval_flow(self) -> nn.Module:
        """The weights validation, samples and reports use: the moving average when there is one."""
        return self.ema.model if self.ema is not None else self.flow

    @torch.no_grad()
    def evaluate(self, dataset: Dataset, max_examples: int | None = None, num_samples: int = 1) -> float:
        """Mean bits/dim of :attr:`eval_flow` over ``dataset`` (in fp32, with fixed noise), over all processes.

        With ``num_samples`` K > 1 each example gets the importance-weighted bound over K draws of the flow's noise
        (:func:`nfkit_core.flow.importance_weighted_log_prob`) instead of the single-sample bound.

        Examples are dealt out to the processes in the same interleaved order as training batches, and evaluation
        batch ``b`` draws its noise as step ``-(b + 1)`` would, so the result does not depend on the process count.
        """
        flow = self.eval_flow.eval()
        count = len(dataset) if max_examples is None else min(len(dataset), max_examples)
        mine = list(range(self.dist.rank, count, self.dist.world_size))
        loader = DataLoader(dataset, batch_size=self.local_batch_size, sampler=mine,
                            num_workers=self.config.num_workers)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch, (x, labels) in enumerate(loader):
            source = ShardedNoise(self.config.seed, -(batch + 1), self.dist.rank, self.dist.world_size, self.device)
            with noise.use(source):
                x, labels = self.preprocessing(x.to(self.device), labels.to(self.device), train=False)
                if num_samples > 1:
                    log_prob = importance_weighted_log_prob(flow, x, self._context(labels), num_samples,
                                                            self.config.eval_sample_batch_size)
                else:
                    log_prob = flow.log_prob(x, self._context(labels))
            totals[0] += bits_per_dim(log_prob, self.num_dims, self.preprocessing.log_bin_width).double().sum()
            totals[1] += len(x)
        totals = self.dist.all_reduce_sum(totals)
        return (totals[0] / totals[1]).item()

    def _likelihood_draws_noise(self) -> bool:
        """Whether the flow's likelihood is stochastic (then the importance-weighted bound is worth reporting)."""
        x, labels = next(iter(DataLoader(self.val_set, batch_size=2)))
        x, labels = self.preprocessing(x.to(self.device), labels.to(self.device), train=False)
        return forward_draws_noise(self.eval_flow.eval(), x, self._context(labels))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` samples of :attr:`eval_flow` at the configured temperature, from a fixed seed (so that grids of
        different steps are comparable); class-conditional runs cycle through the classes."""
        flow = self.eval_flow.eval()
        context = sample_labels(n, self.info.num_classes, device=self.device)
        generator = torch.Generator().manual_seed(self.config.seed)
        return flow.sample(n, context, temperature=self.config.sample_temperature, generator=generator)

    def _write_figures(self) -> Path:
        samples_dir = self.out_dir / "samples"
        samples_dir.mkdir(parents=True, exist_ok=True)
        path = samples_dir / f"step_{self.step:06d}.png"
        save_samples(self.sample(self.config.num_samples), self.preprocessing, path,
                     nrow=grid_columns(self.info.num_classes))
        plot_curves(self.metrics.rows, self.out_dir / "curves.png")
        return path

    # ----------------------------------------------------------------------------------------- saving

    def state_dict(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The checkpoint of the current step (see :mod:`nfkit_core.checkpoint` for the keys)."""
        c = self.config
        return {**self.run.to_dict(),
                "data_info": {"shape": list(self.info.shape), "num_classes": self.info.num_classes,
                              "num_bins": self.info.num_bins},
                "preprocessing": self.preprocessing.to_dict(),
                "model": self.flow.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "schedule": {"name": "warmup_cosine", "lr": c.lr, "warmup_steps": c.warmup_steps,
                             "total_steps": c.steps, "min_lr_ratio": c.min_lr_ratio},
                "step": self.step,
                "rng": rng if rng is not None else [_rng_state()],
                "versions": _versions(self.registry, self.run.arch)}

    def save(self) -> Path:
        """Write the checkpoint (rank 0, atomically; every process must call this)."""
        rng = self.dist.all_gather(_rng_state())
        path = self.out_dir / CHECKPOINT_NAME
        if self.dist.is_main:
            save_checkpoint(self.state_dict(rng), path)
        self.dist.barrier()
        self.saved_step = self.step
        return path

    # ----------------------------------------------------------------------------------------- the loop

    def _print(self, message: str) -> None:
        if self.dist.is_main:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)

    def fit(self, until: int | None = None) -> dict[str, Any] | None:
        """Train up to step ``until`` (default: ``train.steps``) and write a checkpoint there.

        Returns the final report (also written to ``report.json`` and printed) when the run reaches
        ``train.steps``, else ``None``.

        Raises:
            NonFiniteLossError: the loss became NaN or infinite; the last good checkpoint is left in place.
        """
        from tqdm import tqdm

        c = self.config
        end = c.steps if until is None else min(until, c.steps)
        preset = f" (preset {self.run.preset!r})" if self.run.preset else ""
        what = f"{self.run.arch}{preset} on {self.run.dataset}"
        plan = (f"resuming {what} at step {self.step} of {c.steps}" if self.step
                else f"training {what} for {c.steps} steps")
        self._print(f"{plan} on {self.dist.world_size} x {self.device}, writing to {self.out_dir}")
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.step == 0:
                run = {**self.run.to_dict(), "versions": _versions(self.registry, self.run.arch)}
                (self.out_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        bar = tqdm(total=c.steps, initial=self.step, disable=not (c.progress and self.dist.is_main),
                   dynamic_ncols=True, desc=f"{self.run.arch} on {self.run.dataset}")
        window = torch.zeros(3, dtype=torch.float64)
        window_steps, window_time = 0, 0.0
        train_time, trained_steps = 0.0, 0
        batches = self._batches()
        try:
            while self.step < end:
                started = time.perf_counter()
                x, labels = next(batches)
                stats = self._train_step(x, labels)
                self.step += 1
                elapsed = time.perf_counter() - started
                window += stats.double().cpu()
                window_steps += 1
                window_time += elapsed
                train_time += elapsed
                trained_steps += 1
                if self.step % c.log_every == 0 or self.step == end:
                    loss, bpd, grad_norm = (window / window_steps).tolist()
                    speed = window_steps * c.batch_size / window_time
                    self.metrics.append({"step": self.step, "loss": loss, "bpd": bpd, "grad_norm": grad_norm,
                                         "lr": self.learning_rate(self.step - 1), "samples_per_s": speed})
                    bar.set_postfix(loss=f"{loss:.3f}", bpd=f"{bpd:.3f}", samples_per_s=f"{speed:.0f}")
                    window.zero_()
                    window_steps, window_time = 0, 0.0
                bar.update(1)
                if self.step % c.val_every == 0 or self.step == c.steps:
                    val_bpd = self.evaluate(self.val_set, c.val_max_examples)
                    self.metrics.append({"step": self.step, "val_bpd": val_bpd})
                    self._print(f"step {self.step}: validation bits/dim {val_bpd:.4f}")
                if self.dist.is_main and (self.step % c.sample_every == 0 or self.step == c.steps):
                    self._write_figures()
                if self.step % c.checkpoint_every == 0 or self.step == end:
                    self.save()
        finally:
            bar.close()
        if self.step < c.steps:
            return None
        throughput = trained_steps * c.batch_size / train_time if train_time > 0 else None
        return self.report(throughput)

    def report(self, samples_per_s: float | None = None) -> dict[str, Any]:
        """Evaluate the final weights on the full validation and test splits; write ``report.json`` and print it."""
        test_set = self.load_split("test")
        val_bpd = self.evaluate(self.val_set)
        test_bpd = self.evaluate(test_set)
        k = self.config.eval_samples
        weighted = k > 1 and self._likelihood_draws_noise()
        val_bpd_iw = self.evaluate(self.val_set, num_samples=k) if weighted else None
        test_bpd_iw = self.evaluate(test_set, num_samples=k) if weighted else None
        train_rows = [row for row in self.metrics.rows if "bpd" in row and "event" not in row]
        report = {
            "architecture": self.run.arch, "preset": self.run.preset, "dataset": self.run.dataset,
            "steps": self.step, "batch_size": self.config.batch_size, "processes": self.dist.world_size,
            "device": str(self.device), "parameters": sum(p.numel() for p in self.flow.parameters()),
            "weights": "ema" if self.ema is not None else "model",
            "preprocessing": self.preprocessing.mode, "log_bin_width": self.preprocessing.log_bin_width,
            "train_bpd": train_rows[-1]["bpd"] if train_rows else None,
            "val_bpd": val_bpd, "test_bpd": test_bpd,
            "eval_samples": k if weighted else None, "val_bpd_iw": val_bpd_iw, "test_bpd_iw": test_bpd_iw,
            "train_samples_per_s": samples_per_s,
            "checkpoint": str(self.out_dir / CHECKPOINT_NAME),
            "samples": str(self.out_dir / "samples" / f"step_{self.step:06d}.png"),
            "curves": str(self.out_dir / "curves.png"),
        }
        if self.dist.is_main:
            (self.out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            train_bpd = f"{report['train_bpd']:.4f}" if report["train_bpd"] is not None else "n/a"
            self._print(f"\n{self.run.arch} on {self.run.dataset}, {self.step} steps: bits/dim "
                        f"train {train_bpd} (last log interval), validation {val_bpd:.4f}, "
                        f"test {test_bpd:.4f} ({report['weights']} weights, {self.preprocessing.mode})\n"
                        + (f"importance-weighted bound over {k} noise draws: validation {val_bpd_iw:.4f}, "
                           f"test {test_bpd_iw:.4f} bits/dim\n" if weighted else "")
                        + f"report: {self.out_dir / 'report.json'}\nsamples: {report['samples']}\n"
                        f"curves: {report['curves']}\ncheckpoint: {report['checkpoint']}")
        return report

    def close(self) -> None:
        """Leave the process group of a distributed run."""
        self.dist.close()
