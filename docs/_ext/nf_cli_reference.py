"""The command-line reference, generated from the code that ``nf`` runs.

``parser()`` is the full ``nf`` parser (every command of every installed plugin) for sphinx-argparse's ``argparse``
directive; ``.. nf-settings::`` prints the ``--set`` options (training, each dataset's, each architecture's with its
presets) as ``nf train --arch NAME --help`` does.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from nfkit_core.cli import build_parser, with_commands
from nfkit_core.cli.settings import describe_fields
from nfkit_core.plugins import get_plugin_manager, get_registry
from nfkit_core.train.config import TrainConfig


def parser() -> argparse.ArgumentParser:
    """The parser of the ``nf`` script, as ``nf`` builds it."""
    return build_parser(with_commands(get_plugin_manager()).registry)


class NfSettings(SphinxDirective):
    """One rubric and one literal block per group of ``--set`` options."""

    def run(self) -> list[nodes.Node]:
        registry = get_registry()
        groups = [("training options (train.KEY)", describe_fields(TrainConfig, "train"))]
        for dataset in sorted(registry.datasets, key=lambda spec: spec.name):
            groups.append((f"data options of dataset {dataset.name!r} (data.KEY)",
                           describe_fields(dataset.config_class, "data")))
        for spec in sorted(registry.architectures, key=lambda spec: spec.name):
            groups.append((f"model options of architecture {spec.name!r} (model.KEY)",
                           describe_fields(spec.config_class, "model", spec.presets,
                                           train_defaults=spec.train_defaults)))
        result: list[nodes.Node] = []
        for title, text in groups:
            result += [nodes.rubric(text=title), nodes.literal_block(text, text, language="none")]
        return result


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("nf-settings", NfSettings)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
