"""The optional ``train`` extra: what training, figures and the built-in example datasets need beyond the core.

``pip install nfkit-core`` (and every architecture or plugin, which depend on it) installs the contract, layers,
priors, plugins, data formats and checkpoints with torch, numpy, einops and pluggy only.
``pip install "nfkit-core[train]"`` adds what the :class:`~nfkit_core.train.Trainer` and the ``nf`` command use:
tqdm (progress bars), matplotlib (curves, scatter plots), torchvision (image grids, image folders) and
scikit-learn (the ``digits`` and ``toy2d`` datasets). Code that needs one of them imports it through
:func:`require`, which says how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nfkit_core.errors import NfError

__all__ = ["TRAIN_EXTRA", "INSTALL_HINT", "MissingExtraError", "require", "missing"]

TRAIN_EXTRA = {"tqdm": "tqdm", "matplotlib": "matplotlib", "torchvision": "torchvision", "sklearn": "scikit-learn"}
"""import name -> distribution of every package of the ``train`` extra."""

INSTALL_HINT = "pip install 'nfkit-core[train]'"


class MissingExtraError(NfError, RuntimeError):
    """A package of the ``train`` extra is not installed; the message says what needs it and how to install it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.figure"``), or explain which extra provides it.

    Args:
        module: the module to import.
        purpose: what needs it, for the message (e.g. ``"the toy2d dataset"``).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.split(".")[0]
        if error.name is None or error.name.split(".")[0] != top or top not in TRAIN_EXTRA:
            raise
        raise MissingExtraError(f"{purpose} needs {TRAIN_EXTRA[top]}, which is not installed: {INSTALL_HINT}"
                                ) from None


def missing() -> list[str]:
    """The distributions of the ``train`` extra that are not installed."""
    return [dist for name, dist in TRAIN_EXTRA.items() if importlib.util.find_spec(name) is None]
