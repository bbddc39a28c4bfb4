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
``train_config``, ``step``, ``data_position``, ``schedule``, ``optimizer``, ``model``, ``ema``, ``rng``
    everything a resumed run needs to continue exactly (``rng``: one ``{"torch", "cuda"}`` state per process; the data
    position is the epoch and batch the step implies, and the number of training examples that pins the data order;
    ``schedule`` records the learning-rate schedule as run, its warm-up in optimizer steps even when
    ``train.warmup_epochs`` set it; a resumed run recomputes the schedule from ``train_config``);
``train_loss``
    the training loss (nats) of the last logged interval before the checkpoint, by which a diverging run finds its
    last sane checkpoint;
``versions``
    the versions of nfkit-core, the architecture's distribution and PyTorch that wrote it.

Files are written atomically: to a temporary file in the same folder, then renamed over the old checkpoint, so an
interrupted write never leaves a truncated checkpoint behind (:func:`nfkit_core.files.atomic_write`). Weights or
optimizer state with a NaN or infinite value are never written. :func:`training_checkpoint` assembles a training
run's checkpoint and :func:`restore_training` loads one back into a model, optimizer and weight average: the trainer
neither writes nor reads the format itself.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.errors import ConfigError, MissingFileError, NfError, UnknownNameError
from nfkit_core.files import atomic_write
from nfkit_core.plugins.manager import get_registry
from nfkit_core.plugins.registry import Registry
from nfkit_core.specs import DataInfo

__all__ = ["FORMAT", "FORMAT_VERSION", "CHECKPOINT_NAME", "CheckpointError", "NonFiniteStateError",
           "save_checkpoint", "read_checkpoint", "build_flow", "load_checkpoint", "checkpoint_path",
           "data_info_from_dict", "data_info_to_dict", "training_checkpoint", "restore_training", "capture_rng",
           "restore_rng", "non_finite_tensors"]

FORMAT = "nf-checkpoint"
FORMAT_VERSION = 1
"""The checkpoint format this nfkit-core writes; it reads this one and older ones."""
CHECKPOINT_NAME = "checkpoint.pt"
PLAIN_TYPES = (type(None), bool, int, float, str, torch.dtype, torch.device)
REQUIRED = ("architecture", "model_config", "data_info", "model", "step")


class CheckpointError(NfError, ValueError):
    """A file is not a readable nf checkpoint (missing, truncated, foreign, or from an incompatible version)."""


