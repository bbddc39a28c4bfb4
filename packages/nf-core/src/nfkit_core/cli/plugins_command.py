"""``nf plugins``: every plugin with its distribution, version, and what it registered (or why it failed).

It runs whatever state the plugins are in, so that it can show what is wrong: a plugin that failed to load, a hook
nf cannot call, a name that two plugins registered. It exits with status 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from nfkit_core.plugins.manager import get_plugin_manager
from nfkit_core.specs import CommandSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    manager = get_plugin_manager()
    manager.fill_registry()
    plugins = manager.plugins
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in plugins], indent=2))
    else:
        for plugin in plugins:
            status = f"FAILED: {plugin.error}" if plugin.error else f"{len(plugin.registered)} registered"
            print(f"{plugin.name}  ({plugin.distribution} {plugin.version})  {status}")
            for item in plugin.registered:
                print(f"    {item}")
            for clash in plugin.clashes:
                print(f"    CLASH: {clash}")
    return 1 if any(p.error or p.clashes for p in plugins) else 0


COMMAND = CommandSpec("plugins", "List every nf plugin, its distribution and version, and what it registered.",
                      add_arguments, run)
