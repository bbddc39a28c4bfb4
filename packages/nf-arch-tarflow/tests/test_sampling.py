"""Sampling: the preallocated KV cache against the naive sampler, guidance, temperature, generators."""

from __future__ import annotations

import pytest
import torch

from nfkit_core import noise
from nfkit_core.attention import sdpa_attention
from nfkit_core.specs import AttentionBackend
from nfkit_tarflow import Guidance
from nfkit_tarflow.transformer import KVCache, LayerKVCache

SETTINGS = [
    dict(),
    dict(guidance=1.5, attn_temp=0.8),
    dict(guidance=2.0, guide_what="a", annealed_guidance=True, attn_temp=1.2),
    dict(guidance=0.7, guide_what="b"),
]


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("nvp", [True, False])
def test_kv_cache_sampler_equals_naive_sampler(make_flow, num_classes, nvp):
    flow = make_flow(nvp=nvp, num_classes=num_classes)
    labels = torch.tensor([0, 2, -1, 1]) if num_classes else None
    for setting in SETTINGS:
        cached = flow.sample(4, labels, generator=torch.Generator().manual_seed(3), kv_cache=True, **setting)
        naive = flow.sample(4, labels, generator=torch.Generator().manual_seed(3), kv_cache=False, **setting)
        torch.testing.assert_close(cached, naive, rtol=0, atol=1e-5, msg=str(setting))


def test_guidance_changes_samples_and_zero_weight_is_plain(conditional_flow):
    labels = torch.tensor([0, 1, 2])
    draw = lambda **kw: conditional_flow.sample(3, labels, generator=torch.Generator().manual_seed(0), **kw)
    plain = draw()
    assert torch.equal(draw(guidance=0.0, attn_temp=0.5), plain)
    assert torch.equal(draw(guidance=1.0, guide_what=""), plain)
    assert (draw(guidance=1.0) - plain).abs().max() > 1e-3
    assert not torch.allclose(draw(guidance=1.0, guide_what="a"), draw(guidance=1.0, guide_what="b"))


def test_guided_step_batches_both_passes_into_one_forward(conditional_flow):
    block = conditional_flow.blocks[0]
    batches = []

    def counting(q, k, v, causal=False, scale=None):
        batches.append(q.shape[0])
        return sdpa_attention(q, k, v, causal=causal, scale=scale)

    for layer in block.attn_blocks:
        layer.attention.set_backend(AttentionBackend("counting", counting))
    with torch.no_grad():
        block.inverse(torch.randn(3, block.num_tokens, block.token_dim), torch.tensor([0, 1, 2]), guidance=1.0)
    assert batches == [6] * len(block.attn_blocks) * (block.num_tokens - 1)


def test_guidance_formula_and_annealing():
    a_c, b_c, a_u, b_u = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(0.5), torch.tensor(3.0)
    a, b = Guidance(2.0).combine((a_c, b_c), (a_u, b_u), step=0, num_tokens=5)
    assert (a.item(), b.item()) == (2.0, 0.0)
    a, b = Guidance(2.0, guide_what="a", annealed=True).combine((a_c, b_c), (a_u, b_u), step=1, num_tokens=5)
    assert (a.item(), b.item()) == (1.5, 2.0)
    with pytest.raises(ValueError, match="guide_what"):
        Guidance(1.0, guide_what="c")
    with pytest.raises(ValueError, match="attn_temp"):
        Guidance(1.0, attn_temp=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        Guidance(-1.0)


def test_kv_cache_is_allocated_once_and_written_in_place():
    cache = LayerKVCache(max_tokens=4)
    pointers = []
    for position in range(4):
        k, v = torch.full((2, 1, 1, 3), float(position)), torch.full((2, 1, 1, 3), -float(position))
        keys, values = cache.write(position, k, v)
        pointers.append(cache.keys.data_ptr())
        assert keys.shape == (2, 1, position + 1, 3)
        assert keys.data_ptr() == cache.keys.data_ptr()
        assert torch.equal(values[0, 0, :, 0], -torch.arange(position + 1.0))
    assert len(set(pointers)) == 1 and cache.keys.shape == (2, 1, 4, 3)
    with pytest.raises(ValueError, match="holds 4 tokens"):
        cache.write(4, k, v)
    assert len(KVCache(num_layers=3, max_tokens=4).layers) == 3


def test_generator_temperature_and_noise_replay(small_flow):
    first = small_flow.sample(2, generator=torch.Generator().manual_seed(5))
    again = small_flow.sample(2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert first.shape == (2, 2, 8, 8)
    z = torch.randn(2, 16, 8)
    with noise.use(noise.Replay([z])):
        replayed = small_flow.sample(2, temperature=0.5)
    torch.testing.assert_close(replayed, small_flow.latent_to_data(0.5 * z), rtol=0, atol=1e-6)
    zero = small_flow.sample(2, temperature=0.0)
    torch.testing.assert_close(zero[0], zero[1])


def test_sample_round_trips_through_the_forward(conditional_flow):
    labels = torch.tensor([2, 0])
    with noise.use(noise.Record()) as record:
        x = conditional_flow.sample(2, labels)
    torch.testing.assert_close(conditional_flow.transform_to_latent(x, labels), record.draws[0], rtol=0, atol=1e-4)
