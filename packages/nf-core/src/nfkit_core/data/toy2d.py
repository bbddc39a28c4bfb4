"""Two-dimensional toy densities for quick experiments and plots.

``moons``, ``circles``, ``checkerboard`` and ``8gaussians``, generated as in FFJORD's ``toy_data.inf_train_gen``
(Grathwohl et al. 2019): each lies roughly in ``[-4, 4]^2``. Every split is drawn from its own fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nfkit_core.data.base import SPLITS, ArrayDataset, DataError, check_split
from nfkit_core.extras import require
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["Toy2dConfig", "DISTRIBUTIONS", "sample_toy2d", "load_toy2d", "SPEC"]


@dataclass
class Toy2dConfig:
    """Options of the ``toy2d`` dataset.

    Attributes:
        distribution: one of ``moons``, ``circles``, ``checkerboard``, ``8gaussians``.
        train_size: number of training points.
        eval_size: number of points in each of the validation and test splits.
        seed: base seed; each split adds its own offset.
    """

    distribution: str = "moons"
    train_size: int = 10000
    eval_size: int = 2000
    seed: int = 0


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    make_moons = require("sklearn.datasets", "the toy2d dataset").make_moons

    points = make_moons(n_samples=n, noise=0.1, random_state=int(rng.integers(2**31)))[0]
    return points * 2 + np.array([-1.0, -0.2])


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    make_circles = require("sklearn.datasets", "the toy2d dataset").make_circles

    return make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=int(rng.integers(2**31)))[0] * 3


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = np.arange(8) * np.pi / 4
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = rng.standard_normal((n, 2)) * 0.5 + centers[rng.integers(0, 8, n)]
    return points / 1.414


DISTRIBUTIONS = {"moons": _moons, "circles": _circles, "checkerboard": _checkerboard, "8gaussians": _eight_gaussians}


def sample_toy2d(distribution: str, n: int, seed: int) -> torch.Tensor:
    """``n`` points of shape ``(n, 2)`` from a named toy distribution.

    Args:
        distribution: the name of a toy distribution (e.g. ``"moons"``).
        n: the number of points.
        seed: seeds the draw.

    Raises:
        DataError: an unknown distribution.

    Example:
        >>> sample_toy2d("moons", 4, seed=0).shape
        torch.Size([4, 2])
    """
    if distribution not in DISTRIBUTIONS:
        raise DataError(f"unknown toy2d distribution {distribution!r}; available: {', '.join(DISTRIBUTIONS)}")
    points = DISTRIBUTIONS[distribution](n, np.random.default_rng(seed))
    return torch.as_tensor(points, dtype=torch.float32)


def load_toy2d(config: Toy2dConfig, split: str) -> ArrayDataset:
    """The ``split`` part: ``train_size`` or ``eval_size`` unlabelled 2-D points.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split or distribution.
    """
    check_split("toy2d", split)
    size = config.train_size if split == "train" else config.eval_size
    points = sample_toy2d(config.distribution, size, config.seed * len(SPLITS) + SPLITS.index(split))
    return ArrayDataset(points, None, DataInfo(shape=(2,)))


SPEC = DatasetSpec("toy2d", Toy2dConfig, load_toy2d, "2-D toy densities: moons, circles, checkerboard, 8gaussians")
