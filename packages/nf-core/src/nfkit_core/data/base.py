"""What every nf dataset is: ``(x, label)`` pairs that know their :class:`~nfkit_core.specs.DataInfo`.

Image datasets hold integer levels (``0 .. num_bins - 1``) and return them as float tensors of shape ``(C, H, W)``;
continuous datasets return float vectors. Unlabelled data returns the label ``-1``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nfkit_core.errors import ConfigError, NfError
from nfkit_core.specs import DataInfo

__all__ = ["SPLITS", "DataError", "ArrayDataset", "check_split", "split_indices", "require_path", "read_npz"]

SPLITS = ("train", "val", "test")
"""The names of the data splits a dataset serves."""


class DataError(NfError, ValueError):
    """A dataset file or folder is missing, has the wrong layout or is corrupt; the message names it."""


def check_split(dataset: str, split: str) -> None:
    """Raise :class:`DataError` unless ``split`` is one of :data:`SPLITS`.

    Args:
        dataset: the dataset's name, for the message.
        split: the requested split.
    """
    if split not in SPLITS:
        raise DataError(f"dataset {dataset!r} has no split {split!r}; splits: {', '.join(SPLITS)}")


def require_path(dataset: str, option: str, value: str, expected: str) -> Path:
    """The path in a dataset option; a clear error when it is unset or does not exist.

    Args:
        dataset: the dataset name, for the message.
        option: the option holding the path (e.g. ``"root"``), for the message.
        value: the configured path.
        expected: what should be there, for the message.
    """
    if not value:
        raise DataError(f"dataset {dataset!r} needs a path: set data.{option}=PATH ({expected})")
    path = Path(value).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist (dataset {dataset!r}, data.{option}; expected {expected})")
    return path


def read_npz(path: Path, keys: Sequence[str], dataset: str, layout: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` file; a :class:`DataError` naming the file for anything else.

    Args:
        path: the file.
        keys: the names of the arrays to read.
        dataset: the dataset name, for messages.
        layout: the expected layout, for messages.
    """
    try:
        with open(path, "rb") as file:
            arrays = np.load(file, allow_pickle=False)
            if not isinstance(arrays, np.lib.npyio.NpzFile):
                raise DataError(f"{path} holds a single array, not named arrays (dataset {dataset!r} expects "
                                f"{layout})")
            missing = sorted(set(keys) - set(arrays.files))
            if missing:
                raise DataError(f"{path} has arrays {sorted(arrays.files)}, missing {missing} (dataset {dataset!r} "
                                f"expects {layout})")
            return {key: arrays[key] for key in keys}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz file ({error}); dataset {dataset!r} expects {layout}"
                        ) from None


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """A fixed shuffle of ``range(n)`` cut into ``len(fractions) + 1`` parts: the rest first, then one per fraction.

    Args:
        n: the number of examples.
        fractions: the fraction of ``n`` of each part after the first.
        seed: seeds the shuffle.

    Returns:
        the indices of each part.

    Raises:
        ConfigError: negative fractions, or fractions that sum to 1 or more.
    """
    if any(f < 0 for f in fractions) or sum(fractions) >= 1:
        raise ConfigError(f"split fractions must be non-negative and sum to less than 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n)
    sizes = [int(round(f * n)) for f in fractions]
    cuts = np.cumsum([n - sum(sizes), *sizes])[:-1]
    return np.split(order, cuts)


class ArrayDataset(Dataset):
    """Data held in memory: ``data[i]`` (any dtype, e.g. ``uint8`` levels) returned as ``float32`` with its label.

    Args:
        data: one row per example, already in the shape of ``info.shape``.
        labels: integer labels, or ``None`` for unlabelled data (label ``-1``).
        info: what the data is.
    """

    def __init__(self, data: Tensor, labels: Tensor | None, info: DataInfo) -> None:
        if tuple(data.shape[1:]) != tuple(info.shape):
            raise ValueError(f"data of shape {tuple(data.shape)} does not match the declared shape {info.shape}")
        if labels is not None and labels.shape != (data.shape[0],):
            raise ValueError(f"{labels.shape[0]} labels for {data.shape[0]} examples")
        self.data = data
        self.labels = labels.long() if labels is not None else torch.full((data.shape[0],), -1, dtype=torch.long)
        self.info = info

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.data[index].float(), self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, Tensor]]:
        """A whole batch with one indexing operation (the DataLoader uses it instead of one call per example)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self.data[index].float().unbind(0), self.labels[index].unbind(0), strict=True))
