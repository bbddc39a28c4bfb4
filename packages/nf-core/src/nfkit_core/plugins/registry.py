"""The registry that plugins fill: named architectures, datasets, metrics, distillers, attention backends, commands."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Registry", "Entry", "DataInfo", "ArchitectureSpec", "DatasetSpec", "AttentionBackend",
           "CommandSpec", "DuplicateNameError", "UnknownNameError"]

KINDS = ("architecture", "dataset", "metric", "distiller", "attention_backend", "command")


class DuplicateNameError(ValueError):
    """Two plugins registered the same name for the same kind."""


class UnknownNameError(KeyError):
    """A name that no plugin registered; the message lists the available ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class DataInfo:
    """What an architecture needs to know about the data it will model.

    Attributes:
        shape: the shape of one data point, e.g. ``(1, 8, 8)`` for digits or ``(6,)`` for a tabular set.
        num_classes: number of class labels (0 for unlabelled data).
        num_bins: number of discrete levels per dimension for quantized data (``17`` for digits, ``256`` for 8-bit
            images), ``None`` for continuous data.
    """

    shape: tuple[int, ...]
    num_classes: int = 0
    num_bins: int | None = None


@dataclass(frozen=True)
class ArchitectureSpec:
    """How to build a flow architecture.

    Attributes:
        name: the name used on the command line (``nf train --arch NAME``).
        config_class: a dataclass of the architecture's options; its fields become ``--set key=value`` options.
        build: ``build(config, data: DataInfo) -> nfkit_core.Flow``.
        description: one line for ``nf plugins`` and ``--help``.
        presets: named configurations, ``{"digits-small": {...field values...}}``.
        train_defaults: training options that come with a preset, ``{"imagenet64": {"lr": 1e-4, ...}}`` (e.g. the
            recipe of the paper whose model the preset is); they replace :class:`nfkit_core.train.TrainConfig`'s
            defaults for runs of that preset, and the run's own ``train`` options override them.
    """

    name: str
    config_class: type
    build: Callable[..., Any]
    description: str = ""
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def make_config(self, preset: str | None = None, **overrides: Any) -> Any:
        """A config from the dataclass defaults, then a preset, then explicit overrides; unknown keys are errors."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in self.presets:
                raise UnknownNameError(f"architecture {self.name!r} has no preset {preset!r}; "
                                       f"available: {', '.join(sorted(self.presets)) or 'none'}")
            values.update(self.presets[preset])
        values.update(overrides)
        known = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for architecture {self.name!r}; known: {sorted(known)}")
        return self.config_class(**values)


@dataclass(frozen=True)
class DatasetSpec:
    """How to load a dataset: ``load(config, split) -> torch.utils.data.Dataset`` of ``(x, label)`` pairs."""

    name: str
    config_class: type
    load: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class AttentionBackend:
    """A scaled-dot-product attention implementation.

    ``attend(q, k, v, causal, scale)`` takes ``(batch, heads, tokens, head_dim)`` tensors; ``is_available(q)`` says
    whether it can run on these tensors (device, dtype, installed libraries).
    """

    name: str
    attend: Callable[..., Any]
    is_available: Callable[..., bool]
    description: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """An ``nf`` sub-command: ``add_arguments(parser)`` declares its options, ``run(args) -> int`` runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Entry:
    """One registered object and the distribution that registered it."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str


class Registry:
    """Named things of every kind, each remembering the plugin and distribution that added it."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._source = ("<direct>", "<direct>", "")

    def set_source(self, plugin: str, distribution: str, version: str) -> None:
        """Attribute the following registrations to ``plugin`` from ``distribution`` (called by the manager)."""
        self._source = (plugin, distribution, version)

    def add(self, kind: str, name: str, obj: Any) -> None:
        """Register ``obj`` under ``name``; raises :class:`DuplicateNameError` naming both distributions."""
        if kind not in self._entries:
            raise ValueError(f"unknown registry kind {kind!r}; kinds: {', '.join(KINDS)}")
        plugin, distribution, version = self._source
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise DuplicateNameError(
                f"{kind} {name!r} is registered twice: by {existing.distribution} (plugin {existing.plugin!r}) "
                f"and by {distribution} (plugin {plugin!r})")
        self._entries[kind][name] = Entry(kind, name, obj, plugin, distribution, version)

    def add_architecture(self, spec: ArchitectureSpec) -> None:
        """Shorthand for ``add("architecture", spec.name, spec)``."""
        self.add("architecture", spec.name, spec)

    def add_dataset(self, spec: DatasetSpec) -> None:
        """Shorthand for ``add("dataset", spec.name, spec)``."""
        self.add("dataset", spec.name, spec)

    def add_attention_backend(self, backend: AttentionBackend) -> None:
        """Shorthand for ``add("attention_backend", backend.name, backend)``."""
        self.add("attention_backend", backend.name, backend)

    def add_command(self, spec: CommandSpec) -> None:
        """Shorthand for ``add("command", spec.name, spec)``."""
        self.add("command", spec.name, spec)

    def get(self, kind: str, name: str) -> Any:
        """The object registered as ``name``; an unknown name raises an error listing the available ones."""
        try:
            return self._entries[kind][name].obj
        except KeyError:
            available = ", ".join(sorted(self._entries.get(kind, {}))) or "none"
            raise UnknownNameError(f"unknown {kind.replace('_', ' ')} {name!r}; available: {available}") from None

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every entry (of one kind, or all), in registration order."""
        kinds = [kind] if kind is not None else list(KINDS)
        return [entry for k in kinds for entry in self._entries[k].values()]
