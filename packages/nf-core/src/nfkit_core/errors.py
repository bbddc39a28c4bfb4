"""nf's own errors: one base class, :class:`~nfkit_core.errors.NfError`, for every problem nf can explain in a sentence.

The ``nf`` command prints an :class:`NfError` as one line (``nf COMMAND: error: ...``) and exits with status 2; any
other exception (a CUDA error, a bug in nf or in a plugin) keeps its traceback. A plugin raises these too, for
the same effect: :class:`ConfigError` for an option value its architecture cannot use, for example.

Each class also derives from the built-in exception it refines (``ValueError``, ``KeyError``, ``TypeError``), so
``except ValueError`` keeps working. This module imports nothing of nf: every layer may use it.
"""

from __future__ import annotations

__all__ = ["NfError", "ConfigError", "MissingFileError", "UnknownNameError", "DuplicateNameError", "PluginError"]


class NfError(Exception):
    """A problem nf explains in one line: bad input, a missing file, a plugin that broke its contract."""


class ConfigError(NfError, ValueError):
    """An option or input value that nf (or an architecture, a dataset) cannot use; the message names the fix."""


class MissingFileError(NfError, FileNotFoundError):
    """A file or folder nf was pointed at is not there; the message names it."""


class UnknownNameError(NfError, KeyError):
    """A name that nothing registered (an architecture, a dataset, a preset); the message lists the available ones."""

    def __str__(self) -> str:  # KeyError's own __str__ would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(NfError, ValueError):
    """Two plugins provide the same name (a registered architecture, or an entry point); the message names both
    and the way out (``NF_BLOCK_PLUGINS=...``)."""


class PluginError(NfError, TypeError):
    """A plugin broke the plugin contract, e.g. its ``build`` returned something that is not a flow; the message
    names the plugin and its distribution."""
