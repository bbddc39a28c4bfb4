"""What a flow is evaluated on: the held-out split, the training split (for classifiers and nearest neighbours), and
the preprocessing that turns dataset values into what the flow models.

Datasets hold the *discrete* data (integer levels for images, floats for continuous data). Every metric compares the
flow with that data: likelihoods through :class:`DiscreteLikelihood`, samples after :func:`to_data_space` has mapped
them back onto the data's levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from nfkit_core.data import DataError, Preprocessing, dataset_info
from nfkit_core.errors import MissingFileError
from nfkit_core.plugins import DataInfo, Registry, get_registry

__all__ = ["EvalData", "DiscreteLikelihood", "to_data_space", "stack"]


@dataclass
class EvalData:
    """The data a flow is evaluated on.

    Attributes:
        name: the dataset's registered name (``"digits"``), for reports and cache keys.
        config: the dataset's options (a dataclass of its spec), for cache keys.
        split: the name of the held-out split in ``held_out``.
        held_out: the split that likelihoods and sample metrics are measured on.
        train: the training split (dataset classifiers are trained on it; nearest neighbours come from it).
        preprocessing: how dataset values become flow inputs (dequantization, noise, continuous).
        info: what the flow was told about the data (shape, classes if it is class-conditional, bins).
    """

    name: str
    config: Any
    split: str
    held_out: Dataset
    train: Dataset
    preprocessing: Preprocessing
    info: DataInfo

    @classmethod
    def load(cls, name: str, config: Any, preprocessing: Preprocessing, info: DataInfo, split: str = "test",
             registry: Registry | None = None) -> EvalData:
        """Load ``split`` and the training split of the registered dataset ``name``.

        Args:
            name: the registered dataset name.
            config: an instance of the dataset's config class (as the run was trained with).
            preprocessing: how dataset values become flow inputs.
            info: what the flow was told about the data.
            split: the held-out split, ``"val"`` or ``"test"``.
            registry: where the dataset is looked up (the process-wide registry by default).

        Raises:
            DataError: the data cannot be found; the message names the option that points to it.
        """
        try:
            registry = registry or get_registry()
            held_out = registry.load_dataset(name, config, split)
            train = registry.load_dataset(name, config, "train")
        except (DataError, MissingFileError) as error:
            raise DataError(f"the data of this run cannot be found ({error}); pass its location with "
                            f"--set data.KEY=VALUE (e.g. data.root=PATH)") from None
        found = dataset_info(held_out)
        if tuple(found.shape) != tuple(info.shape):
            raise DataError(f"dataset {name!r} now has shape {found.shape}, the flow was trained on {info.shape}")
        return cls(name, config, split, held_out, train, preprocessing, info)

    @property
    def is_image(self) -> bool:
        """Images ``(C, H, W)`` with discrete levels; everything else is treated as continuous vectors."""
        return len(self.info.shape) == 3 and self.preprocessing.num_bins is not None

    @property
    def num_dims(self) -> int:
        return math.prod(self.info.shape)

    def context(self, labels: Tensor) -> Tensor | None:
        """The flow's context for these labels: the labels for a class-conditional flow, else ``None``.

        Args:
            labels: class labels ``(B,)``.
        """
        return labels if self.info.num_classes > 0 else None


class DiscreteLikelihood(nn.Module):
    """``log P(x)`` of dataset values ``x`` in nats: preprocessing, then the flow, then the bin width.

    ``log P(x) >= log p(y) + D log Δ`` with ``y = preprocess(x)`` (Theis et al. 2016, eq. 12; ``Δ`` is the bin width of
    :attr:`Preprocessing.log_bin_width <nfkit_core.data.preprocess.Preprocessing.log_bin_width>`, 1 for flows that
    dequantize themselves and for continuous data). Every noise
    draw (uniform dequantization, Gaussian noise augmentation, the flow's own stochastic layers) comes from
    :mod:`nfkit_core.noise`, so :func:`nfkit_core.flow.log_prob_draws` can redraw all of it for the importance-weighted
    bound.

    Args:
        flow: the flow.
        preprocessing: how the run prepared the dataset's values for the flow.
    """

    def __init__(self, flow: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.flow = flow
        self.preprocessing = preprocessing

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log P(x | context)`` of dataset values, in nats, shape ``(B,)``.

        Args:
            x: dataset values, ``(B, *shape)`` (levels for images).
            context: the flow's conditioning, or ``None``.
        """
        labels = context if context is not None else torch.full((x.shape[0],), -1, device=x.device)
        y, _ = self.preprocessing(x, labels, train=False)
        num_dims = math.prod(x.shape[1:])
        return self.flow.log_prob(y, context) + num_dims * self.preprocessing.log_bin_width


def to_data_space(samples: Tensor, preprocessing: Preprocessing) -> Tensor:
    """Map flow samples onto the data's values: integer levels ``0 .. K-1`` for images (as floats), as they are for
    continuous data.

    Uniformly dequantized samples ``y`` in ``[-1, 1]`` fall in bin ``floor((y + 1) / 2 * K)``; noise-augmented ones are
    rounded to the nearest of the ``K`` scaled levels; a flow with its own dequantizer already returns levels.
    Non-finite samples become level 0 (and count against the flow in every sample metric).

    Args:
        samples: samples of the flow, ``(n, *shape)``.
        preprocessing: how the run prepared the dataset's values.
    """
    if preprocessing.mode == "continuous":
        return samples.float()
    k = preprocessing.num_bins
    samples = torch.nan_to_num(samples.float(), nan=-1.0, posinf=-1.0, neginf=-1.0)
    if preprocessing.mode == "dequantize":
        levels = torch.floor((samples + 1) / 2 * k)
    elif preprocessing.mode == "noise":
        levels = torch.round((samples + 1) / 2 * (k - 1))
    else:
        levels = torch.round(samples)
    return levels.clamp(0, k - 1)


def stack(dataset: Dataset, limit: int | None = None, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """The first ``limit`` examples of ``dataset`` (all by default) as one tensor of values and one of labels.

    Args:
        dataset: a dataset of ``(value, label)`` pairs.
        limit: the number of examples (all when ``None``).
        batch_size: examples read at once.

    Returns:
        ``(values, labels)``, each batch first.
    """
    count = len(dataset) if limit is None else min(limit, len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=range(count))
    values, labels = zip(*loader, strict=True) if count else ((), ())
    if not values:
        raise DataError("the split is empty")
    return torch.cat(values), torch.cat(labels)
