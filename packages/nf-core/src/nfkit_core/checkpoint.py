"""Checkpoints: one file per run that holds everything needed to rebuild, resume or sample a flow.

A checkpoint is a dict of tensors and plain values (strings, numbers, lists, tuples, dicts), written with
:func:`torch.save` and read back with ``torch.load(weights_only=True)``, so loading one can never run code. Its keys:

``format``, ``format_version``
    ``"nf-checkpoint"`` and :data:`FORMAT_VERSION`;
``architecture``, ``model_config``
    the registered architecture name and its config as a dict; :func:`load_checkpoint` rebuilds the flow through
    the plugin registry;
``dataset``, ``data_config``, ``data_info``, ``preprocessing``
    the data the flow was trained on, what the architecture was told about it, and how batches were prepared;
``train_config``, ``step``, ``schedule``, ``optimizer``, ``model``, ``ema``, ``rng``
    everything a resumed run needs to continue exactly;
``versions``
    the versions of nfkit-core, the architecture's distribution and PyTorch that wrote it.

Files are written atomically: to a temporary file in the same folder, then renamed over the old checkpoint, so an
interrupted write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.errors import MissingFileError, NfError, UnknownNameError
from nfkit_core.plugins.manager import get_registry
from nfkit_core.plugins.registry import Registry
from nfkit_core.specs import DataInfo

__all__ = ["FORMAT", "FORMAT_VERSION", "CHECKPOINT_NAME", "CheckpointError", "save_checkpoint", "read_checkpoint",
           "build_flow", "load_checkpoint", "checkpoint_path", "data_info_from_dict"]

FORMAT = "nf-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
PLAIN_TYPES = (type(None), bool, int, float, str, torch.dtype, torch.device)
REQUIRED = ("architecture", "model_config", "data_info", "model", "step")


class CheckpointError(NfError, ValueError):
    """A file is not a readable nf checkpoint (missing, truncated, foreign, or from an incompatible version)."""


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` when ``path`` is a run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _check_plain(value: Any, where: str) -> None:
    """Raise unless ``value`` is made of tensors and plain values only (what ``weights_only`` loading accepts)."""
    if type(value) in PLAIN_TYPES or isinstance(value, Tensor):  # exact types: a str subclass is not plain
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(key, f"{where} (a key)")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only tensors and plain values "
                    f"(str, int, float, bool, None, list, tuple, dict)")


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` (with the format keys added) atomically to ``path``; returns the path."""
    path = Path(path)
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    _check_plain(state, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint file (or the checkpoint of a run folder) without building anything.

    Raises:
        MissingFileError: nothing at ``path`` (a FileNotFoundError).
        CheckpointError: the file is truncated, corrupt, not an nf checkpoint, or holds anything but tensors and
            plain values.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a truncated one lacks its directory
        raise CheckpointError(f"{path} is not a readable checkpoint: truncated, corrupt or not written by "
                              f"torch.save (no complete zip archive)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} holds objects other than tensors and plain values, which nf checkpoints "
                              f"never do; it was not loaded, since loading it could run code ({error})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint: truncated, corrupt or not written by "
                              f"torch.save ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not an nf checkpoint (no 'format': '{FORMAT}' entry)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {state['format_version']}, newer than this nfkit-core "
                              f"reads ({FORMAT_VERSION}); upgrade nfkit-core (written by {state.get('versions')})")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"{path} is an incomplete nf checkpoint: missing {missing}")
    return _renamed_options(state)


def _renamed_options(state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before the options were renamed: ``noise_sigma`` is ``noise_std`` now."""
    for section in ("train_config", "preprocessing"):
        values = state.get(section)
        if isinstance(values, dict) and "noise_sigma" in values:
            values["noise_std"] = values.pop("noise_sigma")
    return state


def data_info_from_dict(values: Mapping[str, Any]) -> DataInfo:
    """The :class:`DataInfo` stored in a checkpoint."""
    return DataInfo(shape=tuple(values["shape"]), num_classes=int(values["num_classes"]),
                    num_bins=None if values["num_bins"] is None else int(values["num_bins"]))


def build_flow(state: Mapping[str, Any], registry: Registry | None = None, ema: bool | None = None) -> nn.Module:
    """Rebuild the flow of a checkpoint read by :func:`read_checkpoint` and load its weights.

    Args:
        state: the checkpoint.
        registry: where to look the architecture up (the process-wide registry by default).
        ema: load the moving-average weights (``True``), the trained weights (``False``), or the average when the
            checkpoint has one (``None``).
    """
    registry = registry or get_registry()
    try:
        spec = registry.architectures.get(state["architecture"])
    except UnknownNameError as error:
        raise UnknownNameError(f"the checkpoint needs architecture {state['architecture']!r} (written by "
                               f"{state.get('versions')}), which no installed plugin provides: {error}") from None
    try:
        config = spec.config_class(**state["model_config"])
    except TypeError as error:
        raise CheckpointError(f"the stored config of architecture {state['architecture']!r} does not fit the "
                              f"installed version ({error}); the checkpoint was written by {state.get('versions')}"
                              ) from None
    flow = registry.build_flow(state["architecture"], config, data_info_from_dict(state["data_info"]))
    if ema is True and state.get("ema") is None:
        raise CheckpointError("the checkpoint has no moving-average weights (trained without train.ema_decay)")
    use_ema = state.get("ema") is not None if ema is None else ema
    try:
        flow.load_state_dict(state["ema"] if use_ema else state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"the stored weights do not fit architecture {state['architecture']!r} as installed "
                              f"({error}); the checkpoint was written by {state.get('versions')}") from None
    return flow.eval()


def load_checkpoint(path: str | Path, *, ema: bool | None = None, map_location: str | torch.device = "cpu",
                    registry: Registry | None = None) -> nn.Module:
    """Rebuild the flow saved in a checkpoint file (or run folder) through the plugin registry.

    The flow is returned in eval mode, on ``map_location``, with the moving-average weights when the checkpoint has
    them (see ``ema`` of :func:`build_flow`).
    """
    state = read_checkpoint(path, map_location=map_location)
    return build_flow(state, registry=registry, ema=ema).to(map_location)
