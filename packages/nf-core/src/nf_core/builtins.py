"""nf-core's own plugin: what nf-core registers through the same hooks as every other plugin."""

from __future__ import annotations

from nf_core.attention import BUILTIN_BACKENDS
from nf_core.plugins.manager import hookimpl


@hookimpl
def nf_register_attention_backends(registry) -> None:
    for backend in BUILTIN_BACKENDS:
        registry.add_attention_backend(backend)


@hookimpl
def nf_register_datasets(registry) -> None:
    from nf_core.data import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        registry.add_dataset(spec)


@hookimpl
def nf_register_commands(registry) -> None:
    from nf_core.cli import plugins_command, sample_command, train_command

    registry.add_command(plugins_command.COMMAND)
    registry.add_command(train_command.COMMAND)
    registry.add_command(sample_command.COMMAND)
