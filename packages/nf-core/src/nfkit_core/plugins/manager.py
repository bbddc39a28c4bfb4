"""Finding, loading and asking the plugins.

nfkit-core's own built-ins are registered first, then every module listed in the ``nfkit`` entry-point group. A plugin
that fails to import is recorded (with its error) and skipped; the others still load. Two environment variables
steer loading:

``NF_DISABLE_PLUGIN_AUTOLOAD=1``
    load only nfkit-core's built-ins (and plugins registered by hand with :meth:`PluginManager.register`);
``NF_BLOCK_PLUGINS=name,other``
    skip the entry points (or whole distributions) with these names.
"""

from __future__ import annotations

import importlib.metadata
import os
import traceback
import warnings
from dataclasses import dataclass, field
from types import ModuleType

import pluggy

from nfkit_core.plugins import hookspecs
from nfkit_core.plugins.registry import Registry

__all__ = ["PluginManager", "PluginInfo", "PluginLoadWarning", "get_plugin_manager", "get_registry", "hookimpl"]

hookimpl = pluggy.HookimplMarker("nfkit")
"""Decorator for the hook functions of a plugin module."""

ENTRY_POINT_GROUP = "nfkit"
HOOKS = ("nf_register_architectures", "nf_register_datasets", "nf_register_metrics", "nf_register_distillers",
         "nf_register_attention_backends", "nf_register_commands")


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; the others were."""


@dataclass
class PluginInfo:
    """What ``nf plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    error: str | None = None
    registered: list[str] = field(default_factory=list)


class PluginManager:
    """A :class:`pluggy.PluginManager` for the ``nf`` project that fills a :class:`Registry`."""

    def __init__(self, autoload: bool | None = None, blocked: set[str] | None = None) -> None:
        if autoload is None:
            autoload = os.environ.get("NF_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in {"1", "true", "yes"}
        if blocked is None:
            blocked = {n.strip() for n in os.environ.get("NF_BLOCK_PLUGINS", "").split(",") if n.strip()}
        self.pm = pluggy.PluginManager("nfkit")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.blocked = blocked
        from nfkit_core import builtins
        from nfkit_core import version as nf_version

        self.register(builtins, "nfkit-core", "nfkit-core", nf_version())
        if autoload:
            self._load_entry_points()
        self._registry: Registry | None = None

    def register(self, module: ModuleType | object, name: str, distribution: str = "<local>",
                 version: str = "") -> None:
        """Register a plugin object (a module with hook implementations) by hand."""
        self.pm.register(module, name=name)
        self.plugins[name] = PluginInfo(name, distribution, version)
        self._registry = None

    def _load_entry_points(self) -> None:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            distribution = dist.metadata["Name"] if dist is not None else "<unknown>"
            version = dist.version if dist is not None else ""
            if entry_point.name in self.blocked or distribution in self.blocked:
                continue
            if entry_point.name in self.plugins:
                continue
            try:
                module = entry_point.load()
                self.pm.register(module, name=entry_point.name)
            except Exception as error:  # a broken plugin must not take the others down
                message = f"{type(error).__name__}: {error}"
                self.plugins[entry_point.name] = PluginInfo(entry_point.name, distribution, version, error=message)
                warnings.warn(f"nf plugin {entry_point.name!r} from {distribution} {version} failed to load "
                              f"({message}); the other plugins are loaded", PluginLoadWarning, stacklevel=2)
                continue
            self.plugins[entry_point.name] = PluginInfo(entry_point.name, distribution, version)

    @property
    def registry(self) -> Registry:
        """The registry filled by every loaded plugin (built once, on first use)."""
        return self.fill_registry()

    def fill_registry(self) -> Registry:
        """Ask every plugin to register (once) and return the registry."""
        if self._registry is None:
            self._registry = self._ask_plugins()
        return self._registry

    def _ask_plugins(self) -> Registry:
        registry = Registry()
        for hook_name in HOOKS:
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                info = self.plugins.get(impl.plugin_name, PluginInfo(impl.plugin_name, "<local>", ""))
                registry.set_source(info.name, info.distribution, info.version)
                before = {(e.kind, e.name) for e in registry.entries()}
                try:
                    impl.function(registry=registry)
                except Exception as error:
                    if type(error).__name__ == "DuplicateNameError":
                        raise
                    info.error = f"{hook_name} failed: {type(error).__name__}: {error}"
                    warnings.warn(f"nf plugin {info.name!r} from {info.distribution}: {info.error}\n"
                                  f"{traceback.format_exc()}", PluginLoadWarning, stacklevel=2)
                    continue
                info.registered.extend(f"{e.kind} {e.name}" for e in registry.entries()
                                       if (e.kind, e.name) not in before)
        return registry


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created, and plugins loaded, on first call)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def get_registry() -> Registry:
    """The process-wide registry filled by every plugin."""
    return get_plugin_manager().registry
