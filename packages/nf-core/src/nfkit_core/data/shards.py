"""nf's on-disk image format: ``uint8`` shards in plain ``.npy`` files, read by memory mapping.

A converted dataset is a folder::

    meta.json                 what the data is, which shards each split has, and where it came from
    train-00000.npy           uint8 images (n, C, H, W) of the first training shard
    train-00000.labels.npy    int64 labels (n,), -1 for unlabelled images
    train-00001.npy ...
    val-00000.npy ...

A split is the concatenation of its shards in order, so image ``i`` of a split is the same image whatever reads it.
Reading maps the shards into memory (:func:`numpy.load` with ``mmap_mode="r"``) and copies out only the rows of the
batch asked for: a process holds one batch of its own, and the pages it touched live in the operating system's page
cache, shared by every process of the machine and given back under memory pressure.

Each shard file appears under its final name only once complete (written to a temporary name, then renamed), and
``meta.json`` marks a split complete only after its last shard; so a reader never sees half a conversion, and an
interrupted conversion (:mod:`nfkit_core.data.convert`) continues from the shards already written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nfkit_core.data.base import DataError, check_split
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["FORMAT", "VERSION", "META_NAME", "ShardedImages", "ConvertedConfig", "load_converted", "read_meta",
           "write_json_atomically", "write_array_atomically", "shard_names", "SPEC"]

FORMAT = "nfkit-uint8-shards"
VERSION = 1
META_NAME = "meta.json"


def shard_names(split: str, index: int) -> tuple[str, str]:
    """The file names of shard ``index`` of ``split``: images, labels.

    Args:
        split: the split's name.
        index: the shard's index, from 0.
    """
    stem = f"{split}-{index:05d}"
    return f"{stem}.npy", f"{stem}.labels.npy"


def write_json_atomically(values: dict[str, Any], path: Path) -> None:
    """Write ``path`` as a temporary file and rename it over the old one: readers see the old or the new file.

    Args:
        values: plain JSON values.
        path: the file to write.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values, indent=2) + "\n")
    os.replace(temporary, path)


def write_array_atomically(array: np.ndarray, path: Path) -> None:
    """Save ``array`` as ``.npy`` under a temporary name, flush it to disk, then rename it to ``path``.

    Args:
        array: the array to save.
        path: the ``.npy`` file to write.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        np.save(file, np.ascontiguousarray(array), allow_pickle=False)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def read_meta(root: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a converted folder; a :class:`DataError` when it is missing, foreign or unfinished.

    Args:
        root: the converted folder.
    """
    path = Path(root).expanduser() / META_NAME
    if not path.is_file():
        raise DataError(f"{path.parent} holds no converted dataset ({META_NAME} missing); create one with "
                        f"`nf data convert --data NAME --root SOURCE --out {path.parent}`")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is not readable JSON ({error})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path} describes format {meta.get('format')!r} version {meta.get('version')!r}; this nf "
                        f"reads {FORMAT!r} version {VERSION}")
    return meta


class ShardedImages(Dataset):
    """One split of a converted folder: ``(levels (C, H, W) float, label)`` pairs, read from memory-mapped shards.

    The shards are opened on first access in each process (DataLoader workers included) and never pickled, so
    handing the dataset to worker processes copies no image data.

    Args:
        root: the converted folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
    """

    def __init__(self, root: str | Path, split: str) -> None:
        check_split("converted", split)
        self.root = Path(root).expanduser()
        meta = read_meta(self.root)
        entry = meta["splits"].get(split)
        if entry is None:
            raise DataError(f"{self.root} has no {split!r} split (it has {', '.join(meta['splits']) or 'none'}); "
                            f"convert it with `nf data convert ... --splits {split}`")
        if not entry["complete"]:
            raise DataError(f"the conversion of split {split!r} in {self.root} is unfinished; run the same "
                            f"`nf data convert` command again to complete it")
        self.split = split
        self.shards = entry["shards"]
        counts = np.array([shard["count"] for shard in self.shards], dtype=np.int64)
        self.ends = np.cumsum(counts)
        self.starts = self.ends - counts
        self.info = DataInfo(shape=tuple(meta["shape"]), num_classes=meta["num_classes"], num_bins=meta["num_bins"])
        self._arrays: list[tuple[np.ndarray, np.ndarray]] | None = None

    def _open(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._arrays is None:
            arrays = []
            for shard in self.shards:
                images = np.load(self.root / shard["images"], mmap_mode="r")
                labels = np.load(self.root / shard["labels"], mmap_mode="r")
                if images.shape != (shard["count"], *self.info.shape) or labels.shape != (shard["count"],):
                    raise DataError(f"{self.root / shard['images']} holds {images.shape} images and "
                                    f"{labels.shape} labels; {META_NAME} promises {shard['count']} of shape "
                                    f"{tuple(self.info.shape)}. Convert again into an empty folder.")
                arrays.append((images, labels))
            self._arrays = arrays
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``uint8`` images and ``int64`` labels at ``indices`` (any order, repeats allowed), copied out.

        Args:
            indices: example indices, any order, repeats allowed.

        Raises:
            IndexError: an index out of range.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        arrays = self._open()
        images = np.empty((len(indices), *self.info.shape), dtype=np.uint8)
        labels = np.empty(len(indices), dtype=np.int64)
        shard_of = np.searchsorted(self.ends, indices, side="right")
        for shard in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == shard)
            rows = indices[mine] - self.starts[shard]
            images[mine] = arrays[shard][0][rows]
            labels[mine] = arrays[shard][1][rows]
        return images, labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        images, labels = self.read(np.array([index]))
        return torch.from_numpy(images[0]).float(), torch.tensor(labels[0])

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, Tensor]]:
        """A whole batch with one read per shard (the DataLoader uses it instead of one call per example)."""
        images, labels = self.read(np.asarray(indices))
        return list(zip(torch.from_numpy(images).float().unbind(0), torch.from_numpy(labels).unbind(0), strict=True))


@dataclass
class ConvertedConfig:
    """Options of the ``converted`` dataset.

    Attributes:
        root: a folder written by ``nf data convert`` (it holds ``meta.json`` and the shards).
    """

    root: str = ""


def load_converted(config: ConvertedConfig, split: str) -> ShardedImages:
    """The ``split`` part of a converted folder.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split, or data that are missing or malformed (the message says what to fetch or fix).
    """
    if not config.root:
        raise DataError("dataset 'converted' needs a path: set data.root=PATH (a folder written by nf data convert)")
    return ShardedImages(config.root, split)


SPEC = DatasetSpec("converted", ConvertedConfig, load_converted,
                   "images converted by `nf data convert` (uint8 .npy shards, memory-mapped: any size, any machine)")
