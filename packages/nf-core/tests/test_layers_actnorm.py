"""ActNorm: conformance on vectors, sequences and images; data-dependent initialisation; state dict."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.layers import ActNorm
from nfkit_core.testing import check_transform


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (3, 4, 4, 4)])
def test_conformance(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3 + 1
    check_transform(lambda: ActNorm(shape[1]), x)


def test_conformance_passes_context_through():
    x = torch.randn(3, 4, 2, 2)
    check_transform(lambda: ActNorm(4), x, context=torch.tensor([0, 1, 2]), uses_context=False)


@pytest.mark.parametrize("shape", [(64, 3), (8, 3, 5, 5)])
def test_initialisation_normalises_the_first_batch(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * torch.tensor([0.5, 2.0, 7.0]).view(
        1, 3, *([1] * (len(shape) - 2))) + 4.0
    layer = ActNorm(3)
    z, log_det = layer(x)
    dims = [d for d in range(z.dim()) if d != 1]
    torch.testing.assert_close(z.mean(dims), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dims, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    positions = x[0, 0].numel()
    expected = -torch.log(x.std(dims, unbiased=False)).sum() * positions
    torch.testing.assert_close(log_det, expected.expand(shape[0]), atol=1e-4, rtol=1e-5)
    assert bool(layer.initialized)


def test_no_initialisation_in_eval_mode_or_after_the_first_batch():
    layer = ActNorm(2).eval()
    x = torch.randn(5, 2) * 10
    z, log_det = layer(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(5))
    layer.train()
    layer(x)
    shift = layer.shift.detach().clone()
    layer(x * 3 + 1)
    assert torch.equal(layer.shift.detach(), shift)


def test_loaded_state_is_not_initialised_again():
    trained = ActNorm(2)
    trained(torch.randn(10, 2) * 5)
    loaded = ActNorm(2)
    loaded.load_state_dict(trained.state_dict())
    loaded(torch.randn(10, 2))
    assert torch.equal(loaded.log_scale, trained.log_scale)


def test_wrong_channel_count_is_an_error():
    with pytest.raises(ValueError, match=r"ActNorm expects input of shape \(batch, 3, ...\), got \(2, 4\)"):
        ActNorm(3)(torch.randn(2, 4))
