"""The figures of a run: sample grids read back pixel by pixel, scatter plots and curves."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nfkit_core.data import Preprocessing
from nfkit_core.train.plots import plot_curves, save_samples


def test_sample_grid_shows_levels_enlarged_with_white_padding(tmp_path):
    samples = torch.zeros(2, 1, 8, 8)
    samples[1] = 16.0  # the second image is white
    samples[0, 0, 0, 0] = 8.0  # one mid-grey pixel in the top-left corner of the first
    save_samples(samples, Preprocessing("levels", 17), tmp_path / "grid.png", nrow=2)
    pixels = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    assert pixels.shape == (1 + 33, 1 + 2 * 33)
    first, second = pixels[1:33, 1:33], pixels[1:33, 34:66]
    assert (first[:4, :4] == 128).all() and (first[4:, :] == 0).all() and (first[:, 4:] == 0).all()
    assert (second == 255).all() and (pixels[0] == 255).all() and (pixels[:, 33] == 255).all()


def test_dequantized_samples_are_mapped_from_minus_one_to_one(tmp_path):
    samples = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 32, 32)
    save_samples(samples, Preprocessing("dequantize", 256), tmp_path / "grid.png", nrow=2)
    pixels = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    assert pixels.shape == (34, 67, 3)  # 32 x 32 images are not enlarged
    assert (pixels[1:33, 1:33] == 0).all() and (pixels[1:33, 34:66] == 255).all()


def test_vector_samples_and_curves_are_drawn(tmp_path):
    save_samples(torch.randn(100, 2), Preprocessing("continuous"), tmp_path / "points.png")
    rows = [{"step": s, "loss": 10.0 / s, "bpd": 5.0 / s} for s in range(1, 20)] + [{"step": 10, "val_bpd": 1.0}]
    plot_curves(rows, tmp_path / "curves.png")
    for name, size in (("points.png", (400, 400)), ("curves.png", (900, 350))):
        with Image.open(tmp_path / name) as image:
            assert image.size == size and len(set(np.asarray(image.convert("L")).ravel().tolist())) > 2
