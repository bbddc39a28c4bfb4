"""The options of a training run, and the checked conversion of option values to config dataclasses."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nfkit_core.errors import ConfigError
from nfkit_core.plugins.manager import get_registry
from nfkit_core.plugins.registry import Registry

__all__ = ["TrainConfig", "PRECISIONS", "RunConfig", "make_run_config", "coerce_options", "coerce_value"]

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Options of :class:`nfkit_core.train.Trainer` (``--set train.KEY=VALUE`` on the command line).

    Attributes:
        steps: number of optimizer steps.
        batch_size: global batch size (split evenly over the processes of a distributed run).
        lr: peak learning rate of AdamW.
        betas: AdamW's ``(beta1, beta2)``.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: steps of linear warm-up from ``warmup_start_ratio * lr`` to ``lr``; a cosine decay to
            ``min_lr_ratio * lr`` follows.
        warmup_epochs: when set, the warm-up lasts this many passes over the training set instead of
            ``warmup_steps`` steps (TarFlow's recipe warms up over one epoch).
        warmup_start_ratio: the learning rate at the start of the warm-up as a fraction of ``lr``.
        min_lr_ratio: the final learning rate as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this value (no clipping when unset).
        ema_decay: keep an exponential moving average of the weights with this decay (none when unset; the decay
            warms up over the first steps, see :class:`nfkit_core.train.EMA`); the average is what validation, samples
            and the final report use.
        seed: seeds model initialisation, data order and every noise draw.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16`` (on CPU it pays off where the
            CPU has native bf16 arithmetic); evaluation is always fp32.
        compile: run the training step's model through ``torch.compile``.
        device: ``auto``, ``cpu`` or ``cuda`` (a distributed run uses ``cuda:LOCAL_RANK``).
        cpu_threads: PyTorch's intra-op threads when training on the CPU. Unset: ``OMP_NUM_THREADS`` if the
            environment sets it, else the machine's cores shared evenly by the processes running on it. Small flows
            gain little from more threads and slow down when other programs compete for the cores
            (``benchmarks/results/train_cpu.md``): on a busy machine set it to 1.
        class_conditional: condition the flow on the class labels (the architecture is told ``num_classes``).
        label_dropout: probability of dropping a label to ``-1`` during training (classifier-free guidance).
        noise_std: Gaussian noise augmentation of this standard deviation instead of uniform dequantization;
            when unset, the ``noise_std`` the flow declares (TarFlow: its config's; 0 for most flows).
        hflip: flip training images horizontally at random.
        log_every: steps between metric lines in ``metrics.jsonl``.
        val_every: steps between validation bits/dim evaluations.
        val_max_examples: evaluate at most this many validation examples at each interval (all when unset).
        eval_samples: ``K`` of the importance-weighted bound that the final report adds for flows whose likelihood
            draws noise (dequantizers, noise augmentation); 1 reports the single-sample bound only.
        eval_sample_batch_size: noise draws evaluated in one forward pass for that bound (memory for speed).
        sample_every: steps between sample grids and loss/bpd plots.
        num_samples: samples in each grid.
        sample_temperature: temperature of the grid samples.
        checkpoint_every: steps between checkpoints (one is also written at the end).
        num_workers: DataLoader worker processes.
        progress: show a progress bar.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    warmup_epochs: float | None = None
    warmup_start_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    seed: int = 0
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    cpu_threads: int | None = None
    class_conditional: bool = False
    label_dropout: float = 0.0
    noise_std: float | None = None
    hflip: bool = False
    log_every: int = 10
    val_every: int = 250
    val_max_examples: int | None = None
    eval_samples: int = 16
    eval_sample_batch_size: int = 4
    sample_every: int = 500
    num_samples: int = 64
    sample_temperature: float = 1.0
    checkpoint_every: int = 500
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        positive = {name: getattr(self, name) for name in ("steps", "batch_size", "log_every", "val_every",
                                                            "sample_every", "num_samples", "checkpoint_every",
                                                            "eval_samples", "eval_sample_batch_size")}
        if self.cpu_threads is not None:
            positive["cpu_threads"] = self.cpu_threads
        bad = {name: value for name, value in positive.items() if value < 1}
        if bad:
            raise ConfigError(f"train options must be positive: {bad}")
        negative = {name: getattr(self, name) for name in ("warmup_steps", "num_workers", "weight_decay")
                    if getattr(self, name) < 0}
        if negative:
            raise ConfigError(f"train options must not be negative: {negative}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.sample_temperature) and self.sample_temperature > 0):
            raise ConfigError(f"train.sample_temperature must be a positive number, got {self.sample_temperature}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip must be positive (or none), got {self.grad_clip}")
        if self.noise_std is not None and not self.noise_std >= 0:
            raise ConfigError(f"train.noise_std must not be negative, got {self.noise_std}")
        if not 0 <= self.label_dropout < 1:
            raise ConfigError(f"train.label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.label_dropout > 0 and not self.class_conditional:
            raise ConfigError("train.label_dropout needs train.class_conditional=true")
        if self.warmup_epochs is not None and not self.warmup_epochs >= 0:
            raise ConfigError(f"train.warmup_epochs must not be negative (or none), got {self.warmup_epochs}")
        if not 0 <= self.warmup_start_ratio <= 1:
            raise ConfigError(f"train.warmup_start_ratio must lie in [0, 1], got {self.warmup_start_ratio}")
        self.betas = tuple(self.betas)

    def warmup_steps_for(self, steps_per_epoch: int) -> int:
        """The warm-up in optimizer steps: ``warmup_epochs`` epochs of ``steps_per_epoch`` steps, if set.

        Args:
            steps_per_epoch: optimizer steps in one pass over the training set.

        Returns:
            ``round(warmup_epochs * steps_per_epoch)``, or ``warmup_steps`` when ``warmup_epochs`` is ``None``.
        """
        if self.warmup_epochs is None:
            return self.warmup_steps
        return round(self.warmup_epochs * steps_per_epoch)


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def coerce_value(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field's type annotation, converting lists to tuples and ints to floats.

    ``None`` (or the strings ``"none"`` / ``"null"``) is accepted for optional fields.

    Args:
        value: the value as parsed (from TOML, ``--set`` or a checkpoint).
        annotation: the field's type annotation, e.g. ``int``, ``float | None`` or ``tuple[float, float]``.
        where: the option's name for error messages, e.g. ``"train.lr"``.

    Returns:
        ``value``, with lists turned into tuples where the field is a tuple and ints into floats where it is a float.

    Raises:
        ConfigError: ``value`` does not fit ``annotation`` (or a tuple has the wrong length); the message names
            ``where``.
    """
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in arguments:
                return None
        errors = []
        for option in (a for a in arguments if a is not type(None)):
            try:
                return coerce_value(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a {_describe(annotation)}")
    if origin is tuple and isinstance(value, list | tuple):
        items = arguments if arguments and arguments[-1] is not Ellipsis else (arguments[0],) * len(value)
        if len(items) != len(value):
            raise ConfigError(f"{where} needs {len(items)} values, got {list(value)}")
        return tuple(coerce_value(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items, strict=True)))
    if origin is list and isinstance(value, list | tuple):
        return [coerce_value(v, arguments[0], f"{where}[{i}]") if arguments else v for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Any or (isinstance(annotation, type) and isinstance(value, annotation)
                             and not (annotation is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{where} expects {_describe(annotation)}, got {value!r}")


def coerce_options(config_class: type, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Check option values for a config dataclass: unknown names are errors, values are coerced to field types.

    Args:
        config_class: the dataclass.
        values: option name -> value (e.g. from a TOML file or ``--set``).
        what: how the options are addressed, for messages (e.g. ``"train"`` or ``"model"``).

    Returns:
        option name -> coerced value, ready for ``config_class(**options)``.

    Raises:
        ConfigError: an unknown option name (the message lists the known ones) or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {unknown}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(config_class)
    return {name: coerce_value(value, hints[name], f"{what}.{name}") for name, value in values.items()}


@dataclass
class RunConfig:
    """What a run trains: an architecture and its config, a dataset and its config, and the training options.

    Attributes:
        arch: registered architecture name.
        dataset: registered dataset name.
        model: an instance of the architecture's config dataclass.
        data: an instance of the dataset's config dataclass.
        train: the training options.
        preset: the architecture preset the model config started from, if any.
    """

    arch: str
    dataset: str
    model: Any
    data: Any
    train: TrainConfig
    preset: str | None = None

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any], train_overrides: Mapping[str, Any] | None = None,
                        registry: Registry | None = None) -> RunConfig:
        """The run a checkpoint continues, with ``train_overrides`` (e.g. ``{"steps": 4000}``) applied.

        Args:
            state: a checkpoint as read by :func:`~nfkit_core.checkpoint.read_checkpoint`.
            train_overrides: training options that replace the checkpoint's (name -> value); ``None`` keeps them all.
            registry: where to look up the architecture and dataset; ``None`` uses the installed plugins'.

        Returns:
            the run's configuration.

        Raises:
            UnknownNameError: the checkpoint's architecture or dataset is not installed.
            ConfigError: an override names an unknown option or has a value of the wrong type.
        """
        registry = registry or get_registry()
        train = {**state["train_config"], **coerce_options(TrainConfig, train_overrides or {}, "train")}
        arch_spec = registry.architectures.get(state["architecture"])
        data_spec = registry.datasets.get(state["dataset"])
        return cls(arch=state["architecture"], dataset=state["dataset"],
                   model=arch_spec.config_class(**state["model_config"]),
                   data=data_spec.config_class(**state["data_config"]),
                   train=TrainConfig(**coerce_options(TrainConfig, train, "train")), preset=state.get("preset"))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints and ``run.json``)."""
        return {"architecture": self.arch, "preset": self.preset, "model_config": dataclasses.asdict(self.model),
                "dataset": self.dataset, "data_config": dataclasses.asdict(self.data),
                "train_config": dataclasses.asdict(self.train)}


def make_run_config(arch: str, dataset: str, model: Mapping[str, Any] | None = None,
                    data: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
                    preset: str | None = None, registry: Registry | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from option dicts, checking every name and value.

    The model config starts from the architecture's dataclass defaults, then ``preset`` — or, when no preset is
    named, the architecture's preset named after the dataset if it has one (e.g. ``digits``) — then ``model``. The
    training options start from :class:`TrainConfig`'s defaults, then the preset's training defaults (the
    architecture's ``train_defaults``, e.g. the paper's optimizer and schedule), then ``train``.
    Unknown architecture or dataset names raise an error that lists the available ones.

    Args:
        arch: a registered architecture name (``nf train --arch``).
        dataset: a registered dataset name (``nf train --data``).
        model: options of the architecture's config dataclass; ``None`` for none.
        data: options of the dataset's config dataclass; ``None`` for none.
        train: options of :class:`TrainConfig`; ``None`` for none.
        preset: the architecture preset to start the model config from; ``None`` picks the one named after
            ``dataset`` if there is one.
        registry: where to look up names; ``None`` uses the installed plugins'.

    Returns:
        the checked run configuration.

    Raises:
        UnknownNameError: no architecture, dataset or preset of that name; the message lists the available ones.
        ConfigError: an unknown option or a value of the wrong type.
    """
    registry = registry or get_registry()
    arch_spec = registry.architectures.get(arch)
    data_spec = registry.datasets.get(dataset)
    if preset is None and dataset in arch_spec.presets:
        preset = dataset
    model_config = arch_spec.make_config(preset, **coerce_options(arch_spec.config_class, model or {}, "model"))
    data_config = data_spec.config_class(**coerce_options(data_spec.config_class, data or {}, "data"))
    train_values = {**arch_spec.train_defaults.get(preset, {}), **(train or {})}
    train_config = TrainConfig(**coerce_options(TrainConfig, train_values, "train"))
    return RunConfig(arch, dataset, model_config, data_config, train_config, preset)
