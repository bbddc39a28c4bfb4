"""The plugin layer: hook specifications, the typed registry that plugins fill, and the manager that loads them.

A plugin author needs :data:`~nfkit_core.plugins.hookspecs.hookimpl`, the spec types and :class:`Registrar` (all
importable from here); see :mod:`nfkit_core.plugins.hookspecs` for the hooks.
"""

from nfkit_core.errors import DuplicateNameError, PluginError, UnknownNameError
from nfkit_core.plugins.hookspecs import hook_names, hookimpl
from nfkit_core.plugins.manager import PluginInfo, PluginLoadWarning, PluginManager, get_plugin_manager, get_registry
from nfkit_core.plugins.registry import Registrar, Registry, is_flow
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

__all__ = ["ArchitectureSpec", "AttentionBackend", "CommandSpec", "DataInfo", "DatasetSpec", "DistillerSpec",
           "DuplicateNameError", "Entry", "MetricSpec", "PluginError", "PluginInfo", "PluginLoadWarning",
           "PluginManager", "Registrar", "Registry", "UnknownNameError", "get_plugin_manager", "get_registry",
           "hook_names", "hookimpl", "is_flow"]
