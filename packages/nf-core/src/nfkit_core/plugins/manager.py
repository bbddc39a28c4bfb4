"""Finding, loading, checking and asking the plugins.

nfkit-core's built-ins (:mod:`nfkit_core.builtins`) are registered first, then every module listed in the ``nfkit``
entry-point group. Problems are reported as a :class:`PluginLoadWarning` naming the plugin and its distribution,
and shown by ``nf plugins``; the other plugins still load:

- a plugin that fails to import, or whose hook raises;
- a plugin with a function nf cannot call: a misspelt hook (pluggy's ``check_pending``) or an ``nf_...`` function
  without ``@hookimpl`` (the plugin is not loaded);
- two distributions declaring the same entry-point name (neither is loaded);
- a name (e.g. an architecture) registered by two plugins: using it is an error naming both.

Two environment variables steer loading:

``NF_DISABLE_PLUGIN_AUTOLOAD=1``
    load only nfkit-core's built-ins (and plugins registered by hand with :meth:`PluginManager.register`);
``NF_BLOCK_PLUGINS=name,other``
    skip the plugins (entry-point names) or whole distributions with these names (pluggy's ``set_blocked``).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import traceback
import warnings
from dataclasses import dataclass, field

import pluggy

from nfkit_core import builtins
from nfkit_core import version as nfkit_core_version
from nfkit_core.errors import UnknownNameError
from nfkit_core.plugins import hookspecs
from nfkit_core.plugins.registry import Registry

__all__ = ["PluginManager", "PluginInfo", "PluginLoadWarning", "get_plugin_manager", "get_registry"]

ENTRY_POINT_GROUP = hookspecs.PROJECT


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded or used as it is; the others were."""


@dataclass
class PluginInfo:
    """What ``nf plugins`` shows about one plugin.

    Attributes:
        name: the plugin's name (its entry-point name).
        distribution: the distribution that installed it.
        version: that distribution's version.
        error: why the plugin is not (fully) loaded, if it is not.
        registered: ``"KIND NAME"`` of everything it registered.
        clashes: messages about names it registered that another plugin registered too.
    """

    name: str
    distribution: str
    version: str
    error: str | None = None
    registered: list[str] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)


