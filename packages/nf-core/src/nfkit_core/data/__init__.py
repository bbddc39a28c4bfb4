"""Datasets and preprocessing. Every dataset registers through the plugin registry (see :mod:`nfkit_core.builtins`),
and is loaded through it (:meth:`nfkit_core.plugins.Registry.load_dataset`).

A dataset is a :class:`~nfkit_core.specs.DatasetSpec` whose ``load(config, split)`` returns a
:class:`torch.utils.data.Dataset` of ``(x, label)`` pairs with an ``info`` attribute (a
:class:`~nfkit_core.specs.DataInfo`); ``split`` is ``"train"``, ``"val"`` or ``"test"``. Image datasets return integer
levels as floats, continuous datasets floats, unlabelled datasets the label ``-1``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from nfkit_core.data import cifar10, digits, image_folder, imagenet_npz, shards, tabular, toy2d
from nfkit_core.data.base import SPLITS, ArrayDataset, DataError
from nfkit_core.data.convert import Source
from nfkit_core.data.preprocess import Preprocessing
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["BUILTIN_DATASETS", "CONVERTIBLE", "SPLITS", "ArrayDataset", "DataError", "Preprocessing", "dataset_info"]

BUILTIN_DATASETS: tuple[DatasetSpec, ...] = (digits.SPEC, image_folder.SPEC, cifar10.SPEC, imagenet_npz.SPEC,
                                             shards.SPEC, tabular.SPEC, toy2d.SPEC)

# The datasets ``nf data convert`` reads: name -> conversion_source(config, images_per_shard).
CONVERTIBLE: dict[str, Callable[..., Source]] = {"imagenet-npz": imagenet_npz.conversion_source,
                                                 "cifar10": cifar10.conversion_source,
                                                 "image-folder": image_folder.conversion_source}


def dataset_info(dataset: Dataset) -> DataInfo:
    """The :class:`DataInfo` a loaded dataset carries; a clear error for a dataset plugin that forgot it.

    Args:
        dataset: a dataset returned by a registered ``load``.

    Raises:
        TypeError: the dataset has no ``info``.
    """
    info = getattr(dataset, "info", None)
    if not isinstance(info, DataInfo):
        raise TypeError(f"{type(dataset).__name__} has no `info` attribute of type DataInfo; a dataset's load() "
                        f"must return a Dataset that describes its data")
    return info

