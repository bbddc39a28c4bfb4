"""The nf plugin: registers the distillers and the ``nf distill`` command."""

from nfkit_core.plugins import CommandSpec, DistillerSpec, Registrar, hookimpl
from nfkit_distill.command import COMMAND
from nfkit_distill.distillers import DISTILLERS


@hookimpl
def nf_register_distillers(distillers: Registrar[DistillerSpec]) -> None:
    for spec in DISTILLERS:
        distillers.add(spec)


@hookimpl
def nf_register_commands(commands: Registrar[CommandSpec]) -> None:
    commands.add(COMMAND)
