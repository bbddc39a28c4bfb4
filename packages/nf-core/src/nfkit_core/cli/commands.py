"""nf's own sub-commands (``nf train``, ``nf sample``, ``nf plugins``, ``nf data``), registered as a plugin by
:func:`nfkit_core.cli.main` through the same hook as a plugin's commands."""

from __future__ import annotations

from nfkit_core.cli import data_command, plugins_command, sample_command, train_command
from nfkit_core.plugins.hookspecs import hookimpl
from nfkit_core.plugins.registry import Registrar
from nfkit_core.specs import CommandSpec


@hookimpl
def nf_register_commands(commands: Registrar[CommandSpec]) -> None:
    commands.add(plugins_command.COMMAND)
    commands.add(train_command.COMMAND)
    commands.add(sample_command.COMMAND)
    commands.add(data_command.COMMAND)
