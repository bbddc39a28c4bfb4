"""The plugin system: hook specifications, the registry that plugins fill, and the manager that loads them."""

from nfkit_core.plugins.manager import (
    PluginInfo,
    PluginLoadWarning,
    PluginManager,
    get_plugin_manager,
    get_registry,
    hookimpl,
)
from nfkit_core.plugins.registry import (
    KINDS,
    ArchitectureSpec,
    AttentionBackend,
    CommandSpec,
    DataInfo,
    DatasetSpec,
    DuplicateNameError,
    Entry,
    Registry,
    UnknownNameError,
)

__all__ = ["KINDS", "ArchitectureSpec", "AttentionBackend", "CommandSpec", "DataInfo", "DatasetSpec",
           "DuplicateNameError", "Entry", "PluginInfo", "PluginLoadWarning", "PluginManager", "Registry",
           "UnknownNameError", "get_plugin_manager", "get_registry", "hookimpl"]
