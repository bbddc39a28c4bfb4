"""Scaled-dot-product attention behind one function, with interchangeable backends.

Backends (registered through the plugin registry, so a plugin can add its own):

``sdpa``
    :func:`torch.nn.functional.scaled_dot_product_attention` (the default: fused kernels on GPU and CPU);
``flash``
    ``flash_attn.flash_attn_func`` from the optional ``flash-attn`` package (FlashAttention-2, e.g. on an A100), on
    CUDA tensors in fp16/bf16;
``flash3``
    the Hopper kernels (H100/H200, compute capability 9 or newer) of FlashAttention-3 (``flash_attn_interface``, built
    from the ``hopper/`` folder of flash-attn) or, where that is missing, FlashAttention-4 (``flash_attn.cute`` of the
    ``flash-attn-4`` package), on CUDA tensors in fp16/bf16;
``reference``
    a plain ``softmax(q k^T * scale + mask) v`` written out, for tests.

``attend(q, k, v, causal=..., backend="auto")`` takes ``(batch, heads, tokens, head_dim)`` tensors. ``"auto"`` picks
``flash3``, else ``flash``, when it can run on the given tensors, else ``sdpa``. Every flash backend aligns a causal
mask to the bottom right when there are fewer queries than keys (a cached decoding step), as ``sdpa`` and
``reference`` do here.
"""

from __future__ import annotations

import importlib
import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit_core.plugins.registry import AttentionBackend

__all__ = ["attend", "reference_attention", "sdpa_attention", "flash_attention", "flash3_attention",
           "BUILTIN_BACKENDS"]


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


def _hopper_flash_module() -> str | None:
    """The importable Hopper FlashAttention module: ``flash_attn_interface`` (FA3) or ``flash_attn.cute`` (FA4)."""
    if importlib.util.find_spec("flash_attn_interface") is not None:
        return "flash_attn_interface"
    if importlib.util.find_spec("flash_attn") is not None and importlib.util.find_spec("flash_attn.cute") is not None:
        return "flash_attn.cute"
    return None


def _flash3_available(q: Tensor) -> bool:
    return (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and torch.cuda.get_device_capability(q.device)[0] >= 9 and _hopper_flash_module() is not None)


def flash3_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """FlashAttention-3/4 on Hopper or newer; like :func:`flash_attention` it wants ``(batch, tokens, heads, dim)``.
    Some releases return ``(out, softmax_lse)``, others ``out`` alone."""
    module = importlib.import_module(_hopper_flash_module() or "flash_attn_interface")
    out = module.flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                                 causal=causal)
    out = out[0] if isinstance(out, tuple) else out
    return out.transpose(1, 2)


BUILTIN_BACKENDS = (
    AttentionBackend("sdpa", sdpa_attention, lambda q: True, "torch.nn.functional.scaled_dot_product_attention"),
    AttentionBackend("flash", flash_attention, _flash_available, "flash-attn 2 (CUDA, fp16/bf16)"),
    AttentionBackend("flash3", flash3_attention, _flash3_available,
                     "FlashAttention-3/4 Hopper kernels (CUDA compute capability >= 9, fp16/bf16)"),
    AttentionBackend("reference", reference_attention, lambda q: True, "plain softmax attention, for tests"),
)


def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None,
           backend: str = "auto") -> Tensor:
    """Attention of ``q`` over ``k, v`` with the named backend (``"auto"``: flash3 or flash when possible, else
    sdpa)."""
    from nfkit_core.plugins import get_registry

    registry = get_registry()
    if backend == "auto":
        backend = next((name for name in ("flash3", "flash")
                        if registry.get("attention_backend", name).is_available(q)), "sdpa")
    chosen: AttentionBackend = registry.get("attention_backend", backend)
    if not chosen.is_available(q):
        raise RuntimeError(f"attention backend {backend!r} cannot run on {q.device} tensors of dtype {q.dtype}")
    return chosen.attend(q, k, v, causal=causal, scale=scale)
