"""Downsampled ImageNet 32x32 / 64x64 (Chrabaszcz et al. 2017) in its ``.npz`` batches.

The folder ``data.root`` (or its sub-folders, e.g. ``Imagenet32_train_npz/`` and ``Imagenet32_val_npz/``) holds
``train_data_batch_1.npz`` ... ``train_data_batch_10.npz`` and ``val_data.npz``. Each file has ``data``, ``uint8``
of shape ``(N, 3 * S * S)`` with the red, green and blue planes one after another, and ``labels`` in ``1..1000``.
Flow papers report the official validation set as "test", so both ``val`` and ``test`` read ``val_data.npz``.

ImageNet-64's training set is 15.7 GB of pixels, more than many machines can hold (and concatenating the batches in
memory needs it twice). So by default the batches are converted once, on first use, into nf's memory-mapped format
(:mod:`nfkit_core.data.shards`) in ``data.cache`` (default: ``nfkit-converted/`` inside ``data.root``), and training
reads that: each process holds about one batch, the rest stays in the page cache. ``data.in_memory=true`` loads the
batches into memory instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nfkit_core.data.base import ArrayDataset, DataError, check_split, read_npz, require_path
from nfkit_core.data.convert import Part, Source, convert, file_identity, source_options
from nfkit_core.data.shards import ShardedImages
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["ImagenetNpzConfig", "load_imagenet_npz", "find_batches", "read_batch", "converted_folder",
           "conversion_source", "SPEC"]

LAYOUT = "train_data_batch_<k>.npz and val_data.npz (arrays 'data' (N, 3*S*S) uint8 and 'labels' 1..1000)"
NUM_CLASSES = 1000


@dataclass
class ImagenetNpzConfig:
    """Options of the ``imagenet-npz`` dataset.

    Attributes:
        root: the folder holding the ``.npz`` batches (searched one level of sub-folders deep).
        train_files: read only the first this many training batches (all when unset).
        cache: the folder for the converted copy that training reads (default: ``<root>/nfkit-converted``); it is
            written once, on first use (resumably), and reused afterwards.
        in_memory: load every batch into memory instead of converting (needs twice the data's size in memory while
            the batches are concatenated).
    """

    root: str = ""
    train_files: int | None = None
    cache: str = ""
    in_memory: bool = False


def _batch_number(path: Path) -> int:
    return int(re.search(r"(\d+)\.npz$", path.name).group(1))


def find_batches(root: Path, split: str, train_files: int | None) -> list[Path]:
    """The ``.npz`` files of ``split`` in ``root`` (training batches in numerical order).

    Args:
        root: the folder of the ``.npz`` files.
        split: ``"train"``, ``"val"`` or ``"test"``.
        train_files: use only the first this many training files (all when ``None``).
    """
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


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``data`` ``(N, 3 * S * S)`` ``uint8`` and ``labels`` (1..1000) of one batch file, checked.

    Args:
        path: the ``.npz`` batch file.
    """
    arrays = read_npz(path, ("data", "labels"), "imagenet-npz", LAYOUT)
    data, labels = arrays["data"], arrays["labels"]
    side = math.isqrt(data.shape[1] // 3) if data.ndim == 2 else 0
    if data.dtype != np.uint8 or data.ndim != 2 or 3 * side * side != data.shape[1] or labels.shape != data.shape[:1]:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape} and 'labels' {labels.shape}; expected {LAYOUT}")
    return data, labels


def conversion_source(config: ImagenetNpzConfig, images_per_shard: int | None = None) -> Source:
    """The batches as :func:`nfkit_core.data.convert.convert` reads them: one ``.npz`` file per shard (so
    ``images_per_shard`` does not apply), labels shifted to ``0..999``.

    Args:
        config: the dataset's options.
        images_per_shard: images per shard of the converted copy, where the source does not fix it.

    Returns:
        the source, for :func:`nfkit_core.data.convert.convert`.
    """
    root = require_path("imagenet-npz", "root", config.root, LAYOUT)

    def reader(path: Path):
        def read() -> tuple[np.ndarray, np.ndarray]:
            data, labels = read_batch(path)
            side = math.isqrt(data.shape[1] // 3)
            return data.reshape(-1, 3, side, side), labels.astype(np.int64) - 1
        return read

    def parts(split: str) -> list[Part]:
        return [Part(path.name, file_identity(path), reader(path))
                for path in find_batches(root, split, config.train_files)]

    return Source("imagenet-npz", source_options(config, ignore=("cache", "in_memory")), NUM_CLASSES, parts)


def converted_folder(config: ImagenetNpzConfig) -> Path:
    """Where the converted copy of ``config``'s batches lives.

    Args:
        config: the dataset's options.
    """
    root = require_path("imagenet-npz", "root", config.root, LAYOUT)
    cache = Path(config.cache).expanduser() if config.cache else root / "nfkit-converted"
    suffix = f"-first{config.train_files}" if config.train_files is not None else ""
    return cache / f"imagenet-npz{suffix}"


def load_imagenet_npz(config: ImagenetNpzConfig, split: str) -> Dataset:
    """The ``split`` part as ``(3, S, S)`` images of levels 0..255 with labels ``0..999``: read from the converted
    copy (converting first if there is none), or loaded into memory when ``config.in_memory``.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split, or data that are missing or malformed (the message says what to fetch or fix).
    """
    check_split("imagenet-npz", split)
    if config.in_memory:
        return _load_in_memory(config, split)
    folder = converted_folder(config)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot write the converted copy of the batches to {folder} ({error}); set data.cache to "
                        f"a writable folder, or data.in_memory=true") from None
    return ShardedImages(convert(conversion_source(config), folder, splits=(split,)), split)


def _load_in_memory(config: ImagenetNpzConfig, split: str) -> ArrayDataset:
    root = require_path("imagenet-npz", "root", config.root, LAYOUT)
    parts = [read_batch(path) for path in find_batches(root, split, config.train_files)]
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
