"""The registry that plugins fill: one typed :class:`Registrar` per kind of thing a plugin provides.

Each hook of :mod:`nfkit_core.plugins.hookspecs` hands its plugin one registrar (``architectures``, ``datasets``,
``metrics``, ``distillers``, ``attention_backends``, ``commands``); the plugin calls ``add(spec)`` on it. Users of the
registry ask the same registrar: ``registry.architectures.get("glow")`` returns an
:class:`~nfkit_core.specs.ArchitectureSpec`. Flows are built through :meth:`Registry.build_flow`, which checks that
the architecture's ``build`` returned a flow and names the plugin when it did not.

A name registered by two plugins is not an error at registration time, so that ``nf --help`` and ``nf plugins``
still work and can show the clash; *using* the name is (:class:`~nfkit_core.errors.DuplicateNameError`, naming both
plugins and how to block one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from torch import nn

from nfkit_core.attention import backends_in_scope
from nfkit_core.errors import ConfigError, DuplicateNameError, PluginError, UnknownNameError
from nfkit_core.flow import Flow
from nfkit_core.specs import (
    ArchitectureSpec,
    AttentionBackend,
    CommandSpec,
    DataInfo,
    DatasetSpec,
    DistillerSpec,
    Entry,
    MetricSpec,
)

__all__ = ["Registrar", "Registry", "is_flow"]

SpecT = TypeVar("SpecT", ArchitectureSpec, DatasetSpec, MetricSpec, DistillerSpec, AttentionBackend, CommandSpec)
"""The kind of spec a :class:`Registrar` holds."""

DIRECT = ("<direct>", "<direct>", "")
"""The source of registrations made outside any plugin (tests, scripts)."""


def is_flow(obj: object) -> bool:
    """Whether ``obj`` is an nf flow, what an architecture's ``build`` must return: a :class:`torch.nn.Module` (the
    trainer needs its ``parameters``, ``state_dict``, ``train``/``eval`` and ``to``) that satisfies the
    :class:`~nfkit_core.Flow` protocol, as every :class:`~nfkit_core.NormalizingFlow` does.

    Args:
        obj: anything.
    """
    return isinstance(obj, nn.Module) and isinstance(obj, Flow)


class Registrar(Generic[SpecT]):
    """The registered things of one kind, by name, each remembering the plugin that added it.

    Args:
        kind: what is registered, for messages (``"architecture"``, ``"attention backend"``, ...).
        spec_type: the value type every registration must be (:class:`~nfkit_core.specs.ArchitectureSpec`, ...).
    """

    def __init__(self, kind: str, spec_type: type[SpecT]) -> None:
        self.kind = kind
        self.spec_type = spec_type
        self._entries: dict[str, Entry] = {}
        self._registrations: list[Entry] = []
        self._source = DIRECT

    def attribute_to(self, plugin: str, distribution: str, version: str) -> None:
        """Attribute the registrations that follow to ``plugin`` from ``distribution`` (called by the manager).

        Args:
            plugin: the plugin's entry-point name.
            distribution: the distribution that installed it.
            version: that distribution's version.
        """
        self._source = (plugin, distribution, version)

    def add(self, spec: SpecT) -> None:
        """Register ``spec`` under ``spec.name``.

        Args:
            spec: the value to register, of this registrar's spec type.

        Raises:
            PluginError: ``spec`` is not of this registrar's type.
        """
        if not isinstance(spec, self.spec_type):
            raise PluginError(f"{self.kind} registrations take a {self.spec_type.__name__}, got "
                              f"{type(spec).__name__}")
        entry = Entry(self.kind, spec.name, spec, *self._source)
        self._registrations.append(entry)
        self._entries.setdefault(spec.name, entry)

    def entry(self, name: str) -> Entry:
        """The :class:`~nfkit_core.specs.Entry` of ``name``.

        Args:
            name: the registered name.

        Returns:
            the entry, with the spec and the plugin and distribution that registered it.

        Raises:
            UnknownNameError: nothing of that name; the message lists the available names.
            DuplicateNameError: two plugins registered the name; the message names both and the way out.
        """
        if name in self.clashes():
            raise DuplicateNameError(self.clash_message(name))
        try:
            return self._entries[name]
        except KeyError:
            available = ", ".join(self.names()) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {available}") from None

    def get(self, name: str) -> SpecT:
        """The spec registered as ``name``.

        Args:
            name: the registered name (``nf train --arch NAME``, ``--data NAME``, ...).

        Returns:
            the spec.

        Raises:
            UnknownNameError: nothing of that name; the message lists the available names.
            DuplicateNameError: two plugins registered the name.
        """
        return self.entry(name).spec

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """The registered entries in registration order (the first of a clashing name)."""
        return list(self._entries.values())

    def registrations(self) -> list[Entry]:
        """Every registration in order, those of a clashing name included."""
        return list(self._registrations)

    def clashes(self) -> dict[str, list[Entry]]:
        """Names that more than one plugin registered, with every registration of each."""
        by_name: dict[str, list[Entry]] = {}
        for entry in self._registrations:
            by_name.setdefault(entry.name, []).append(entry)
        return {name: entries for name, entries in by_name.items() if len(entries) > 1}

    def clash_message(self, name: str) -> str:
        """Why ``name`` cannot be used, and how to make it usable.

        Args:
            name: a name that more than one plugin registered.
        """
        entries = self.clashes()[name]
        by = " and ".join(entry.origin() for entry in entries)
        return (f"{self.kind} {name!r} is registered by more than one plugin: {by}; uninstall one of them, or skip "
                f"one with NF_BLOCK_PLUGINS={entries[-1].plugin}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[SpecT]:
        return (entry.spec for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


class Registry:
    """Everything the plugins registered, one :class:`Registrar` per kind.

    The attribute names are the parameter names of the hooks in :mod:`nfkit_core.plugins.hookspecs`:
    ``architectures``, ``datasets``, ``metrics``, ``distillers``, ``attention_backends`` and ``commands``.
    """

    def __init__(self) -> None:
        self.architectures: Registrar[ArchitectureSpec] = Registrar("architecture", ArchitectureSpec)
        self.datasets: Registrar[DatasetSpec] = Registrar("dataset", DatasetSpec)
        self.metrics: Registrar[MetricSpec] = Registrar("metric", MetricSpec)
        self.distillers: Registrar[DistillerSpec] = Registrar("distiller", DistillerSpec)
        self.attention_backends: Registrar[AttentionBackend] = Registrar("attention backend", AttentionBackend)
        self.commands: Registrar[CommandSpec] = Registrar("command", CommandSpec)

    def registrars(self) -> dict[str, Registrar[Any]]:
        """Every registrar, by attribute name."""
        return {name: value for name, value in vars(self).items() if isinstance(value, Registrar)}

    def attribute_to(self, plugin: str, distribution: str, version: str) -> None:
        """Attribute the registrations that follow to ``plugin`` from ``distribution`` (called by the manager).

        Args:
            plugin: the plugin's entry-point name.
            distribution: the distribution that installed it.
            version: that distribution's version.
        """
        for registrar in self.registrars().values():
            registrar.attribute_to(plugin, distribution, version)

    def entries(self) -> list[Entry]:
        """Every entry of every kind (the first registration of a clashing name)."""
        return [entry for registrar in self.registrars().values() for entry in registrar.entries()]

    def registrations(self) -> list[Entry]:
        """Every registration of every kind, those of clashing names included."""
        return [entry for registrar in self.registrars().values() for entry in registrar.registrations()]

    def clashes(self) -> list[tuple[list[Entry], str]]:
        """Each name that more than one plugin registered: its registrations, and the message saying what to do."""
        return [(entries, registrar.clash_message(name)) for registrar in self.registrars().values()
                for name, entries in registrar.clashes().items()]

    def load_dataset(self, name: str, config: Any = None, split: str = "train") -> Any:
        """Load ``split`` of the registered dataset ``name``.

        Args:
            name: the registered dataset name.
            config: an instance of the dataset's config class; its defaults when ``None``.
            split: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            the dataset of ``(x, label)`` pairs, with its :class:`~nfkit_core.specs.DataInfo` as ``info``.

        Raises:
            UnknownNameError, DuplicateNameError: as :meth:`Registrar.entry`.
            PluginError: ``load`` returned a dataset without an ``info`` attribute of type DataInfo.
        """
        entry = self.datasets.entry(name)
        dataset = entry.spec.load(config if config is not None else entry.spec.config_class(), split)
        if not isinstance(getattr(dataset, "info", None), DataInfo):
            raise PluginError(f"dataset {name!r} of {entry.origin()}: load() returned a {type(dataset).__name__} "
                              f"without an `info` attribute of type DataInfo; a dataset must describe its data")
        return dataset

    def build_flow(self, architecture: str, config: Any, data: DataInfo) -> Flow:
        """Build the registered ``architecture`` from its ``config`` for ``data``.

        The registered attention backends can be named in the config (see :mod:`nfkit_core.attention`).

        Args:
            architecture: the registered architecture name.
            config: an instance of its config class (e.g. from :meth:`ArchitectureSpec.make_config
                <nfkit_core.specs.ArchitectureSpec.make_config>`).
            data: what the flow models.

        Returns:
            the flow.

        Raises:
            UnknownNameError, DuplicateNameError: as :meth:`Registrar.entry`.
            ConfigError: the architecture refused the config (its ``ValueError``).
            PluginError: ``build`` returned something that is not a flow.
        """
        entry = self.architectures.entry(architecture)
        backends = {backend.name: backend for backend in self.attention_backends}
        try:
            with backends_in_scope(backends):
                flow = entry.spec.build(config, data)
        except ValueError as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"architecture {architecture!r} cannot be built with these options: {error}") from error
        if not is_flow(flow):
            problem = (", which has the methods of nfkit_core.Flow but is not a torch.nn.Module (the trainer needs "
                       "its parameters and state_dict); build it as an nfkit_core.NormalizingFlow"
                       if isinstance(flow, Flow) else ", not an nfkit_core.Flow; the plugin must return the flow it "
                                                      "builds")
            raise PluginError(f"architecture {architecture!r} of {entry.origin()}: build() returned a "
                              f"{type(flow).__name__}{problem}")
        return flow
