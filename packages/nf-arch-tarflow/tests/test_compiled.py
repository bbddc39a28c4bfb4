"""The compiled sampler: sequential decoding through a torch.compile'd step over a static KV cache."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from nfkit_tarflow.transformer import StaticLayerKVCache


@pytest.fixture
def fresh_compiler():
    """Dynamo's caches and counters emptied, so that a test sees its own compilations."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("nvp, num_classes", [(True, 3), (False, 0)])
def test_compiled_sampler_is_sequential_sampling(draw, guidance_settings, make_flow, fresh_compiler, nvp, num_classes):
    """The compiled step computes the sequential step: equal samples to float rounding; one graph per guidance mode,
    shared by both blocks (flipped and not) and reused at every position, weight and temperature."""
    flow = make_flow(nvp=nvp, num_classes=num_classes, seed=1)
    labels = torch.tensor([0, 2, -1, 1]) if num_classes else None
    for setting in guidance_settings:
        sequential = draw(flow, labels, sampler="sequential", **setting)
        compiled = draw(flow, labels, sampler="compiled", **setting)
        torch.testing.assert_close(compiled, sequential, rtol=0, atol=1e-5, msg=str(setting))
        assert flow.last_iterations == [0, 0]
    again = draw(flow, labels, sampler="compiled", guidance=3.0, attn_temp=0.5)
    torch.testing.assert_close(again, draw(flow, labels, guidance=3.0, attn_temp=0.5), rtol=0, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == len(guidance_settings)
    assert not counters["graph_break"]


def test_compiled_sampler_under_bf16_autocast(draw, conditional_flow, fresh_compiler):
    """Under bf16 autocast the cache takes autocast's dtype; the samples stay as close to the fp32 ones as eager bf16
    decoding does (bf16 rounds differently in a fused graph, so the two bf16 runs are not equal)."""
    labels = torch.tensor([0, 2, -1, 1])
    reference = draw(conditional_flow, labels, guidance=1.5)
    with torch.autocast("cpu", torch.bfloat16):
        eager = draw(conditional_flow, labels, guidance=1.5)
        compiled = draw(conditional_flow, labels, sampler="compiled", guidance=1.5)
    assert compiled.dtype == torch.float32
    assert 0 < (eager - reference).abs().max() < 0.05
    assert 0 < (compiled - reference).abs().max() < 0.05


def test_static_cache_masks_the_tokens_after_the_position():
    """Attending at position p over the full-length cache equals attending over the first p + 1 tokens."""
    torch.manual_seed(0)
    cache = StaticLayerKVCache(5, (2, 3, 4), torch.float32, torch.device("cpu"))
    keys, values, queries = torch.randn(3, 2, 3, 5, 4).unbind(0)
    for p in range(5):
        out = cache.attend_step(torch.tensor([p]), queries[:, :, p:p + 1], keys[:, :, p:p + 1], values[:, :, p:p + 1],
                                backend=None)
        expected = torch.nn.functional.scaled_dot_product_attention(
            queries[:, :, p:p + 1], keys[:, :, :p + 1], values[:, :, :p + 1])
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_compiled_sampler_needs_no_grad_and_the_cache(small_flow):
    block = small_flow.blocks[0]
    z = torch.randn(2, block.num_tokens, block.token_dim)
    with pytest.raises(ValueError, match="sample under torch.no_grad"):
        block.inverse(z, sampler="compiled")
    with torch.no_grad(), pytest.raises(ValueError, match="leave kv_cache on"):
        block.inverse(z, sampler="compiled", kv_cache=False)
