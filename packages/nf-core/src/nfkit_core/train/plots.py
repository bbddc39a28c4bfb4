"""Figures of a run: sample grids (or scatter plots of vector samples) and loss / bits-per-dim curves.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas, so no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from nfkit_core.data.preprocess import Preprocessing
from nfkit_core.extras import require

__all__ = ["save_samples", "plot_curves", "MIN_IMAGE_SIZE"]

MIN_IMAGE_SIZE = 32
"""Images narrower than this are enlarged by an integer factor (nearest neighbour) in sample grids."""


def _figure(width: float, height: float):
    canvas = require("matplotlib.backends.backend_agg", "drawing figures").FigureCanvasAgg
    figure = require("matplotlib.figure", "drawing figures").Figure(figsize=(width, height), dpi=100)
    canvas(figure)
    return figure


def save_samples(samples: Tensor, preprocessing: Preprocessing, path: str | Path, nrow: int | None = None) -> None:
    """Write samples to a PNG: images as a grid, vectors as a scatter plot of their first two coordinates.

    Small images (e.g. the 8x8 digits) are enlarged to at least :data:`MIN_IMAGE_SIZE` pixels, so that the grid can
    be looked at; ``nrow`` images per row (default: a square grid).

    Args:
        samples: samples of the flow, ``(n, C, H, W)`` images or ``(n, D)`` vectors, in the flow's units.
        preprocessing: maps image samples back to ``[0, 1]``.
        path: the PNG file to write.
        nrow: images per row.
    """
    save_image = require("torchvision.utils", "saving image grids").save_image
    samples = samples.detach().cpu()
    if samples.dim() == 4:
        images = preprocessing.to_unit_interval(samples)
        factor = max(1, MIN_IMAGE_SIZE // images.shape[-1])
        images = images.repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2)
        save_image(images, str(path), nrow=nrow or math.ceil(math.sqrt(len(images))), padding=1, pad_value=1.0)
        return
    points = torch.nan_to_num(samples.reshape(len(samples), -1).float()).numpy()
    figure = _figure(4, 4)
    axes = figure.add_subplot()
    if points.shape[1] == 1:
        axes.hist(points[:, 0], bins=50)
    else:
        axes.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        axes.set_aspect("equal", adjustable="datalim")
    axes.set_title(f"{len(points)} samples" + (" (first two dimensions)" if points.shape[1] > 2 else ""))
    figure.savefig(str(path))


def plot_curves(rows: Sequence[dict], path: str | Path) -> None:
    """Plot training loss (nats) and training / validation bits per dimension against the step.

    Args:
        rows: the lines of ``metrics.jsonl``.
        path: the PNG file to write.
    """
    train = [row for row in rows if "loss" in row]
    val = [row for row in rows if "val_bpd" in row]
    figure = _figure(9, 3.5)
    loss_axes, bpd_axes = figure.subplots(1, 2)
    loss_axes.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    loss_axes.set(xlabel="step", ylabel="negative log-likelihood (nats)", title="training loss")
    bpd_axes.plot([r["step"] for r in train], [r["bpd"] for r in train], lw=1, label="train")
    if val:
        bpd_axes.plot([r["step"] for r in val], [r["val_bpd"] for r in val], "o-", lw=1.5, label="validation")
    bpd_axes.set(xlabel="step", ylabel="bits per dimension", title="bits per dimension")
    bpd_axes.legend()
    figure.tight_layout()
    figure.savefig(str(path))
