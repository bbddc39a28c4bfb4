"""The hooks an ``nf`` plugin may implement.

Every hook is a *registry callback*: the plugin receives the shared :class:`nfkit_core.plugins.Registry` and calls
``registry.add(kind, name, obj)`` (or one of its shorthands) for each thing it provides. A plugin is a module listed
under the ``nfkit`` entry-point group::

    [project.entry-points.nfkit]
    my-flow = "my_flow.plugin"

whose functions are decorated with :data:`nfkit_core.plugins.hookimpl`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("nfkit")


@hookspec
def nf_register_architectures(registry) -> None:
    """Add architectures: ``registry.add_architecture(ArchitectureSpec(...))``."""


@hookspec
def nf_register_datasets(registry) -> None:
    """Add datasets: ``registry.add_dataset(DatasetSpec(...))``."""


@hookspec
def nf_register_metrics(registry) -> None:
    """Add evaluation metrics: ``registry.add("metric", name, callable)``."""


@hookspec
def nf_register_distillers(registry) -> None:
    """Add knowledge-distillation methods: ``registry.add("distiller", name, obj)``."""


@hookspec
def nf_register_attention_backends(registry) -> None:
    """Add attention implementations: ``registry.add_attention_backend(AttentionBackend(...))``."""


@hookspec
def nf_register_commands(registry) -> None:
    """Add ``nf`` sub-commands: ``registry.add_command(CommandSpec(...))``."""
