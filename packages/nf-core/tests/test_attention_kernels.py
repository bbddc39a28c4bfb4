"""Every attention backend that can run here agrees with the plain reference attention, including the cached
decoding step where fewer queries than keys must see every key up to their own position (the causal mask aligned to
the bottom right, not the top left)."""

from __future__ import annotations

import pytest
import torch

from nfkit_core.attention import attend, reference_attention, resolve_backend
from nfkit_core.errors import ConfigError

BACKENDS = ["sdpa", "flash", "flash3", "reference", "auto"]
PLACES = [("cpu", torch.float32), ("cuda", torch.bfloat16), ("cuda", torch.float16)]
# (queries, keys): a full causal pass, a one-token decoding step, and a block of queries at the end of the keys (the
# Jacobi sampler's cached iterations).
SHAPES = [(16, 16), (1, 16), (5, 16)]


def inputs(device: str, dtype: torch.dtype, queries: int, keys: int):
    generator = torch.Generator().manual_seed(queries * 100 + keys)
    q, k, v = (torch.randn(2, 3, tokens, 64, generator=generator) for tokens in (queries, keys, keys))
    return [t.to(device=device, dtype=dtype) for t in (q, k, v)]


@pytest.mark.parametrize("queries, keys", SHAPES)
@pytest.mark.parametrize("device, dtype", PLACES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_reference(backend, device, dtype, queries, keys):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    q, k, v = inputs(device, dtype, queries, keys)
    try:
        resolved = resolve_backend(backend)
    except ConfigError:
        pytest.skip(f"attention backend {backend!r} is not installed")
    if not resolved.is_available(q):
        pytest.skip(f"attention backend {backend!r} cannot run on {device} {dtype} tensors")
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    for causal in (True, False):
        expected = reference_attention(*(t.double() for t in (q, k, v)), causal=causal, scale=0.1)
        out = attend(q, k, v, causal=causal, scale=0.1, backend=resolved)
        assert out.shape == q.shape and out.dtype == q.dtype
        torch.testing.assert_close(out.double(), expected, rtol=0, atol=tolerance, msg=f"causal={causal}")


def test_cached_step_sees_every_earlier_key():
    """The last query of a short block attends over all keys; a top-left aligned mask would hide the last ones."""
    q, k, v = inputs("cpu", torch.float32, 1, 8)
    v = torch.zeros_like(v)
    v[..., -1, :] = 1.0
    out = attend(q, k, v, causal=True, backend=resolve_backend("sdpa"))
    assert (out > 0).all()
