"""nfkit-eval's registrations: its metrics and the ``nf eval`` command (the ``nfkit`` entry point ``eval``).

Kept to this one module, so that a change of the registry's API touches only these lines.
"""

from __future__ import annotations

from nfkit_core.plugins import hookimpl


@hookimpl
def nf_register_metrics(registry) -> None:
    from nfkit_eval.builtin_metrics import BUILTIN_METRICS

    for metric in BUILTIN_METRICS:
        registry.add("metric", metric.name, metric)


@hookimpl
def nf_register_commands(registry) -> None:
    from nfkit_eval.cli import COMMAND

    registry.add_command(COMMAND)
