"""Noise augmentation: -log q(e | x), dropping the noise again, noise draws."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nfkit_core import noise
from nfkit_core.layers import Augment
from nfkit_core.testing import check_transform


class Encoder(nn.Module):
    def __init__(self, channels: int, noise_channels: int, num_classes: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * noise_channels, 3, padding=1)
        self.embed = nn.Embedding(num_classes, 2 * noise_channels) if num_classes else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(x)
        return h if context is None else h + self.embed(context)[:, :, None, None]


def test_conformance():
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    check_transform(lambda: Augment(3), x)
    check_transform(lambda: Augment(2), torch.randn(3, 5))
    check_transform(lambda: Augment(2, Encoder(2, 2), params="interleaved"), x)
    check_transform(lambda: Augment(1, Encoder(2, 1, num_classes=2)), x, context=torch.tensor([0, 1, 1]))


def test_log_det_is_minus_log_q_of_the_appended_noise():
    torch.manual_seed(0)
    x, encoder = torch.randn(2, 2, 3, 3), Encoder(2, 2)
    record = noise.Record()
    with noise.use(record):
        z, log_det = Augment(2, encoder)(x)
    (eps,) = record.draws
    mean, log_scale = encoder(x).chunk(2, dim=1)
    e = mean + log_scale.exp() * eps
    assert torch.equal(z[:, :2], x)
    torch.testing.assert_close(z[:, 2:], e)
    log_q = torch.distributions.Normal(mean, log_scale.exp()).log_prob(e).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_det, -log_q)
    x_back, inverse_log_det = Augment(2, encoder).inverse(z)
    assert torch.equal(x_back, x)
    torch.testing.assert_close(inverse_log_det, log_q)


def test_errors():
    with pytest.raises(ValueError, match="noise_channels must be at least 1"):
        Augment(0)
    with pytest.raises(ValueError, match="expects more than 2 channels"):
        Augment(2).inverse(torch.randn(2, 2))
