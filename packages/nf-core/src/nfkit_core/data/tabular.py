"""Tabular data as arrays: the layout of the MAF density-estimation benchmarks (Papamakarios et al. 2017).

``data.root`` is either a folder holding ``train.npy``, ``val.npy`` and ``test.npy`` (each ``(N, D)``), or one
``.npz`` file holding arrays named ``train``, ``val`` and ``test``, one row per example, as float32, unlabelled.
All three splits are checked when one is loaded: numeric, finite, and of one width.

With ``data.standardize`` (the default) every split is standardised with the mean and standard deviation of the
*training* split, ``z = (x - mean) / std`` per column, so no statistic of held-out data leaks into training.
Likelihoods are then densities of ``z``; the density of ``x`` in the file's units is
``log p(x) = log p(z) - sum(log std)`` (:attr:`TabularDataset.log_abs_det`). The MAF benchmark files are already
standardised, so the extra standardisation changes them by little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nfkit_core.data.base import SPLITS, ArrayDataset, DataError, check_split, read_npz, require_path
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["TabularConfig", "TabularDataset", "load_tabular", "SPEC"]

LAYOUT = "a folder with train.npy, val.npy, test.npy, or an .npz file with arrays train, val, test (each N x D)"


@dataclass
class TabularConfig:
    """Options of the ``tabular`` dataset.

    Attributes:
        root: the folder of ``{train,val,test}.npy`` files, or the ``.npz`` file.
        standardize: standardise every column with the training split's mean and standard deviation.
    """

    root: str = ""
    standardize: bool = True


class TabularDataset(ArrayDataset):
    """Rows of a tabular split, with the standardisation they went through.

    Args:
        data: the rows, ``(N, D)``, after standardisation.
        mean: the training split's column means that were subtracted, in float64 (``None`` without
            standardisation).
        std: the training split's column standard deviations that were divided by (``None`` likewise).

    Attributes:
        log_abs_det: ``-sum(log std)``, the log-determinant of the standardisation, per example (0 without).
    """

    def __init__(self, data: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> None:
        super().__init__(data, None, DataInfo(shape=(data.shape[1],)))
        self.mean, self.std = mean, std
        self.log_abs_det = -float(std.double().log().sum()) if std is not None else 0.0


def _read_arrays(path: Path) -> dict[str, tuple[np.ndarray, Path]]:
    """Every split's array and the file it comes from (memory-mapped for ``.npy`` files)."""
    if not path.is_dir():
        arrays = read_npz(path, SPLITS, "tabular", LAYOUT)
        return {split: (arrays[split], path) for split in SPLITS}
    arrays = {}
    for split in SPLITS:
        file = path / f"{split}.npy"
        if not file.is_file():
            raise DataError(f"{file} not found (dataset 'tabular' expects {LAYOUT})")
        try:
            arrays[split] = (np.load(file, mmap_mode="r", allow_pickle=False), file)
        except (OSError, ValueError, EOFError) as error:
            raise DataError(f"{file} is not a readable NumPy file ({error}); dataset 'tabular' expects {LAYOUT}"
                            ) from None
    return arrays


def _where(split: str, file: Path) -> str:
    return f"the {split!r} split ({file})" if file.suffix == ".npy" else f"{file} (array {split!r})"


def _as_rows(array: np.ndarray, where: str) -> torch.Tensor:
    data = torch.tensor(np.asarray(array), dtype=torch.float32)
    if not torch.isfinite(data).all():
        rows = int((~torch.isfinite(data)).any(dim=1).sum())
        raise DataError(f"{where} contains NaN or infinite values in {rows} rows")
    return data


def load_tabular(config: TabularConfig, split: str) -> TabularDataset:
    """The ``split`` array as unlabelled float vectors, standardised with the training statistics by default.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split, or data that are missing or malformed (the message says what to fetch or fix).
    """
    check_split("tabular", split)
    path = require_path("tabular", "root", config.root, LAYOUT)
    arrays = _read_arrays(path)
    for name, (array, file) in arrays.items():
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{_where(name, file)} has shape {array.shape} and dtype {array.dtype}; expected a "
                            f"numeric (N, D) array")
    width = arrays["train"][0].shape[1]
    odd = [f"{file if file.suffix == '.npy' else _where(name, file)} has {array.shape[1]} columns"
           for name, (array, file) in arrays.items() if array.shape[1] != width]
    if odd:
        raise DataError(f"the splits of {path} differ in width: the training split has {width} columns, but "
                        f"{'; '.join(odd)}")
    array, file = arrays[split]
    data = _as_rows(array, _where(split, file))
    if not config.standardize:
        return TabularDataset(data, None, None)
    train_array, train_file = arrays["train"]
    train = data if split == "train" else _as_rows(train_array, _where("train", train_file))
    mean, std = train.double().mean(dim=0), train.double().std(dim=0)
    constant = (std == 0).nonzero().flatten().tolist()
    if constant:
        raise DataError(f"columns {constant} of the training split ({train_file}) are constant and cannot be "
                        f"standardised; remove them, or set data.standardize=false")
    return TabularDataset(((data - mean) / std).float(), mean, std)


SPEC = DatasetSpec("tabular", TabularConfig, load_tabular,
                   "(N, D) arrays in .npy/.npz files, as the MAF benchmarks (POWER, GAS, HEPMASS, ...)")
