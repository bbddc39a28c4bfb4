"""The hooks an ``nf`` plugin may implement, and the markers that declare them.

A plugin is a module listed under the ``nfkit`` entry-point group of its distribution::

    [project.entry-points.nfkit]
    my-flow = "my_flow.plugin"

whose hook functions carry the :data:`hookimpl` marker and are named after the hooks below. Each hook receives one
typed :class:`~nfkit_core.plugins.registry.Registrar` and calls its ``add`` once per thing the plugin provides::

    from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl

    @hookimpl
    def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
        architectures.add(ArchitectureSpec("my-flow", MyConfig, build_my_flow, "one line for nf plugins"))

A hook implementation may leave out its parameter (pluggy passes only the arguments it names). A function named
``nf_...`` that nf cannot call, a misspelt hook or a hook without ``@hookimpl``, stops the plugin from loading with
a warning that names the plugin and the function. The hook names nf knows are those of this module (:func:`hook_names`).
"""

from __future__ import annotations

import inspect

import pluggy

from nfkit_core.plugins.registry import Registrar
from nfkit_core.specs import ArchitectureSpec, AttentionBackend, CommandSpec, DatasetSpec, DistillerSpec, MetricSpec

__all__ = ["PROJECT", "hookspec", "hookimpl", "hook_names", "hook_parameter"]

PROJECT = "nfkit"
"""pluggy's project name, and the entry-point group plugins are listed under."""

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks the hook specifications below (a :class:`pluggy.HookspecMarker`)."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations, e.g. ``@hookimpl def nf_register_architectures(architectures): ...``
(a :class:`pluggy.HookimplMarker`, whose options such as ``tryfirst`` pluggy documents)."""


@hookspec
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    """Register flow architectures.

    Args:
        architectures: call ``architectures.add(ArchitectureSpec(name, config_class, build, description,
            presets))`` for each architecture. ``build(config, data_info)`` must return an
            :class:`nfkit_core.Flow`; ``nf train --arch NAME`` and checkpoints find it by ``name``.
    """


@hookspec
def nf_register_datasets(datasets: Registrar[DatasetSpec]) -> None:
    """Register datasets.

    Args:
        datasets: call ``datasets.add(DatasetSpec(name, config_class, load, description))`` for each dataset.
            ``load(config, split)`` returns a :class:`torch.utils.data.Dataset` of ``(x, label)`` pairs with an
            ``info`` attribute (a :class:`~nfkit_core.specs.DataInfo`); ``nf train --data NAME`` finds it.
    """


@hookspec
def nf_register_metrics(metrics: Registrar[MetricSpec]) -> None:
    """Register evaluation metrics.

    Args:
        metrics: call ``metrics.add(MetricSpec(name, compute, description, data, default))`` for each metric; the
            evaluation package (nfkit-eval) runs them by name and defines the arguments ``compute`` receives.
    """


@hookspec
def nf_register_distillers(distillers: Registrar[DistillerSpec]) -> None:
    """Register knowledge-distillation methods.

    Args:
        distillers: call ``distillers.add(DistillerSpec(name, config_class, build, description))`` for each method;
            the distillation package (nfkit-distill) runs them by name and defines what ``build`` receives.
    """


@hookspec
def nf_register_attention_backends(attention_backends: Registrar[AttentionBackend]) -> None:
    """Register attention implementations.

    Args:
        attention_backends: call ``attention_backends.add(AttentionBackend(name, attend, is_available,
            description, is_installed))`` for each backend. An architecture built through the registry can then
            name it in its config (e.g. TarFlow's ``attention_backend``); see :mod:`nfkit_core.attention`.
    """


@hookspec
def nf_register_commands(commands: Registrar[CommandSpec]) -> None:
    """Register ``nf`` sub-commands.

    Args:
        commands: call ``commands.add(CommandSpec(name, help, add_arguments, run))`` for each sub-command;
            ``nf NAME`` parses its options with ``add_arguments`` and calls ``run(args)``.
    """


def hook_names() -> list[str]:
    """The names of the hooks above, in the order nf calls them."""
    return [name for name, value in globals().items()
            if inspect.isfunction(value) and hasattr(value, f"{PROJECT}_spec")]


def hook_parameter(name: str) -> str:
    """The one parameter of hook ``name``: the attribute of :class:`~nfkit_core.plugins.registry.Registry` it gets."""
    (parameter,) = inspect.signature(globals()[name]).parameters
    return parameter
