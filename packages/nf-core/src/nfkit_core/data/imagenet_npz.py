"""Downsampled ImageNet 32x32 / 64x64 (Chrabaszcz et al. 2017) in its ``.npz`` batches.

The folder ``data.root`` (or its sub-folders, e.g. ``Imagenet32_train_npz/`` and ``Imagenet32_val_npz/``) holds
``train_data_batch_1.npz`` ... ``train_data_batch_10.npz`` and ``val_data.npz``. Each file has ``data``, ``uint8``
of shape ``(N, 3 * S * S)`` with the red, green and blue planes one after another, and ``labels`` in ``1..1000``.
Flow papers report the official validation set as "test", so both ``val`` and ``test`` read ``val_data.npz``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit_core.data.base import ArrayDataset, DataError, check_split, read_npz, require_path
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["ImagenetNpzConfig", "load_imagenet_npz", "SPEC"]

LAYOUT = "train_data_batch_<k>.npz and val_data.npz (arrays 'data' (N, 3*S*S) uint8 and 'labels' 1..1000)"
NUM_CLASSES = 1000


@dataclass
class ImagenetNpzConfig:
    """Options of the ``imagenet-npz`` dataset.

    Attributes:
        root: the folder holding the ``.npz`` batches (searched one level of sub-folders deep).
        train_files: read only the first this many training batches (all when unset).
    """

    root: str = ""
    train_files: int | None = None


def _batch_number(path: Path) -> int:
    return int(re.search(r"(\d+)\.npz$", path.name).group(1))


def _find(root: Path, split: str, train_files: int | None) -> list[Path]:
    if split == "train":
        found = sorted({*root.glob("train_data_batch_*.npz"), *root.glob("*/train_data_batch_*.npz")},
                       key=_batch_number)
        found = found[:train_files] if train_files is not None else found
    else:
        found = sorted({*root.glob("val_data.npz"), *root.glob("*/val_data.npz")})[:1]
    if not found:
        raise DataError(f"no {'train_data_batch_*.npz' if split == 'train' else 'val_data.npz'} in {root} "
                        f"(dataset 'imagenet-npz' expects {LAYOUT})")
    return found


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = read_npz(path, ("data", "labels"), "imagenet-npz", LAYOUT)
    data, labels = arrays["data"], arrays["labels"]
    side = math.isqrt(data.shape[1] // 3) if data.ndim == 2 else 0
    if data.dtype != np.uint8 or data.ndim != 2 or 3 * side * side != data.shape[1] or labels.shape != data.shape[:1]:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape} and 'labels' {labels.shape}; expected {LAYOUT}")
    return data, labels


def load_imagenet_npz(config: ImagenetNpzConfig, split: str) -> ArrayDataset:
    """The ``split`` part as ``(3, S, S)`` images of levels 0..255 with labels ``0..999``."""
    check_split("imagenet-npz", split)
    root = require_path("imagenet-npz", "root", config.root, LAYOUT)
    parts = [_read(path) for path in _find(root, split, config.train_files)]
    sides = {math.isqrt(data.shape[1] // 3) for data, _ in parts}
    if len(sides) != 1:
        raise DataError(f"the batches in {root} mix image sizes {sorted(sides)}")
    side = sides.pop()
    data = torch.from_numpy(np.concatenate([d for d, _ in parts])).reshape(-1, 3, side, side)
    labels = torch.from_numpy(np.concatenate([lab for _, lab in parts]).astype(np.int64)) - 1
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(f"labels in {root} must lie in 1..{NUM_CLASSES}")
    return ArrayDataset(data, labels, DataInfo(shape=(3, side, side), num_classes=NUM_CLASSES, num_bins=256))


SPEC = DatasetSpec("imagenet-npz", ImagenetNpzConfig, load_imagenet_npz,
                   "downsampled ImageNet 32x32 or 64x64 from its .npz batches")
