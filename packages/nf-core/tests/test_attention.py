"""Attention backends: the built-ins agree (a cached decoding step included), names are resolved once, up front."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from nfkit_core import attention
from nfkit_core.attention import attend, backends_in_scope, reference_attention, resolve_backend, sdpa_attention
from nfkit_core.errors import ConfigError, UnknownNameError
from nfkit_core.specs import AttentionBackend


@pytest.mark.parametrize("queries", [7, 3, 1])
def test_sdpa_and_reference_agree_causally_also_when_queries_are_the_last_positions(queries):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=generator) for n in (queries, 7, 7))
    expected = reference_attention(q, k, v, causal=True)
    torch.testing.assert_close(sdpa_attention(q, k, v, causal=True), expected, rtol=0, atol=1e-6)
    # the last query sees every key: a cached decoding step of one token attends over the whole prefix
    torch.testing.assert_close(expected[:, :, -1], reference_attention(q[:, :, -1:], k, v)[:, :, 0], rtol=0,
                               atol=1e-6)
    for name in ("auto", "sdpa", "reference"):
        torch.testing.assert_close(attend(q, k, v, causal=True, backend=resolve_backend(name)), expected, rtol=0,
                                   atol=1e-6)


def test_auto_is_sdpa_on_cpu_tensors():
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=generator) for _ in range(3))
    auto = resolve_backend("auto")
    assert auto.name == "auto" and auto.is_available(q)
    torch.testing.assert_close(auto.attend(q, k, v, causal=True), sdpa_attention(q, k, v, causal=True), rtol=0,
                               atol=0)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed")
def test_flash_without_flash_attn_is_refused_when_resolved():
    with pytest.raises(ConfigError, match="attention backend 'flash' is not installed here"):
        resolve_backend("flash")


def test_an_explicit_backend_that_cannot_run_on_the_tensors_says_so():
    only_cuda = AttentionBackend("cuda-only", sdpa_attention, lambda q: q.is_cuda)
    q = torch.zeros(1, 1, 2, 4)
    with pytest.raises(RuntimeError, match="attention backend 'cuda-only' cannot run on cpu tensors"):
        attend(q, q, q, backend=resolve_backend(only_cuda))


def test_names_in_scope_are_found_and_forgotten_after_the_scope():
    mine = AttentionBackend("mine", reference_attention)
    with backends_in_scope({"mine": mine}):
        assert resolve_backend("mine") is mine
        with backends_in_scope({"other": mine}):
            assert resolve_backend("mine") is mine and resolve_backend("other") is mine
    with pytest.raises(UnknownNameError,
                       match="unknown attention backend 'mine'; available: auto, flash, flash3, reference"):
        resolve_backend("mine")


def test_library_lookups_happen_when_resolving_not_when_attending(monkeypatch):
    attention._flash_installed.cache_clear()
    lookups = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: lookups.append(name))
    backend = resolve_backend("auto")
    q = torch.zeros(1, 1, 3, 4)
    for _ in range(5):
        attend(q, q, q, causal=True, backend=backend)
    assert lookups == ["flash_attn"]
    attention._flash_installed.cache_clear()
