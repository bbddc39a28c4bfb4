"""``nf plugins``: every plugin with its distribution, version, and what it registered (or why it failed)."""

from __future__ import annotations

import argparse
import json

from nfkit_core.plugins import CommandSpec, get_plugin_manager


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    manager = get_plugin_manager()
    manager.fill_registry()
    plugins = list(manager.plugins.values())
    if args.json:
        print(json.dumps([vars(p) for p in plugins], indent=2))
        return 0
    for plugin in plugins:
        status = f"FAILED: {plugin.error}" if plugin.error else f"{len(plugin.registered)} registered"
        print(f"{plugin.name}  ({plugin.distribution} {plugin.version})  {status}")
        for item in plugin.registered:
            print(f"    {item}")
    return 1 if any(p.error for p in plugins) else 0


COMMAND = CommandSpec("plugins", "List every nf plugin, its distribution and version, and what it registered.",
                      add_arguments, run)
