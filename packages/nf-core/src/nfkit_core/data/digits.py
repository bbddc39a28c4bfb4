"""scikit-learn's 8x8 handwritten digits: 1797 grey-scale images with 17 levels (0..16) and 10 classes.

The data ships inside scikit-learn, so it needs no download; it is nf's default dataset. There is no official split:
a fixed shuffle gives the validation and test parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nfkit_core.data.base import ArrayDataset, check_split, split_indices
from nfkit_core.extras import require
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["DigitsConfig", "load_digits", "SPEC"]

NUM_BINS = 17
NUM_CLASSES = 10


@dataclass
class DigitsConfig:
    """Options of the ``digits`` dataset.

    Attributes:
        val_fraction: share of the 1797 images held out for validation.
        test_fraction: share held out for the test report.
        split_seed: seed of the fixed shuffle that assigns images to splits.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0


def load_digits(config: DigitsConfig, split: str) -> ArrayDataset:
    """The ``split`` part of the digits, as ``(1, 8, 8)`` images of levels 0..16 with class labels.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split, or data that are missing or malformed (the message says what to fetch or fix).
    """
    sklearn_digits = require("sklearn.datasets", "the digits dataset").load_digits

    check_split("digits", split)
    digits = sklearn_digits()
    images = torch.as_tensor(digits.images, dtype=torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    parts = split_indices(len(images), [config.val_fraction, config.test_fraction], config.split_seed)
    index = torch.as_tensor(parts[("train", "val", "test").index(split)])
    return ArrayDataset(images[index], labels[index], DataInfo(shape=(1, 8, 8), num_classes=NUM_CLASSES,
                                                                num_bins=NUM_BINS))


SPEC = DatasetSpec("digits", DigitsConfig, load_digits,
                   "scikit-learn's 8x8 digits: 17 grey levels, 10 classes, no download (the default)")
