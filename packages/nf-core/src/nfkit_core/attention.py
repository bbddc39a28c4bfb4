"""Scaled-dot-product attention behind one function, with interchangeable backends.

Backends (registered through the plugin registry, so a plugin can add its own):

``sdpa``
    :func:`torch.nn.functional.scaled_dot_product_attention` (the default: fused kernels on GPU and CPU);
``flash``
    ``flash_attn.flash_attn_func`` from the optional ``flash-attn`` package, on CUDA tensors in fp16/bf16;
``reference``
    a plain ``softmax(q k^T * scale + mask) v`` written out, for tests.

``attend(q, k, v, causal=..., backend="auto")`` takes ``(batch, heads, tokens, head_dim)`` tensors. ``"auto"`` picks
``flash`` when it can run on the given tensors, else ``sdpa``.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit_core.plugins.registry import AttentionBackend

__all__ = ["attend", "reference_attention", "sdpa_attention", "flash_attention", "BUILTIN_BACKENDS"]


def reference_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """``softmax(q k^T * scale) v`` with an optional causal mask, computed in the inputs' dtype."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if causal:
        tq, tk = q.shape[-2], k.shape[-2]
        # Queries are the last tq of the tk positions (so a cached decoding step sees every key before it).
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1), v)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """PyTorch's fused scaled-dot-product attention."""
    if causal and q.shape[-2] != k.shape[-2]:
        tq, tk = q.shape[-2], k.shape[-2]
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def _flash_available(q: Tensor) -> bool:
    return (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and importlib.util.find_spec("flash_attn") is not None)


def flash_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """FlashAttention (``flash_attn.flash_attn_func``); it wants ``(batch, tokens, heads, head_dim)``."""
    from flash_attn import flash_attn_func

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                          causal=causal)
    return out.transpose(1, 2)


BUILTIN_BACKENDS = (
    AttentionBackend("sdpa", sdpa_attention, lambda q: True, "torch.nn.functional.scaled_dot_product_attention"),
    AttentionBackend("flash", flash_attention, _flash_available, "flash-attn (CUDA, fp16/bf16)"),
    AttentionBackend("reference", reference_attention, lambda q: True, "plain softmax attention, for tests"),
)


def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None,
           backend: str = "auto") -> Tensor:
    """Attention of ``q`` over ``k, v`` with the named backend (``"auto"``: flash when possible, else sdpa)."""
    from nfkit_core.plugins import get_registry

    registry = get_registry()
    if backend == "auto":
        flash = registry.get("attention_backend", "flash")
        backend = "flash" if flash.is_available(q) else "sdpa"
    chosen: AttentionBackend = registry.get("attention_backend", backend)
    if not chosen.is_available(q):
        raise RuntimeError(f"attention backend {backend!r} cannot run on {q.device} tensors of dtype {q.dtype}")
    return chosen.attend(q, k, v, causal=causal, scale=scale)
