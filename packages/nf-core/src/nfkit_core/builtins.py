"""nfkit-core's own plugin: the datasets and attention backends it registers through the same hooks as every other
plugin. (nf's own sub-commands are registered by the command line, :mod:`nfkit_core.cli.commands`.)"""

from __future__ import annotations

from nfkit_core.attention import BUILTIN_BACKENDS
from nfkit_core.data import BUILTIN_DATASETS
from nfkit_core.plugins.hookspecs import hookimpl
from nfkit_core.plugins.registry import Registrar
from nfkit_core.specs import AttentionBackend, DatasetSpec


@hookimpl
def nf_register_attention_backends(attention_backends: Registrar[AttentionBackend]) -> None:
    for backend in BUILTIN_BACKENDS:
        attention_backends.add(backend)


@hookimpl
def nf_register_datasets(datasets: Registrar[DatasetSpec]) -> None:
    for spec in BUILTIN_DATASETS:
        datasets.add(spec)
