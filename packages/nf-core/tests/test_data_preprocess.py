"""Preprocessing: crops, flips, scaling, dequantization and its bits/dim correction, noise, label dropout."""

from __future__ import annotations

import math

import pytest
import torch

from nfkit_core import bits_per_dim, noise
from nfkit_core.data.preprocess import (
    Preprocessing,
    add_gaussian_noise,
    center_crop_resize,
    drop_labels,
    random_horizontal_flip,
    scale_levels,
    uniform_dequantize,
)
from nfkit_core.plugins import DataInfo

DIGITS = DataInfo(shape=(1, 8, 8), num_classes=10, num_bins=17)


def test_center_crop_takes_the_middle_square_and_resizes():
    image = torch.arange(6 * 10, dtype=torch.uint8).reshape(1, 6, 10)
    assert torch.equal(center_crop_resize(image, 6), image[:, :, 2:8])
    uniform = torch.full((3, 6, 10), 77, dtype=torch.uint8)
    small = center_crop_resize(uniform, 3)
    assert small.shape == (3, 3, 3) and small.dtype == torch.uint8 and (small == 77).all()


def test_horizontal_flip_follows_the_drawn_noise():
    x = torch.arange(3 * 2 * 2 * 3, dtype=torch.float32).reshape(3, 2, 2, 3)
    with noise.use(noise.Replay([torch.tensor([0.2, 0.7, 0.4])])):
        flipped = random_horizontal_flip(x)
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])
    assert torch.equal(flipped[2], x[2].flip(-1))


def test_scaling_maps_the_extreme_levels_to_minus_one_and_one():
    assert scale_levels(torch.tensor([0.0, 8.0, 16.0]), 17).tolist() == [-1.0, 0.0, 1.0]


def test_uniform_dequantization_keeps_each_level_in_its_bin():
    levels = torch.arange(17.0).repeat(50)
    with noise.use(torch.Generator().manual_seed(0)):
        y = uniform_dequantize(levels, 17)
    assert y.min() >= -1 and y.max() < 1
    assert torch.equal(torch.floor((y + 1) / 2 * 17), levels)
    u = (y + 1) / 2 * 17 - levels
    assert abs(u.mean().item() - 0.5) < 0.05


def test_dequantization_correction_gives_the_discrete_likelihood():
    """A uniform density on [-1, 1]^D gives every one of the K^D bins the mass 1/K^D: exactly log2(K) bits/dim."""
    preprocessing = Preprocessing.choose(DIGITS, flow_dequantizes=False)
    assert preprocessing.mode == "dequantize" and preprocessing.log_bin_width == pytest.approx(math.log(2 / 17))
    dims = 64
    log_density = torch.full((5,), -dims * math.log(2.0))
    bpd = bits_per_dim(log_density, dims, preprocessing.log_bin_width)
    assert torch.allclose(bpd, torch.full((5,), math.log2(17)))


def test_gaussian_noise_has_the_given_sigma():
    x = torch.zeros(20000)
    with noise.use(torch.Generator().manual_seed(0)):
        noisy = add_gaussian_noise(x, 0.05)
    assert abs(noisy.std().item() - 0.05) < 0.002 and abs(noisy.mean().item()) < 0.002


def test_noise_mode_scales_then_adds_noise_and_uses_the_level_spacing():
    preprocessing = Preprocessing.choose(DIGITS, flow_dequantizes=False, noise_std=0.1)
    assert preprocessing.mode == "noise" and preprocessing.log_bin_width == pytest.approx(math.log(2 / 16))
    levels = torch.tensor([[0.0, 16.0]])
    eps = torch.tensor([[1.0, -2.0]])
    with noise.use(noise.Replay([eps])):
        x, _ = preprocessing(levels, torch.tensor([3]), train=True)
    assert torch.allclose(x, torch.tensor([[-1.0 + 0.1, 1.0 - 0.2]]))


def test_label_dropout_sets_dropped_labels_to_minus_one():
    labels = torch.arange(10000) % 10
    with noise.use(torch.Generator().manual_seed(0)):
        dropped = drop_labels(labels, 0.2)
    kept = dropped >= 0
    assert abs((~kept).float().mean().item() - 0.2) < 0.02
    assert torch.equal(dropped[kept], labels[kept]) and (dropped[~kept] == -1).all()
    assert torch.equal(drop_labels(labels, 0.0), labels)


def test_flips_and_label_dropout_only_in_training():
    preprocessing = Preprocessing.choose(DIGITS, flow_dequantizes=True, hflip=True, label_dropout=0.5)
    assert preprocessing.mode == "levels" and preprocessing.log_bin_width == 0.0
    x = torch.arange(64.0).reshape(1, 1, 8, 8) % 17
    labels = torch.tensor([4])
    with noise.use(noise.Replay([torch.tensor([0.1]), torch.tensor([0.1])])):
        flipped, dropped = preprocessing(x, labels, train=True)
    assert torch.equal(flipped, x.flip(-1)) and dropped.item() == -1
    with noise.use(noise.Replay([])):  # no draws at all outside training
        same, kept = preprocessing(x, labels, train=False)
    assert torch.equal(same, x) and kept.item() == 4


def test_continuous_data_is_left_alone_or_noised():
    info = DataInfo(shape=(2,))
    x = torch.tensor([[0.5, -1.5]])
    assert torch.equal(Preprocessing.choose(info, False)(x, torch.tensor([-1]), train=True)[0], x)
    with noise.use(noise.Replay([torch.tensor([[1.0, 1.0]])])):
        noisy, _ = Preprocessing.choose(info, False, noise_std=0.5)(x, torch.tensor([-1]), train=True)
    assert torch.equal(noisy, torch.tensor([[1.0, -1.0]]))


def test_choices_that_do_not_fit_the_data_or_flow_are_errors():
    with pytest.raises(ValueError, match="the flow dequantizes the data itself"):
        Preprocessing.choose(DIGITS, flow_dequantizes=True, noise_std=0.1)
    with pytest.raises(ValueError, match="the flow has a dequantizer, but the data is continuous"):
        Preprocessing.choose(DataInfo(shape=(2,)), flow_dequantizes=True)
    with pytest.raises(ValueError, match=r"horizontal flips need images of shape \(C, H, W\)"):
        Preprocessing.choose(DataInfo(shape=(2,)), flow_dequantizes=False, hflip=True)
    with pytest.raises(ValueError, match="0 <= label_dropout < 1"):
        Preprocessing("dequantize", 17, label_dropout=1.0)


def test_samples_map_back_to_the_unit_interval():
    levels = Preprocessing("levels", 17).to_unit_interval(torch.tensor([0.0, 8.0, 16.0, float("nan")]))
    assert levels.tolist() == [0.0, 0.5, 1.0, 0.0]
    symmetric = Preprocessing("dequantize", 17).to_unit_interval(torch.tensor([-1.0, 0.0, 3.0]))
    assert symmetric.tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="continuous data has no image range"):
        Preprocessing("continuous").to_unit_interval(torch.zeros(2))
