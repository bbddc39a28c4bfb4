"""nfkit-eval's registrations: its metrics and the ``nf eval`` command (the ``nfkit`` entry point ``eval``).

Kept to this one module, so that a change of the registry's API touches only these lines.
"""

from __future__ import annotations

from nfkit_core.plugins import CommandSpec, MetricSpec, Registrar, hookimpl


@hookimpl
def nf_register_metrics(metrics: Registrar[MetricSpec]) -> None:
    from nfkit_eval.builtin_metrics import BUILTIN_METRICS

    for metric in BUILTIN_METRICS:
        metrics.add(metric)


@hookimpl
def nf_register_commands(commands: Registrar[CommandSpec]) -> None:
    from nfkit_eval.cli import COMMAND

    commands.add(COMMAND)
