"""Datasets and preprocessing. Every dataset registers through the plugin registry (see :mod:`nfkit_core.builtins`).

A dataset is a :class:`~nfkit_core.plugins.DatasetSpec` whose ``load(config, split)`` returns a
:class:`torch.utils.data.Dataset` of ``(x, label)`` pairs with an ``info`` attribute (a
:class:`~nfkit_core.plugins.DataInfo`); ``split`` is ``"train"``, ``"val"`` or ``"test"``. Image datasets return integer
levels as floats, continuous datasets floats, unlabelled datasets the label ``-1``.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from nfkit_core.data import cifar10, digits, image_folder, imagenet_npz, shards, tabular, toy2d
from nfkit_core.data.base import SPLITS, ArrayDataset, DataError
from nfkit_core.data.preprocess import Preprocessing
from nfkit_core.plugins.registry import DataInfo, DatasetSpec, Registry

__all__ = ["BUILTIN_DATASETS", "SPLITS", "ArrayDataset", "DataError", "Preprocessing", "dataset_info",
           "load_dataset"]

BUILTIN_DATASETS: tuple[DatasetSpec, ...] = (digits.SPEC, image_folder.SPEC, cifar10.SPEC, imagenet_npz.SPEC,
                                             shards.SPEC, tabular.SPEC, toy2d.SPEC)


def dataset_info(dataset: Dataset) -> DataInfo:
    """The :class:`DataInfo` a loaded dataset carries; a clear error for a dataset plugin that forgot it."""
    info = getattr(dataset, "info", None)
    if not isinstance(info, DataInfo):
        raise TypeError(f"{type(dataset).__name__} has no `info` attribute of type DataInfo; a dataset's load() "
                        f"must return a Dataset that describes its data")
    return info


def load_dataset(name: str, config: Any = None, split: str = "train", registry: Registry | None = None) -> Dataset:
    """Load ``split`` of the registered dataset ``name`` (with its default config when ``config`` is None)."""
    from nfkit_core.plugins import get_registry

    spec: DatasetSpec = (registry or get_registry()).get("dataset", name)
    dataset = spec.load(config if config is not None else spec.config_class(), split)
    dataset_info(dataset)
    return dataset
