"""Squeeze / Unsqueeze: channel order against survae's and openai/glow's reshapes."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.layers import Squeeze, Unsqueeze
from nfkit_core.testing import check_transform


@pytest.mark.parametrize("factor", [2, 3])
def test_conformance(factor):
    x = torch.randn(2, 2, 2 * factor, factor)
    check_transform(lambda: Squeeze(factor), x)
    check_transform(lambda: Unsqueeze(factor), torch.randn(2, 2 * factor * factor, 2, 1))


def test_channel_order_matches_survae_squeeze2d():
    x = torch.randn(2, 3, 4, 6)
    b, c, h, w = x.shape
    expected = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
    assert torch.equal(Squeeze()(x)[0], expected)


def test_channel_order_matches_openai_glow_squeeze2d():
    x = torch.randn(2, 3, 4, 6)
    nhwc = x.permute(0, 2, 3, 1)
    b, h, w, c = nhwc.shape
    squeezed = nhwc.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, 4 * c)
    assert torch.equal(Squeeze()(x)[0], squeezed.permute(0, 3, 1, 2))


def test_unsqueeze_inverts_squeeze():
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(Unsqueeze()(Squeeze()(x)[0])[0], x)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match=r"H and W divisible by 2, got shape \(1, 3, 5, 4\)"):
        Squeeze()(torch.randn(1, 3, 5, 4))
    with pytest.raises(ValueError, match="C divisible by 4"):
        Unsqueeze()(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="factor must be >= 1"):
        Squeeze(0)
