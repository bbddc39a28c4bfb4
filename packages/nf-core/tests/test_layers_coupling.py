"""Affine and additive coupling: masks, log-scale functions, parameter layouts, context."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nfkit_core.layers import AdditiveCoupling, AffineCoupling
from nfkit_core.testing import check_transform

NUM_CLASSES = 3


class Conditioner(nn.Module):
    """A small conv (images) or MLP (vectors); a class label in the context adds a learned bias."""

    def __init__(self, in_channels: int, out_channels: int, image: bool = True, conditional: bool = False) -> None:
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 3, padding=1)) if image else nn.Linear
        self.body = nn.Sequential(layer(in_channels, 8), nn.Tanh(), layer(8, out_channels))
        self.embed = nn.Embedding(NUM_CLASSES, out_channels) if conditional else None

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        out = self.body(h)
        if context is not None:
            bias = self.embed(context)
            out = out + bias.view(*bias.shape, *([1] * (out.dim() - 2)))
        return out


def images(seed: int = 0, channels: int = 4) -> torch.Tensor:
    return torch.randn(3, channels, 4, 4, generator=torch.Generator().manual_seed(seed))


LABELS = torch.tensor([0, 2, 1])


@pytest.mark.parametrize("log_scale", ["exp", "sigmoid", "tanh"])
@pytest.mark.parametrize("params", ["halves", "interleaved"])
def test_affine_channel_mask_conformance(log_scale, params):
    check_transform(lambda: AffineCoupling(Conditioner(2, 4), log_scale=log_scale, params=params), images())


@pytest.mark.parametrize("context", [None, LABELS])
@pytest.mark.parametrize("reverse_mask", [False, True])
def test_affine_checkerboard_conformance(context, reverse_mask):
    conditional = context is not None
    check_transform(lambda: AffineCoupling(Conditioner(3, 6, conditional=conditional), mask="checkerboard",
                                           reverse_mask=reverse_mask), images(channels=3), context=context)


@pytest.mark.parametrize("context", [None, LABELS])
def test_affine_vectors_odd_channels_conformance(context):
    x, conditional = torch.randn(3, 5), context is not None
    check_transform(lambda: AffineCoupling(Conditioner(2, 6, False, conditional), log_scale="tanh"), x, context=context)
    check_transform(lambda: AffineCoupling(Conditioner(2, 6, False, conditional), reverse_mask=True, shift_first=True),
                    x, context=context)


@pytest.mark.parametrize("mask, in_channels", [("channel", 2), ("checkerboard", 4)])
def test_additive_conformance(mask, in_channels):
    out_channels = 2 if mask == "channel" else 4
    check_transform(lambda: AdditiveCoupling(Conditioner(in_channels, out_channels, conditional=True), mask=mask),
                    images(), context=LABELS)


class Fixed(nn.Module):
    """A conditioner returning a fixed tensor, to check how its output is read."""

    def __init__(self, h: torch.Tensor) -> None:
        super().__init__()
        self.h = h

    def forward(self, x_a: torch.Tensor) -> torch.Tensor:
        return self.h


def test_glow_layout_and_order():
    """openai/glow: shift = h[:, 0::2], scale = sigmoid(h[:, 1::2] + 2), z_b = (x_b + shift) * scale."""
    x, h = images(1), images(2, channels=4)
    layer = AffineCoupling(Fixed(h), log_scale="sigmoid", params="interleaved", shift_first=True)
    z, log_det = layer(x)
    shift, scale = h[:, 0::2], torch.sigmoid(h[:, 1::2] + 2)
    torch.testing.assert_close(z[:, :2], x[:, :2])
    torch.testing.assert_close(z[:, 2:], (x[:, 2:] + shift) * scale)
    torch.testing.assert_close(log_det, torch.log(scale).sum(dim=(1, 2, 3)))


def test_survae_layout_and_tanh_scale():
    """survae/DenseFlow: h = [unconstrained scale | shift], scale = exp(2 tanh(s / 2)), z_b = x_b * scale + shift."""
    x, h = images(1), images(2, channels=4)
    z, log_det = AffineCoupling(Fixed(h), log_scale="tanh")(x)
    scale, shift = torch.exp(2 * torch.tanh(h[:, :2] / 2)), h[:, 2:]
    torch.testing.assert_close(z[:, 2:], x[:, 2:] * scale + shift)
    torch.testing.assert_close(log_det, torch.log(scale).sum(dim=(1, 2, 3)))


def test_checkerboard_keeps_even_pixels_and_hides_odd_ones_from_the_conditioner():
    seen = []

    class Spy(nn.Module):
        def forward(self, x_a: torch.Tensor) -> torch.Tensor:
            seen.append(x_a)
            return torch.ones(x_a.shape[0], 2 * x_a.shape[1], *x_a.shape[2:])

    x = images(3, channels=2)
    z, log_det = AffineCoupling(Spy(), mask="checkerboard")(x)
    even = (torch.arange(4).view(-1, 1) + torch.arange(4).view(1, -1)) % 2 == 0
    assert torch.equal(z[..., even], x[..., even])
    torch.testing.assert_close(z[..., ~even], x[..., ~even] * torch.e + 1)
    assert torch.equal(seen[0][..., ~even], torch.zeros_like(seen[0][..., ~even]))
    torch.testing.assert_close(log_det, torch.full((3,), 2 * 8.0))


def test_wrong_conditioner_output_is_an_error():
    layer = AffineCoupling(nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match=r"conditioner must return shape \(3, 4, 4, 4\)"):
        layer(images())
    with pytest.raises(ValueError, match="checkerboard mask needs images"):
        AffineCoupling(nn.Linear(4, 8), mask="checkerboard")(torch.randn(2, 4))
    with pytest.raises(ValueError, match="log_scale must be one of"):
        AffineCoupling(nn.Identity(), log_scale="softplus")
