"""Tabular data as arrays: the layout of the MAF density-estimation benchmarks (Papamakarios et al. 2017).

``data.root`` is either a folder holding ``train.npy``, ``val.npy`` and ``test.npy`` (each ``(N, D)``), or one
``.npz`` file holding arrays named ``train``, ``val`` and ``test``. The arrays are used as they are (the MAF
preprocessing, e.g. standardisation, already applied), as float32, unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit_core.data.base import ArrayDataset, DataError, check_split, read_npz, require_path
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["TabularConfig", "load_tabular", "SPEC"]

LAYOUT = "a folder with train.npy, val.npy, test.npy, or an .npz file with arrays train, val, test (each N x D)"


@dataclass
class TabularConfig:
    """Options of the ``tabular`` dataset.

    Attributes:
        root: the folder of ``{train,val,test}.npy`` files, or the ``.npz`` file.
    """

    root: str = ""


def _read_array(path: Path, split: str) -> np.ndarray:
    if not path.is_dir():
        return read_npz(path, (split,), "tabular", LAYOUT)[split]
    file = path / f"{split}.npy"
    if not file.is_file():
        raise DataError(f"{file} not found (dataset 'tabular' expects {LAYOUT})")
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{file} is not a readable NumPy file ({error}); dataset 'tabular' expects {LAYOUT}") from None


def load_tabular(config: TabularConfig, split: str) -> ArrayDataset:
    """The ``split`` array as unlabelled float vectors."""
    check_split("tabular", split)
    path = require_path("tabular", "root", config.root, LAYOUT)
    array = _read_array(path, split)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"the {split!r} array of {path} has shape {array.shape} and dtype {array.dtype}; "
                        f"expected a numeric (N, D) array")
    data = torch.as_tensor(array, dtype=torch.float32)
    if not torch.isfinite(data).all():
        raise DataError(f"the {split!r} array of {path} contains NaN or infinite values")
    return ArrayDataset(data, None, DataInfo(shape=(array.shape[1],)))


SPEC = DatasetSpec("tabular", TabularConfig, load_tabular,
                   "(N, D) arrays in .npy/.npz files, as the MAF benchmarks (POWER, GAS, HEPMASS, ...)")
