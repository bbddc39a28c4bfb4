"""CIFAR-10 from a local copy of the official "python version", never downloaded.

``data.root`` holds ``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, the
layout :class:`torchvision.datasets.CIFAR10` reads. The batches are pickles; they are read with an unpickler that
accepts only NumPy arrays, lists and plain values, so a tampered file cannot run code. By default every file is
checked against torchvision's MD5 sums of the official release. Flow papers report the test set, so both ``val``
and ``test`` read ``test_batch``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit_core.data.base import ArrayDataset, DataError, check_split, require_path
from nfkit_core.data.convert import Part, Source, file_identity, source_options
from nfkit_core.extras import require
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["Cifar10Config", "load_cifar10", "read_batch", "conversion_source", "SPEC"]

LAYOUT = ("cifar-10-batches-py/ with data_batch_1..5 and test_batch (pickled dicts with 'data' (N, 3072) uint8 "
          "and 'labels'), as extracted from cifar-10-python.tar.gz")


@dataclass
class Cifar10Config:
    """Options of the ``cifar10`` dataset.

    Attributes:
        root: the folder that contains ``cifar-10-batches-py/``.
        verify: check each file against the MD5 sum of the official release.
    """

    root: str = ""
    verify: bool = True


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays; refuses every other class or function.

    ``_codecs.encode`` is how protocol-2 pickles written by Python 3 store bytes.
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path, checksum: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``data`` (N, 3072) ``uint8`` and ``labels`` of one batch file, checked against ``checksum`` if ``verify``.

    Args:
        path: the batch file.
        checksum: its expected MD5.
        verify: check the checksum.
    """
    check_integrity = require("torchvision.datasets.utils", "the cifar10 dataset").check_integrity

    if not path.is_file():
        raise DataError(f"{path} not found (dataset 'cifar10' expects {LAYOUT})")
    if verify and not check_integrity(str(path), checksum):
        raise DataError(f"{path} does not match the MD5 sum of the official CIFAR-10 file (corrupt or not "
                        f"CIFAR-10); set data.verify=false to read it anyway")
    try:
        with open(path, "rb") as file:
            entry = _ArrayUnpickler(file, encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise DataError(f"{path} is not a CIFAR-10 batch ({type(error).__name__}: {error}); "
                        f"expected {LAYOUT}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise DataError(f"{path}: 'data' has shape {data.shape} and 'labels' {labels.shape}; expected {LAYOUT}")
    return data, labels


def load_cifar10(config: Cifar10Config, split: str) -> ArrayDataset:
    """The ``split`` part as ``(3, 32, 32)`` images of levels 0..255 with labels 0..9.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split, or data that are missing or malformed (the message says what to fetch or fix).
    """
    CIFAR10 = require("torchvision.datasets", "the cifar10 dataset").CIFAR10

    check_split("cifar10", split)
    root = require_path("cifar10", "root", config.root, LAYOUT) / CIFAR10.base_folder
    files = CIFAR10.train_list if split == "train" else CIFAR10.test_list
    parts = [read_batch(root / name, checksum, config.verify) for name, checksum in files]
    data = torch.from_numpy(np.concatenate([d for d, _ in parts])).reshape(-1, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([lab for _, lab in parts]))
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"labels in {root} must lie in 0..9")
    return ArrayDataset(data, labels, DataInfo(shape=(3, 32, 32), num_classes=10, num_bins=256))


def conversion_source(config: Cifar10Config, images_per_shard: int | None = None) -> Source:
    """The batch files as :func:`nfkit_core.data.convert.convert` reads them: one file per shard (so
    ``images_per_shard`` does not apply).

    Args:
        config: the dataset's options.
        images_per_shard: images per shard of the converted copy, where the source does not fix it.

    Returns:
        the source, for :func:`nfkit_core.data.convert.convert`.
    """
    CIFAR10 = require("torchvision.datasets", "the cifar10 dataset").CIFAR10

    root = require_path("cifar10", "root", config.root, LAYOUT) / CIFAR10.base_folder

    def reader(path: Path, checksum: str):
        def read() -> tuple[np.ndarray, np.ndarray]:
            data, labels = read_batch(path, checksum, config.verify)
            return data.reshape(-1, 3, 32, 32), labels
        return read

    def parts(split: str) -> list[Part]:
        found = []
        for name, checksum in CIFAR10.train_list if split == "train" else CIFAR10.test_list:
            if not (root / name).is_file():
                raise DataError(f"{root / name} not found (dataset 'cifar10' expects {LAYOUT})")
            found.append(Part(name, file_identity(root / name), reader(root / name, checksum)))
        return found

    return Source("cifar10", source_options(config), 10, parts)


SPEC = DatasetSpec("cifar10", Cifar10Config, load_cifar10, "CIFAR-10 (32x32 RGB, 10 classes) from a local copy")
