"""The ``nf`` command line. Every sub-command comes from the plugin registry, nfkit-core's own included."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nfkit_core.plugins import get_registry

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``nf`` parser with one sub-parser per registered command."""
    parser = argparse.ArgumentParser(
        prog="nf",
        description="nf: train, sample and evaluate normalizing flows. Architectures, datasets and extra commands "
                    "come from plugins (see `nf plugins`).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in get_registry().entries("command"):
        spec = entry.obj
        # "resolve" lets a command replace -h/--help (nf train answers it after reading --arch and --data).
        sub = commands.add_parser(spec.name, help=spec.help, description=spec.help,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter, conflict_handler="resolve")
        spec.add_arguments(sub)
        sub.set_defaults(_run=spec.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nf`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"nf {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
