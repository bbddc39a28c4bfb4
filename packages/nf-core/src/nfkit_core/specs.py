"""Plain value types: what a plugin registers, and what an architecture is told about the data.

These are frozen dataclasses with no behaviour beyond checking their own values, so that any layer can use them:
an architecture's ``build`` receives a :class:`DataInfo`, a plugin registers an :class:`ArchitectureSpec`, the
registry (:mod:`nfkit_core.plugins.registry`) keeps each one in an :class:`Entry`. This module imports nothing of
nf but :mod:`nfkit_core.errors`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nfkit_core.errors import ConfigError, UnknownNameError

__all__ = ["DataInfo", "ArchitectureSpec", "DatasetSpec", "MetricSpec", "DistillerSpec", "AttentionBackend",
           "CommandSpec", "Entry"]


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
        config_class: a dataclass of the architecture's options; its fields become ``--set model.KEY=VALUE``.
        build: ``build(config, data: DataInfo) -> nfkit_core.Flow``; the registry checks that it returns a flow.
        description: one line for ``nf plugins`` and ``--help``.
        presets: named configurations, ``{"digits-small": {...field values...}}``.
        train_defaults: training options that come with a preset, ``{"imagenet64": {"lr": 1e-4, ...}}`` (e.g. the
            recipe of the paper whose model the preset is); they replace :class:`nfkit_core.train.TrainConfig`'s
            defaults for runs of that preset, and the run's own ``train`` options override them.
    """

    name: str
    config_class: type
    build: Callable[[Any, DataInfo], Any]
    description: str = ""
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def make_config(self, preset: str | None = None, **overrides: Any) -> Any:
        """A config from the dataclass defaults, then a preset, then explicit overrides.

        Args:
            preset: the name of one of the ``presets``, or ``None``.
            overrides: option values that replace the preset's and the defaults.

        Returns:
            an instance of ``config_class``.

        Raises:
            UnknownNameError: no preset of that name.
            ConfigError: an unknown option, or a value the config class refuses (its ``ValueError``).
        """
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
            raise ConfigError(f"unknown option(s) {unknown} for architecture {self.name!r}; known: {sorted(known)}")
        try:
            return self.config_class(**values)
        except ValueError as error:
            raise ConfigError(f"model options of architecture {self.name!r}: {error}") from error


@dataclass(frozen=True)
class DatasetSpec:
    """How to load a dataset.

    Attributes:
        name: the name used on the command line (``nf train --data NAME``).
        config_class: a dataclass of the dataset's options (``--set data.KEY=VALUE``).
        load: ``load(config, split) -> torch.utils.data.Dataset`` of ``(x, label)`` pairs with an ``info``
            attribute (a :class:`DataInfo`); ``split`` is ``"train"``, ``"val"`` or ``"test"``.
        description: one line for ``nf plugins`` and ``--help``.
    """

    name: str
    config_class: type
    load: Callable[[Any, str], Any]
    description: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """An evaluation metric, run by the evaluation package (nfkit-eval's ``nf eval --metrics NAME``).

    The evaluation package may register a subclass that adds behaviour; the registry accepts any ``MetricSpec``.

    Attributes:
        name: the name used on the command line.
        compute: the metric itself; the package that runs metrics defines the arguments it receives and what it
            returns (nfkit-eval documents its calling convention).
        description: one line for ``nf plugins`` and ``--help``.
        data: the data it applies to: ``"images"``, ``"vectors"`` or ``"any"``.
        default: whether it belongs to the metrics run when none are named.
    """

    name: str
    compute: Callable[..., Any]
    description: str = ""
    data: str = "any"
    default: bool = False


@dataclass(frozen=True)
class DistillerSpec:
    """A knowledge-distillation method (teacher flow to student flow), run by nfkit-distill's ``nf distill``.

    Attributes:
        name: the name used on the command line (``--loss NAME``).
        config_class: a dataclass of the method's options (weights of the loss terms, distance, ...).
        build: makes the distillation objective from a config, the teacher and the student; the package that
            runs distillers defines its exact signature (nfkit-distill documents it).
        description: one line for ``nf plugins`` and ``--help``.
    """

    name: str
    config_class: type
    build: Callable[..., Any]
    description: str = ""


def _always(q: Any) -> bool:
    return True


def _installed() -> bool:
    return True


@dataclass(frozen=True)
class AttentionBackend:
    """A scaled-dot-product attention implementation (see :mod:`nfkit_core.attention`).

    Attributes:
        name: the name an architecture's config selects it by (e.g. TarFlow's ``attention_backend``).
        attend: ``attend(q, k, v, causal, scale) -> Tensor`` on ``(batch, heads, tokens, head_dim)`` tensors; with
            ``causal`` and fewer queries than keys, the queries are the last positions (a cached decoding step).
        is_available: ``is_available(q) -> bool``, whether it can run on tensors like ``q`` (device, dtype). It is
            asked at every call, so it must be cheap: no library look-ups.
        description: one line for ``nf plugins``.
        is_installed: ``is_installed() -> bool``, whether the libraries it needs are installed; asked once, when a
            model resolves the backend.
    """

    name: str
    attend: Callable[..., Any]
    is_available: Callable[[Any], bool] = _always
    description: str = ""
    is_installed: Callable[[], bool] = _installed


@dataclass(frozen=True)
class CommandSpec:
    """An ``nf`` sub-command.

    Attributes:
        name: the sub-command (``nf NAME``).
        help: one line for ``nf --help``.
        add_arguments: ``add_arguments(parser)`` declares its options on an :class:`argparse.ArgumentParser`.
        run: ``run(args) -> int`` runs it and returns the exit status; raise an :class:`nfkit_core.errors.NfError`
            for a problem the user can fix (``nf`` prints it as one line).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Entry:
    """One registered thing and the plugin (and distribution) that registered it.

    Attributes:
        kind: ``"architecture"``, ``"dataset"``, ``"metric"``, ``"distiller"``, ``"attention backend"`` or
            ``"command"``.
        name: its name.
        spec: the registered value (an :class:`ArchitectureSpec`, a :class:`DatasetSpec`, ...).
        plugin: the plugin's name (its entry-point name).
        distribution: the distribution that installed the plugin.
        version: that distribution's version.
    """

    kind: str
    name: str
    spec: Any
    plugin: str
    distribution: str
    version: str

    def origin(self) -> str:
        """``plugin 'NAME' (distribution VERSION)``, for messages."""
        return f"plugin {self.plugin!r} ({' '.join(part for part in (self.distribution, self.version) if part)})"
