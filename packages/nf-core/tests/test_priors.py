"""Priors against torch.distributions; sampling shapes, temperature, errors."""

from __future__ import annotations

import pytest
import torch

from nfkit_core import ClassConditionalGaussian, DiagonalGaussian, StandardNormal, noise
from nfkit_core.priors import normal_log_prob


def test_normal_log_prob_matches_torch_distributions():
    z, mean, log_scale = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(z)
    torch.testing.assert_close(normal_log_prob(z, mean, log_scale), expected)
    torch.testing.assert_close(normal_log_prob(z), torch.distributions.Normal(0.0, 1.0).log_prob(z))


def test_standard_normal():
    prior = StandardNormal((2, 3))
    z = torch.randn(4, 2, 3)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2))
    torch.testing.assert_close(prior.log_prob(z), expected)
    assert prior.sample(5).shape == (5, 2, 3)


def test_diagonal_gaussian():
    prior = DiagonalGaussian((3,))
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        prior.log_scale.copy_(torch.tensor([0.0, 0.5, -1.0]))
    z = torch.randn(6, 3)
    expected = torch.distributions.Independent(torch.distributions.Normal(prior.mean, prior.log_scale.exp()), 1)
    torch.testing.assert_close(prior.log_prob(z), expected.log_prob(z).detach())
    samples = prior.sample(20000)
    torch.testing.assert_close(samples.mean(0), prior.mean.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(samples.std(0), prior.log_scale.exp().detach(), atol=0.05, rtol=0)


def test_class_conditional_gaussian():
    prior = ClassConditionalGaussian((2,), num_classes=3)
    with torch.no_grad():
        prior.mean.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5]]))
        prior.log_scale.weight.copy_(torch.tensor([[0.0, 0.0], [0.5, -0.5], [0.1, 0.2]]))
    labels = torch.tensor([2, 0, 1, 2])
    z = torch.randn(4, 2)
    mean, scale = prior.mean.weight[labels], prior.log_scale.weight[labels].exp()
    expected = torch.distributions.Normal(mean, scale).log_prob(z).sum(1)
    torch.testing.assert_close(prior.log_prob(z, labels), expected.detach())
    with noise.use(noise.Record()) as record:
        samples = prior.sample(4, labels)
    torch.testing.assert_close(samples, (mean + scale * record.draws[0]).detach())


def test_temperature_scales_the_draws():
    prior = DiagonalGaussian((2,))
    with torch.no_grad():
        prior.mean.fill_(3.0)
    with noise.use(torch.Generator().manual_seed(0), temperature=0.5):
        cold = prior.sample(4)
    with noise.use(torch.Generator().manual_seed(0)):
        hot = prior.sample(4)
    torch.testing.assert_close(cold - 3.0, 0.5 * (hot - 3.0))
    with noise.use(None, temperature=0.0):
        assert torch.equal(prior.sample(3), torch.full((3, 2), 3.0))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"StandardNormal expects latents of shape \(batch, 2, 3\), got \(4, 6\)"):
        StandardNormal((2, 3)).log_prob(torch.randn(4, 6))
    prior = ClassConditionalGaussian((2,), num_classes=3)
    with pytest.raises(ValueError, match="ClassConditionalGaussian is class-conditional: pass class labels"):
        prior.log_prob(torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\), got values from 0 to 3"):
        prior.log_prob(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"expects class labels of shape \(2,\), got \(3,\)"):
        prior.sample(2, torch.tensor([0, 1, 2]))
