"""Pictures of an evaluation: sample grids, nearest training neighbours of samples, interpolation grids, and the
temperature-sweep plot. Images are data values (integer levels), drawn through nfkit-core's grid writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from nfkit_core.data import Preprocessing
from nfkit_core.train.plots import save_samples

__all__ = ["save_levels", "save_nearest_neighbours", "plot_temperature_sweep"]


def save_levels(levels: Tensor, num_bins: int, path: str | Path, nrow: int | None = None) -> Path:
    """A grid of images given as levels ``0 .. K-1``.

    Args:
        levels: images as levels, ``(n, C, H, W)``.
        num_bins: the number of levels ``K``.
        path: the PNG file to write.
        nrow: images per row (a square grid by default).

    Returns:
        ``path``.
    """
    save_samples(levels, Preprocessing("levels", num_bins), path, nrow=nrow)
    return Path(path)


def save_nearest_neighbours(samples: Tensor, train: Tensor, num_bins: int, path: str | Path, rows: int = 8,
                            neighbours: int = 5) -> Path:
    """Each row: one sample, then its ``neighbours`` nearest training images (Euclidean distance of the levels), to
    see whether a flow reproduces its training data.

    Args:
        samples: generated images as levels, ``(n, C, H, W)``.
        train: the training images as levels, ``(N, C, H, W)``.
        num_bins: the number of levels ``K``.
        path: the PNG file to write.
        rows: the number of samples shown.
        neighbours: training images shown per sample.

    Returns:
        ``path``.
    """
    samples, train = samples[:rows].float(), train.float()
    distances = torch.cdist(samples.flatten(1), train.flatten(1))
    nearest = distances.topk(neighbours, largest=False).indices
    grid = torch.cat([torch.cat([s[None], train[i]]) for s, i in zip(samples, nearest, strict=True)])
    return save_levels(grid, num_bins, path, nrow=neighbours + 1)


def plot_temperature_sweep(temperatures: Sequence[float], values: Sequence[float], name: str,
                           path: str | Path) -> Path:
    """``name`` (e.g. FD-digits) against the sampling temperature.

    Args:
        temperatures: the sampling temperatures.
        values: the metric at each temperature.
        name: the metric's name, the y-axis label.
        path: the PNG file to write.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(list(temperatures), list(values), marker="o")
    axes.set_xlabel("temperature")
    axes.set_ylabel(name)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(str(path))
    return Path(path)
