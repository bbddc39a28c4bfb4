"""The Jacobi sampler: a block's triangular system solved for all tokens at once, against sequential decoding."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("nvp", [True, False])
@pytest.mark.parametrize("kv_cache", [True, False])
def test_tolerance_zero_is_sequential_sampling(draw, guidance_settings, make_flow, num_classes, nvp, kv_cache):
    """With tolerance 0 every token is computed from its final prefix: the sequential answer, to float rounding
    (the same bar as the cached against the naive sequential sampler), in at most T - 1 iterations."""
    flow = make_flow(nvp=nvp, num_classes=num_classes)
    labels = torch.tensor([0, 2, -1, 1]) if num_classes else None
    num_tokens = flow.blocks[0].num_tokens
    for setting in guidance_settings:
        sequential = draw(flow, labels, sampler="sequential", **setting)
        assert flow.last_iterations == [0, 0]
        jacobi = draw(flow, labels, sampler="jacobi", tolerance=0.0, kv_cache=kv_cache, **setting)
        assert all(1 <= iterations <= num_tokens - 1 for iterations in flow.last_iterations)
        torch.testing.assert_close(jacobi, sequential, rtol=0, atol=1e-5, msg=str(setting))


@pytest.mark.parametrize("tolerance", [1e-2, 1e-3, 1e-5])
def test_tolerance_bounds_the_deviation_and_saves_iterations(draw, guidance_settings, conditional_flow, tolerance):
    labels = torch.tensor([0, 2, -1, 1])
    for setting in guidance_settings:
        sequential = draw(conditional_flow, labels, sampler="sequential", **setting)
        jacobi = draw(conditional_flow, labels, sampler="jacobi", tolerance=tolerance, **setting)
        assert (jacobi - sequential).abs().max() <= tolerance
        assert max(conditional_flow.last_iterations) < conditional_flow.blocks[0].num_tokens - 1


def test_looser_tolerance_takes_fewer_iterations(draw, conditional_flow):
    labels = torch.tensor([0, 2, -1, 1])
    iterations = []
    for tolerance in (0.0, 1e-5, 1e-2):
        draw(conditional_flow, labels, sampler="jacobi", tolerance=tolerance)
        iterations.append(sum(conditional_flow.last_iterations))
    assert iterations[0] > iterations[1] > iterations[2]


@pytest.mark.parametrize("kv_cache", [True, False])
def test_unconverged_tokens_are_finished_sequentially(draw, conditional_flow, kv_cache):
    """After ``max_iterations`` the tokens that still move are decoded token by token: the answer stays exact."""
    labels = torch.tensor([0, 2, -1, 1])
    sequential = draw(conditional_flow, labels, sampler="sequential", guidance=1.0)
    for max_iterations in (0, 1, 3):
        jacobi = draw(conditional_flow, labels, sampler="jacobi", tolerance=0.0, max_iterations=max_iterations,
                      kv_cache=kv_cache, guidance=1.0)
        assert conditional_flow.last_iterations == [max_iterations] * 2
        torch.testing.assert_close(jacobi, sequential, rtol=0, atol=1e-5)


def test_block_inverse_log_det_matches_forward(conditional_flow):
    block = conditional_flow.blocks[0]
    z = torch.randn(3, block.num_tokens, block.token_dim)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        x, log_det = block.inverse(z, labels, sampler="jacobi", tolerance=0.0)
        z_again, forward_log_det = block(x, labels)
    torch.testing.assert_close(z_again, z, rtol=0, atol=1e-5)
    torch.testing.assert_close(log_det, -forward_log_det, rtol=0, atol=1e-5)


def test_jacobi_is_differentiable_without_the_cache(small_flow):
    block = small_flow.blocks[0]
    z = torch.randn(2, block.num_tokens, block.token_dim, requires_grad=True)
    x, log_det = block.inverse(z, sampler="jacobi", tolerance=1e-4)
    (x.square().sum() + log_det.sum()).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bad_sampler_options_are_clear_errors(small_flow):
    block = small_flow.blocks[0]
    z = torch.randn(1, block.num_tokens, block.token_dim)
    with pytest.raises(ValueError, match="sampler must be one of 'sequential', 'jacobi', 'compiled', got 'gauss'"):
        block.inverse(z, sampler="gauss")
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        block.inverse(z, sampler="jacobi", tolerance=-1.0)
    with pytest.raises(ValueError, match="max_iterations must be >= 0"):
        block.inverse(z, sampler="jacobi", max_iterations=-1)
