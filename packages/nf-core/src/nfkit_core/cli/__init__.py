"""The ``nf`` command line. Every sub-command comes from the plugin registry: nf's own (:mod:`.commands`) and those
of the installed plugins.

``main`` prints nf's own errors (:class:`nfkit_core.errors.NfError`) as one line and exits with status 2; any
other exception keeps its traceback, since it is a bug (in nf, in a plugin) or a failure of the machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nfkit_core import version
from nfkit_core.cli import commands
from nfkit_core.errors import NfError
from nfkit_core.plugins.manager import PluginManager, get_plugin_manager
from nfkit_core.plugins.registry import Registry

__all__ = ["main", "build_parser", "COMMANDS_PLUGIN"]

COMMANDS_PLUGIN = "nfkit-core-commands"
"""The plugin name under which nf's own sub-commands are registered."""


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    """The ``nf`` parser with one sub-parser per registered command.

    Args:
        registry: the registry whose commands become sub-commands (see :func:`with_commands`).

    Returns:
        the parser; each sub-command's parsed arguments carry the function that runs it.
    """
    parser = argparse.ArgumentParser(
        prog="nf",
        description="nf: train, sample and evaluate normalizing flows. Architectures, datasets and extra commands "
                    "come from plugins (see `nf plugins`).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for spec in registry.commands:
        # "resolve" lets a command replace -h/--help (nf train answers it after reading --arch and --data).
        sub = subparsers.add_parser(spec.name, help=spec.help, description=spec.help,
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                    conflict_handler="resolve")
        spec.add_arguments(sub)
        sub.set_defaults(_run=spec.run)
    return parser


def with_commands(manager: PluginManager) -> PluginManager:
    """``manager`` with nf's own sub-commands registered (once).

    Args:
        manager: the plugin manager, usually the process-wide one.

    Returns:
        ``manager`` itself, for chaining.
    """
    if not manager.has_plugin(COMMANDS_PLUGIN):
        manager.register(commands, COMMANDS_PLUGIN, "nfkit-core", version())
    return manager


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nf`` script.

    Args:
        argv: the arguments after ``nf``; ``None`` reads :data:`sys.argv`.

    Returns:
        the command's exit status (0 when it returns nothing), or 2 after printing an
        :class:`~nfkit_core.errors.NfError` as one line. Other exceptions propagate with their traceback.
    """
    parser = build_parser(with_commands(get_plugin_manager()).registry)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except NfError as error:
        print(f"nf {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