class NonFiniteStateError(NfError, ValueError):
    """Weights or optimizer state hold NaN or infinite values; such a state is never written as a checkpoint."""


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` when ``path`` is a run folder.

    Args:
        path: a checkpoint file or a run folder.
    """
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


def _tensors(value: Any, where: str) -> Iterator[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{where}[{index}]")


def non_finite_tensors(value: Any, where: str) -> list[str]:
    """The names of the floating-point tensors in ``value`` (nested dicts, lists) that hold a NaN or infinity.

    Args:
        value: a tensor, or dicts, lists and tuples of them (e.g. a ``state_dict``).
        where: the name of ``value``, the prefix of the returned names.
    """
    return [name for name, tensor in _tensors(value, where)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` (with the format keys added) atomically to ``path``.

    Args:
        state: the checkpoint's keys (see the module docstring): tensors and plain values only.
        path: the file to write; its folder is created.

    Returns:
        the path written.

    Raises:
        NonFiniteStateError: ``model``, ``ema`` or ``optimizer`` hold a NaN or infinity (nothing is written).
        nfkit_core.files.DiskFullError: the disk is full; the previous checkpoint at ``path`` is left intact.
    """
    path = Path(path)
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    _check_plain(state, "checkpoint")
    bad = [name for key in ("model", "ema", "optimizer") for name in non_finite_tensors(state.get(key), key)]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteStateError(f"not writing {path}: non-finite values in {shown}")
    path.parent.mkdir(parents=True, exist_ok=True)
    size = sum(tensor.numel() * tensor.element_size() for _, tensor in _tensors(state, ""))
    return atomic_write(path, lambda file: torch.save(state, file), needed=size)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint file (or the checkpoint of a run folder) without building anything.

    Args:
        path: a checkpoint file or a run folder.
        map_location: where the tensors are loaded (``"cpu"``, ``"cuda"``, ...).

    Returns:
        the checkpoint's keys (see the module docstring).

    Raises:
        MissingFileError: nothing at ``path`` (a FileNotFoundError).
        ConfigError: ``map_location`` is a CUDA device, but CUDA is not available.
        CheckpointError: the file is truncated, corrupt, not an nf checkpoint, or holds anything but tensors and
            plain values.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    device = torch.device(map_location)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"cannot load {path} onto {device}: CUDA is not available on this machine "
                          f"(load it with map_location='cpu')")
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
    """The :class:`DataInfo` stored in a checkpoint.

    Args:
        values: the checkpoint's ``data_info`` entry.
    """
    return DataInfo(shape=tuple(values["shape"]), num_classes=int(values["num_classes"]),
                    num_bins=None if values["num_bins"] is None else int(values["num_bins"]))


def data_info_to_dict(info: DataInfo) -> dict[str, Any]:
    """The plain values of a :class:`DataInfo`, as a checkpoint stores them.

    Args:
        info: what the architecture was told about the data.
    """
    return {"shape": list(info.shape), "num_classes": info.num_classes, "num_bins": info.num_bins}


def capture_rng(device: torch.device) -> dict[str, Any]:
    """The state of PyTorch's global generators: the CPU's, and the CUDA device's when training on one.

    Args:
        device: the training device (its CUDA generator is captured when it is a CUDA device).
    """
    return {"torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []}


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    """Set PyTorch's global generators to a state of :func:`capture_rng`.

    Args:
        state: what :func:`capture_rng` returned.
        device: the training device.
    """
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state(state["cuda"][0], device)


def training_checkpoint(run: Mapping[str, Any], data_info: DataInfo, preprocessing: Mapping[str, Any],
                        model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None,
                        schedule: Mapping[str, Any], step: int, rng: list[dict[str, Any]],
                        versions: Mapping[str, str], train_loss: float | None) -> dict[str, Any]:
    """The checkpoint of a training run at ``step`` (the keys of the module docstring).

    Args:
        run: the run's configuration (:meth:`nfkit_core.train.RunConfig.to_dict`).
        data_info: what the architecture was told about the data.
        preprocessing: how batches were prepared (:meth:`nfkit_core.data.Preprocessing.to_dict`).
        model: the trained flow.
        optimizer: its optimizer.
        ema: the weight average, if the run keeps one.
        schedule: the learning-rate schedule's name and parameters.
        step: optimizer steps taken.
        rng: the global generators' states of every process (:func:`capture_rng`), in rank order.
        versions: the versions of the distributions that wrote it.
        train_loss: the training loss of the last logged interval.
    """
    return {**run, "data_info": data_info_to_dict(data_info), "preprocessing": dict(preprocessing),
            "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "schedule": dict(schedule), "step": step, "rng": rng,
            "versions": dict(versions), "train_loss": train_loss}


def restore_training(state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                     ema: nn.Module | None) -> int:
    """Load a checkpoint of :func:`training_checkpoint` into a freshly built model, its optimizer and weight average;
    returns the step to continue from.

    An ``ema`` given for a checkpoint without one starts from the restored weights.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None:
        ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return int(state["step"])


def build_flow(state: Mapping[str, Any], registry: Registry | None = None, ema: bool | None = None) -> nn.Module:
    """Rebuild the flow of a checkpoint read by :func:`read_checkpoint` and load its weights.

    Args:
        state: the checkpoint.
        registry: where to look the architecture up (the process-wide registry by default).
        ema: load the moving-average weights (``True``), the trained weights (``False``), or the average when the
            checkpoint has one (``None``).

    Returns:
        the flow, with the checkpoint's weights.
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

    Args:
        path: a checkpoint file or a run folder (``runs/NAME``).
        ema: the weights to load, as for :func:`build_flow`.
        map_location: the device of the flow.
        registry: where to look the architecture up (the process-wide registry by default).

    Returns:
        the flow in eval mode, ready for ``flow.sample(n)`` and ``flow.log_prob(x)``.

    Raises:
        MissingFileError, CheckpointError, ConfigError: as :func:`read_checkpoint`.
        UnknownNameError: the checkpoint's architecture is not installed.
    """
    state = read_checkpoint(path, map_location=map_location)
    return build_flow(state, registry=registry, ema=ema).to(map_location)
