"""Element-wise affine, logit and sigmoid."""

from __future__ import annotations

import math

import pytest
import torch

from nfkit_core.layers import ElementwiseAffine, Logit, Sigmoid
from nfkit_core.testing import check_transform


@pytest.mark.parametrize("shape, param_shape", [((3, 5), (5,)), ((3, 2, 3, 3), (2, 1, 1)), ((3, 2, 3, 3), (2, 3, 3))])
def test_elementwise_affine_conformance(shape, param_shape):
    check_transform(lambda: ElementwiseAffine(param_shape), torch.randn(shape))


def test_elementwise_affine_log_det_counts_broadcast_positions():
    layer = ElementwiseAffine((2, 1, 1))
    with torch.no_grad():
        layer.log_scale.copy_(torch.tensor([0.5, -1.0]).view(2, 1, 1))
        layer.shift.fill_(3.0)
    x = torch.randn(4, 2, 3, 5)
    z, log_det = layer(x)
    torch.testing.assert_close(z, x * torch.tensor([math.exp(0.5), math.exp(-1.0)]).view(1, 2, 1, 1) + 3.0)
    torch.testing.assert_close(log_det, torch.full((4,), 15 * (0.5 - 1.0)))
    with pytest.raises(ValueError, match="expects input"):
        layer(torch.randn(4, 2))


@pytest.mark.parametrize("shape", [(3, 6), (3, 2, 3, 3)])
def test_sigmoid_and_logit_conformance(shape):
    check_transform(Sigmoid, torch.randn(shape) * 2)
    check_transform(lambda: Logit(alpha=0.05), torch.rand(shape))
    check_transform(lambda: Logit(alpha=0.0), torch.rand(shape) * 0.9 + 0.05)


def test_logit_matches_the_real_nvp_formula():
    x = torch.rand(4, 3)
    z, log_det = Logit(alpha=0.05)(x)
    s = 0.05 + 0.9 * x
    torch.testing.assert_close(z, torch.log(s / (1 - s)))
    torch.testing.assert_close(log_det, (math.log(0.9) - torch.log(s) - torch.log(1 - s)).sum(dim=1))


def test_sigmoid_inverts_logit_without_alpha():
    z = torch.randn(3, 4)
    x, log_det = Sigmoid()(z)
    z_back, logit_log_det = Logit(alpha=0.0)(x)
    torch.testing.assert_close(z_back, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logit_log_det, -log_det, atol=1e-4, rtol=1e-5)


def test_logit_rejects_data_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"Logit expects data in \[0, 1\], got values in \[-0.5, 1.0\]"):
        Logit()(torch.tensor([[-0.5, 1.0]]))
    with pytest.raises(ValueError, match="alpha"):
        Logit(alpha=0.5)
