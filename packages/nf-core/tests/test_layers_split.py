"""Factor-out split: standard-normal and learned conditional prior, log-det, sampling, temperature."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nfkit_core import noise
from nfkit_core.layers import Split
from nfkit_core.priors import normal_log_prob
from nfkit_core.testing import check_transform


class PriorNet(nn.Module):
    """A conv from the kept channels to mean and log-scale of the dropped ones; a label in the context adds a bias."""

    def __init__(self, kept: int, dropped: int, num_classes: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(kept, 2 * dropped, 3, padding=1)
        self.embed = nn.Embedding(num_classes, 2 * dropped) if num_classes else None

    def forward(self, kept: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(kept)
        return h if context is None else h + self.embed(context)[:, :, None, None]


def images() -> torch.Tensor:
    return torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("params", ["halves", "interleaved"])
def test_conformance(params):
    check_transform(lambda: Split(2), images())
    check_transform(lambda: Split(1, num_channels=3), torch.randn(3, 3))
    check_transform(lambda: Split(3, PriorNet(3, 1), params=params, num_channels=4), images())
    check_transform(lambda: Split(2, PriorNet(2, 2, num_classes=3), params=params), images(),
                    context=torch.tensor([2, 0, 1]))


def test_standard_normal_log_det_is_the_log_density_of_the_dropped_half():
    x = images()
    kept, log_det = Split(2)(x)
    assert torch.equal(kept, x[:, :2])
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x[:, 2:]).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_det, expected)


@pytest.mark.parametrize("params", ["halves", "interleaved"])
def test_conditional_log_det_uses_the_network_mean_and_log_scale(params):
    torch.manual_seed(0)
    x, net = images(), PriorNet(2, 2)
    _, log_det = Split(2, net, params=params)(x)
    h = net(x[:, :2])
    mean, log_scale = (h[:, :2], h[:, 2:]) if params == "halves" else (h[:, 0::2], h[:, 1::2])
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(x[:, 2:]).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_det, expected)
    torch.testing.assert_close(log_det, normal_log_prob(x[:, 2:], mean, log_scale).sum(dim=(1, 2, 3)))


def test_inverse_samples_the_dropped_half_at_the_temperature():
    torch.manual_seed(0)
    net = PriorNet(2, 2)
    layer = Split(2, net)
    z = torch.randn(2, 2, 4, 4)
    mean, log_scale = net(z).chunk(2, dim=1)
    record = noise.Record()
    with noise.use(record, temperature=0.5):
        x, log_det = layer.inverse(z)
    (eps,) = record.draws
    assert torch.equal(x[:, :2], z)
    torch.testing.assert_close(x[:, 2:], mean + log_scale.exp() * 0.5 * eps)
    torch.testing.assert_close(log_det, -normal_log_prob(x[:, 2:], mean, log_scale).sum(dim=(1, 2, 3)))
    with noise.use(None, temperature=0.0):
        torch.testing.assert_close(layer.inverse(z)[0][:, 2:], mean)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="keep between 1 and 3 of 4 channels"):
        Split(4, num_channels=4)
    with pytest.raises(ValueError, match=r"Split expects input of shape \(batch, 4, ...\)"):
        Split(2)(torch.randn(2, 6, 2, 2))
    with pytest.raises(ValueError, match=r"conditioner must give mean and log-scale of shape \(2, 2, 4, 4\)"):
        Split(2, PriorNet(2, 1))(torch.randn(2, 4, 4, 4))
