"""Eq. 16 of "Distilling Normalizing Flows": the interpolant has the interpolated norm exactly, and ends at the two
latents; decoding at a = 0 reconstructs the first image of a bijective flow."""

from __future__ import annotations

import torch

from nfkit_core.plugins import DataInfo
from nfkit_core.testing.tiny import TinyConfig, build_tiny
from nfkit_eval.interpolation import interpolate_pairs, norm_preserving_interpolation


def test_the_interpolant_has_the_interpolated_norm_exactly():
    generator = torch.Generator().manual_seed(0)
    z_u = torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    z_v = 2 * torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    a = torch.rand(5, generator=generator, dtype=torch.float64)
    result = norm_preserving_interpolation(z_u, z_v, a)
    norms = torch.linalg.vector_norm(result.flatten(1), dim=1)
    expected = (1 - a) * torch.linalg.vector_norm(z_u.flatten(1), dim=1) + a * torch.linalg.vector_norm(
        z_v.flatten(1), dim=1)
    torch.testing.assert_close(norms, expected, rtol=1e-12, atol=0)
    # the direction is the straight line's
    line = ((1 - a).view(-1, 1, 1, 1) * z_u + a.view(-1, 1, 1, 1) * z_v).flatten(1)
    cosine = torch.nn.functional.cosine_similarity(result.flatten(1), line, dim=1)
    torch.testing.assert_close(cosine, torch.ones(5, dtype=torch.float64))
    # and it keeps the norm that the straight line loses halfway between independent Gaussian latents
    big_u, big_v = torch.randn(2, 1000, generator=generator, dtype=torch.float64)
    middle = norm_preserving_interpolation(big_u[None], big_v[None], 0.5)
    assert torch.linalg.vector_norm(middle) / torch.linalg.vector_norm((big_u + big_v) / 2) > 1.3


def test_the_ends_are_the_two_latents():
    z_u, z_v = torch.randn(2, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(norm_preserving_interpolation(z_u, z_v, 0.0), z_u)
    torch.testing.assert_close(norm_preserving_interpolation(z_u, z_v, 1.0), z_v)


def test_decoding_a_equal_zero_gives_back_the_first_image_of_a_bijective_flow():
    torch.manual_seed(0)
    flow = build_tiny(TinyConfig(hidden=8), DataInfo(shape=(1, 8, 8))).eval()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x_u, x_v = torch.rand(2, 3, 1, 8, 8) * 2 - 1
    decoded = interpolate_pairs(flow, x_u, x_v, torch.zeros(3))
    torch.testing.assert_close(decoded, x_u, atol=1e-5, rtol=0)
    decoded_end = interpolate_pairs(flow, x_u, x_v, torch.ones(3))
    torch.testing.assert_close(decoded_end, x_v, atol=1e-5, rtol=0)


def test_the_prior_standardization_reads_mean_and_scale_off_any_gaussian_prior():
    from nfkit_core.priors import ClassConditionalGaussian
    from nfkit_eval.interpolation import prior_standardize

    torch.manual_seed(0)
    prior = ClassConditionalGaussian((2, 3), num_classes=4)
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.copy_(torch.randn_like(parameter))
    labels = torch.tensor([0, 3, 1])
    z = torch.randn(3, 2, 3)
    eps, mean, scale = prior_standardize(prior, z, labels)
    expected_mean, log_scale = prior.mean_and_log_scale(labels, 3)
    torch.testing.assert_close(mean, expected_mean.expand_as(z))
    torch.testing.assert_close(scale, log_scale.exp().expand_as(z))
    torch.testing.assert_close(mean + scale * eps, z)