class _Pluggy(pluggy.PluginManager):
    """pluggy's manager, remembering the ``nf_...`` functions of a plugin that lack ``@hookimpl``."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.undecorated: dict[int, list[str]] = {}  # id(plugin) -> function names

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        options = super().parse_hookimpl_opts(plugin, name)
        if options is None and name.startswith("nf_") and inspect.isfunction(getattr(plugin, name, None)):
            self.undecorated.setdefault(id(plugin), []).append(name)
        return options


class PluginManager:
    """Loads the ``nf`` plugins into a :class:`pluggy.PluginManager` and fills a :class:`Registry` from them.

    Args:
        autoload: load the entry-point plugins (default: unless ``NF_DISABLE_PLUGIN_AUTOLOAD`` is set).
        blocked: plugin or distribution names to skip (default: ``NF_BLOCK_PLUGINS``).
    """

    def __init__(self, autoload: bool | None = None, blocked: set[str] | None = None) -> None:
        if autoload is None:
            autoload = os.environ.get("NF_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in {"1", "true", "yes"}
        if blocked is None:
            blocked = {n.strip() for n in os.environ.get("NF_BLOCK_PLUGINS", "").split(",") if n.strip()}
        self.pm = _Pluggy()
        self.pm.add_hookspecs(hookspecs)
        for name in blocked:
            self.pm.set_blocked(name)
        self.plugins: list[PluginInfo] = []
        self._registry: Registry | None = None
        self.register(builtins, "nfkit-core", "nfkit-core", nfkit_core_version())
        if autoload:
            self._load_entry_points()

    def info(self, name: str) -> PluginInfo:
        """The :class:`PluginInfo` of the plugin called ``name``.

        Args:
            name: the plugin's name (its entry-point name).

        Raises:
            UnknownNameError: no plugin of that name.
        """
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        raise UnknownNameError(f"no plugin {name!r}; plugins: {', '.join(p.name for p in self.plugins)}")

    def has_plugin(self, name: str) -> bool:
        """Whether a plugin of this name is registered.

        Args:
            name: the plugin's name.
        """
        return self.pm.has_plugin(name)

    def register(self, plugin: object, name: str, distribution: str = "<local>", version: str = "") -> None:
        """Register a plugin object (a module with hook implementations) by hand.

        Args:
            plugin: the object whose hook implementations to register.
            name: the plugin's name (blocked if listed in ``NF_BLOCK_PLUGINS``).
            distribution: the distribution it is attributed to, for ``nf plugins`` and messages.
            version: that distribution's version.
        """
        if self.pm.register(plugin, name=name) is not None:  # None: blocked
            self.plugins.append(PluginInfo(name, distribution, version))
            self._registry = None

    def _load_entry_points(self) -> None:
        declared: dict[str, list[tuple[importlib.metadata.EntryPoint, str, str]]] = {}
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            distribution = dist.metadata["Name"] if dist is not None else "<unknown>"
            version = dist.version if dist is not None else ""
            if self.pm.is_blocked(entry_point.name) or self.pm.is_blocked(distribution):
                continue
            declared.setdefault(entry_point.name, []).append((entry_point, distribution, version))
        for name, declarations in declared.items():
            if len(declarations) > 1 or self.pm.has_plugin(name):
                self._report_entry_point_clash(name, declarations)
                continue
            entry_point, distribution, version = declarations[0]
            try:
                module = entry_point.load()
            except Exception as error:  # a broken plugin must not take the others down
                self._fail(PluginInfo(name, distribution, version), f"failed to load ({type(error).__name__}: "
                                                                   f"{error}); the other plugins are loaded")
                continue
            try:
                self.register(module, name, distribution, version)
            except pluggy.PluginValidationError as error:  # e.g. a hook parameter the hook does not have
                if self.pm.has_plugin(name):  # pluggy leaves the hooks before the bad one registered
                    self.pm.unregister(name=name)
                reason = " ".join(str(error).split())
                self._fail(PluginInfo(name, distribution, version), f"is not loaded: {reason}")

    def _report_entry_point_clash(self, name: str, declarations: list[tuple[object, str, str]]) -> None:
        owners = [f"{distribution} {version}".strip() for _, distribution, version in declarations]
        if self.pm.has_plugin(name):
            owners.insert(0, f"{self.info(name).distribution} (already registered)")
        message = (f"the plugin name {name!r} is declared by more than one distribution: {' and '.join(owners)}; "
                   f"it is not loaded from {', '.join(d for _, d, _ in declarations)}. Uninstall one, or skip one "
                   f"with NF_BLOCK_PLUGINS={declarations[-1][1]}")
        for _, distribution, version in declarations:
            self._fail(PluginInfo(name, distribution, version), message)

    def _fail(self, info: PluginInfo, reason: str, detail: str = "") -> None:
        """Record why a plugin is not loaded (or did not register everything) and warn, naming it."""
        info.error = reason
        if info not in self.plugins:
            self.plugins.append(info)
        warnings.warn(f"nf plugin {info.name!r} from {info.distribution} {info.version}: {reason}"
                      + (f"\n{detail}" if detail else ""), PluginLoadWarning, stacklevel=3)

    def _check_hooks(self) -> None:
        """Unregister (with a warning) every plugin with a function nf cannot call."""
        for info in self.plugins:
            plugin = self.pm.get_plugin(info.name)
            names = self.pm.undecorated.get(id(plugin), []) if plugin is not None else []
            if names:
                self.pm.unregister(plugin)
                self._fail(info, f"{', '.join(names)} lacks the @hookimpl marker, so nf would never call it; "
                                 f"decorate it with nfkit_core.plugins.hookimpl (nf's hooks: "
                                 f"{', '.join(hookspecs.hook_names())})")
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as error:
                name = self.pm.get_name(error.plugin)
                unknown = [impl.function.__name__ for caller in self.pm.hook.__dict__.values()
                           if isinstance(caller, pluggy.HookCaller) and not caller.has_spec()
                           for impl in caller.get_hookimpls() if impl.plugin is error.plugin]
                self.pm.unregister(error.plugin)
                self._fail(self.info(name), f"unknown hook {', '.join(unknown)} (misspelt?); nf's hooks: "
                                            f"{', '.join(hookspecs.hook_names())}")

    @property
    def registry(self) -> Registry:
        """The registry filled by every loaded plugin (built once, on first use)."""
        return self.fill_registry()

    def fill_registry(self) -> Registry:
        """Ask every plugin to register (once) and return the registry."""
        if self._registry is None:
            self._check_hooks()
            self._registry = self._ask_plugins()
        return self._registry

    def _ask_plugins(self) -> Registry:
        registry = Registry()
        registrars = registry.registrars()
        for hook_name in hookspecs.hook_names():
            parameter = hookspecs.hook_parameter(hook_name)
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                info = self.info(impl.plugin_name)
                registry.attribute_to(info.name, info.distribution, info.version)
                try:
                    impl.function(**{name: registrars[parameter] for name in impl.argnames})
                except Exception as error:  # a plugin's bug must not take the others down
                    self._fail(info, f"{hook_name} failed: {type(error).__name__}: {error}",
                               detail=traceback.format_exc())
        for info in self.plugins:
            info.registered = [f"{e.kind} {e.name}" for e in registry.registrations() if e.plugin == info.name]
            info.clashes = []
        for entries, message in registry.clashes():
            warnings.warn(message, PluginLoadWarning, stacklevel=3)
            for plugin in dict.fromkeys(entry.plugin for entry in entries):
                self.info(plugin).clashes.append(message)
        return registry


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created, and plugins loaded, on first call)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def get_registry() -> Registry:
    """The process-wide registry filled by every plugin.

    Example:
        >>> from nfkit_core.plugins import get_registry
        >>> registry = get_registry()
        >>> "toy2d" in registry.datasets.names()  # nfkit-core's own datasets
        True
        >>> registry.datasets.get("toy2d").name
        'toy2d'
        >>> registry.datasets.get("toy3d")
        Traceback (most recent call last):
        ...
        nfkit_core.errors.UnknownNameError: unknown dataset 'toy3d'; available: ...
    """
    return get_plugin_manager().registry
