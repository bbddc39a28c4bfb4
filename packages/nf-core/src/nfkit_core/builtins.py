"""nfkit-core's own plugin: what nfkit-core registers through the same hooks as every other plugin."""

from __future__ import annotations

from nfkit_core.attention import BUILTIN_BACKENDS
from nfkit_core.plugins.manager import hookimpl


@hookimpl
def nf_register_attention_backends(registry) -> None:
    for backend in BUILTIN_BACKENDS:
        registry.add_attention_backend(backend)


@hookimpl
def nf_register_datasets(registry) -> None:
    from nfkit_core.data import BUILTIN_DATASETS

    for spec in BUILTIN_DATASETS:
        registry.add_dataset(spec)


@hookimpl
def nf_register_commands(registry) -> None:
    from nfkit_core.cli import data_command, plugins_command, sample_command, train_command

    registry.add_command(plugins_command.COMMAND)
    registry.add_command(train_command.COMMAND)
    registry.add_command(sample_command.COMMAND)
    registry.add_command(data_command.COMMAND)
