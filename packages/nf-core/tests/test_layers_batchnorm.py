"""The batch-norm bijector: batch statistics in training, running averages in eval."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.layers import BatchNorm
from nfkit_core.testing import check_transform


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 3, 3)])
def test_conformance(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 2 + 1
    check_transform(lambda: BatchNorm(shape[1]), x, batch_statistics=True)


def test_training_uses_batch_statistics_and_updates_running_averages():
    x = torch.randn(50, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([1.0, -2.0, 3.0])
    layer = BatchNorm(3, momentum=0.25, eps=1e-5)
    z, log_det = layer(x)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    torch.testing.assert_close(z, (x - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(log_det, (-0.5 * torch.log(var + 1e-5)).sum().expand(50))
    torch.testing.assert_close(layer.running_mean, 0.25 * mean)
    torch.testing.assert_close(layer.running_var, 0.75 + 0.25 * var)


def test_eval_uses_running_averages_and_inverse_inverts_eval():
    layer = BatchNorm(2)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([1.0, -1.0]))
        layer.running_var.copy_(torch.tensor([4.0, 0.25]))
        layer.log_gamma.copy_(torch.tensor([0.3, -0.2]))
        layer.beta.copy_(torch.tensor([0.5, 0.0]))
    layer.eval()
    x = torch.randn(5, 2, 3)
    z, log_det = layer(x)
    std = torch.sqrt(torch.tensor([4.0, 0.25]) + layer.eps)
    expected = (x - torch.tensor([1.0, -1.0]).view(1, 2, 1)) / std.view(1, 2, 1) * torch.tensor(
        [0.3, -0.2]).exp().view(1, 2, 1) + torch.tensor([0.5, 0.0]).view(1, 2, 1)
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(log_det, (3 * (torch.tensor([0.3, -0.2]) - torch.log(std))).sum().expand(5))
    layer.train()
    x_back, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_log_det, -log_det)


def test_set_statistics_takes_the_statistics_of_a_data_set():
    x = torch.randn(100, 3, 2) * 3 + 1
    layer = BatchNorm(3)
    layer.set_statistics(x)
    torch.testing.assert_close(layer.running_mean, x.mean(dim=(0, 2)))
    torch.testing.assert_close(layer.running_var, x.var(dim=(0, 2), unbiased=False))
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer.train()(x)[0], atol=1e-5, rtol=1e-5)
