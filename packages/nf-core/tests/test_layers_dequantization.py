"""Uniform and variational dequantization: input checks, log-det, quantizing inverse, survae-compatible noise."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nfkit_core import Sequential, noise
from nfkit_core.layers import (
    AffineCoupling,
    ElementwiseAffine,
    InvertibleConv1x1,
    Squeeze,
    UniformDequantization,
    Unsqueeze,
    VariationalDequantization,
)
from nfkit_core.testing import check_transform

NUM_BINS = 17


def levels(shape=(3, 2, 4, 4), seed=0) -> torch.Tensor:
    return torch.randint(0, NUM_BINS, shape, generator=torch.Generator().manual_seed(seed)).float()


def encoder(channels: int = 2, context_channels: int = 2) -> Sequential:
    """eps -> ElementwiseAffine (a learned diagonal base, as survae's ConvNormal2d) -> conv -> coupling, whose
    conditioner sees the identity half of the noise joined with the features computed from x."""
    half = channels // 2
    conditioner = nn.Sequential(nn.Conv2d(half + context_channels, 8, 3, padding=1), nn.Tanh(),
                                nn.Conv2d(8, 2 * (channels - half), 3, padding=1))
    return Sequential(ElementwiseAffine((channels, 1, 1)), InvertibleConv1x1(channels),
                      AffineCoupling(conditioner, log_scale="tanh"))


def squeezed_dequantizer() -> VariationalDequantization:
    """As DenseFlow/survae's DequantizationFlow: noise at half resolution, unsqueezed, context from a network."""
    context_net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 2, stride=2))
    flow = Sequential(encoder(8, 3), Unsqueeze())
    return VariationalDequantization(flow, NUM_BINS, -1.0, 1.0, context_net=context_net, noise_shape=(8, 2, 2))


def test_uniform_conformance():
    check_transform(lambda: UniformDequantization(NUM_BINS), levels())
    check_transform(lambda: UniformDequantization(256, -1.0, 1.0), torch.randint(0, 256, (3, 5)).float())


def test_variational_conformance():
    check_transform(lambda: VariationalDequantization(encoder(), NUM_BINS), levels())
    check_transform(squeezed_dequantizer, levels())


def test_uniform_log_det_is_exactly_the_change_of_units():
    x = levels()
    y, log_det = UniformDequantization(NUM_BINS, -1.0, 1.0)(x)
    assert torch.equal(log_det, torch.full((3,), 32 * math.log(2.0 / NUM_BINS)))
    bin_low = -1.0 + x * 2.0 / NUM_BINS
    assert bool(((y >= bin_low) & (y <= bin_low + 2.0 / NUM_BINS)).all())


def test_uniform_noise_comes_from_nf_core_noise():
    x = levels()
    record = noise.Record()
    with noise.use(record):
        y, _ = UniformDequantization(NUM_BINS)(x)
    (u,) = record.draws
    torch.testing.assert_close(y, (x + u) / NUM_BINS)


def test_variational_log_q_matches_the_jacobian_of_the_encoder():
    """log q(u | x) = log N(eps) - log |det du/deps| by brute force, for the replayed eps."""
    torch.manual_seed(0)
    layer = squeezed_dequantizer().double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x = levels((2, 2, 4, 4)).double()
    record = noise.Record()
    with noise.use(record):
        y, log_det = layer(x)
    (eps,) = record.draws
    assert eps.shape == (2, 8, 2, 2)
    for i in range(2):
        features = layer.context_net(x[i:i + 1])

        def u_of(flat_eps, features=features):
            return torch.sigmoid(layer.encoder(flat_eps.view(1, 8, 2, 2), features=features)[0]).reshape(-1)

        jacobian = torch.autograd.functional.jacobian(u_of, eps[i].reshape(-1))
        log_q = torch.distributions.Normal(0.0, 1.0).log_prob(eps[i]).sum() - torch.linalg.slogdet(jacobian).logabsdet
        u = u_of(eps[i].reshape(-1)).view(2, 4, 4)
        torch.testing.assert_close(y[i], -1.0 + (x[i] + u) * 2.0 / NUM_BINS)
        torch.testing.assert_close(log_det[i], 32 * math.log(2.0 / NUM_BINS) - log_q)


def test_variational_matches_survae_formula_and_draw_order():
    """survae: z = (x + u) / K, ldj = -D log K - log q(u | x); one randn draw, taken after the context net ran."""
    draws_seen_by_context_net = []
    record = noise.Record()

    class ContextNet(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            draws_seen_by_context_net.append(len(record.draws))
            return x / NUM_BINS

    layer = VariationalDequantization(encoder(), NUM_BINS, context_net=ContextNet())
    x = levels()
    with noise.use(record):
        y, log_det = layer(x)
    (eps,) = record.draws
    assert draws_seen_by_context_net == [0] and eps.shape == x.shape
    with noise.use(noise.Replay(record.draws)):
        u, log_q = layer.sample_with_log_prob(x)
    torch.testing.assert_close(y, (x + u) / NUM_BINS)
    torch.testing.assert_close(log_det, -32 * math.log(NUM_BINS) - log_q)


@pytest.mark.parametrize("make", [lambda: UniformDequantization(NUM_BINS), lambda: VariationalDequantization(
    encoder(), NUM_BINS)])
def test_bad_levels_are_errors(make):
    layer, x = make(), torch.zeros(2, 2, 4, 4)
    x[1, 0, 2, 3] = 0.5
    with pytest.raises(ValueError, match=r"integer levels in \[0, 17\), got non-integer values such as \[0.5\]"):
        layer(x)
    with pytest.raises(ValueError, match=r"integer levels in \[0, 17\), got values in \[0.0, 17.0\]"):
        layer(torch.cat([torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 17.0)]))
    with pytest.raises(ValueError, match="got values in \\[-1"):
        layer(torch.full((2, 2, 4, 4), -1, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer(torch.full((2, 2, 4, 4), float("nan")))


def test_integer_input_and_quantizing_inverse():
    x = levels().long()
    layer = UniformDequantization(NUM_BINS, -1.0, 1.0)
    y, _ = layer(x)
    assert y.dtype == torch.get_default_dtype()
    back, log_det = layer.inverse(y)
    assert torch.equal(back, x.float())
    torch.testing.assert_close(log_det, torch.full((3,), -32 * math.log(2.0 / NUM_BINS)))
    edges = layer.inverse(torch.tensor([[-5.0, -1.0, 1.0, 5.0]]))[0]
    assert edges.tolist() == [[0.0, 0.0, NUM_BINS - 1, NUM_BINS - 1]]


def test_encoder_with_the_wrong_output_shape_is_an_error():
    layer = VariationalDequantization(Squeeze(), NUM_BINS)
    with pytest.raises(ValueError, match=r"encoder must return the shape of x, \(3, 2, 4, 4\), got \(3, 8, 2, 2\)"):
        layer(levels())


def test_a_context_net_needs_an_encoder_that_takes_its_features():
    with pytest.raises(ValueError, match=r"encoder \(Squeeze\) ignores the features that context_net computes: give "
                                         r"it a layer that names 'features' in its internal_inputs"):
        VariationalDequantization(Squeeze(), NUM_BINS, context_net=nn.Identity())
