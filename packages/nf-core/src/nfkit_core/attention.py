"""Scaled-dot-product attention with interchangeable backends, resolved once, when a model is built.

Built-in backends:

``sdpa``
    :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels on GPU and CPU);
``flash``
    ``flash_attn.flash_attn_func`` from the optional ``flash-attn`` package (FlashAttention-2, e.g. on an A100), on
    CUDA tensors in fp16/bf16;
``flash3``
    the Hopper kernels (compute capability 9 or newer: H100/H200) of FlashAttention-3 (``flash_attn_interface``,
    built from the ``hopper/`` folder of flash-attn) or, where that is missing, FlashAttention-4 (``flash_attn.cute``
    of the ``flash-attn-4`` package), on CUDA tensors in fp16/bf16;
``reference``
    a plain ``softmax(q k^T * scale + mask) v`` written out, for tests;
``auto``
    ``flash3``, else ``flash``, on the tensors they can run on where they are installed, else ``sdpa``.

Every backend aligns a causal mask to the bottom right when there are fewer queries than keys (a cached decoding
step): the queries are the last positions.

A model turns the name in its config into an :class:`~nfkit_core.specs.AttentionBackend` with
:func:`resolve_backend` when it is built, and calls :func:`attend` with that object: no name is looked up and no
library is searched for at attention time. A backend that a plugin registers (``nf_register_attention_backends``)
is resolved by name as well when the model is built through the plugin registry, which puts the registered
backends in scope (:func:`backends_in_scope`) around the architecture's ``build``. Python code may also pass an
:class:`~nfkit_core.specs.AttentionBackend` object instead of a name.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib.util
import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from nfkit_core.errors import ConfigError, UnknownNameError
from nfkit_core.specs import AttentionBackend

__all__ = ["attend", "resolve_backend", "backends_in_scope", "reference_attention", "sdpa_attention",
           "flash_attention", "flash3_attention", "BUILTIN_BACKENDS"]


def _causal_mask(q: Tensor, k: Tensor) -> Tensor:
    # Queries are the last tq of the tk positions (so a cached decoding step sees every key before it).
    tq, tk = q.shape[-2], k.shape[-2]
    return torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """``softmax(q k^T * scale) v`` with an optional causal mask, computed in the inputs' dtype.

    Args:
        q: queries, ``(B, heads, Tq, head_dim)``.
        k: keys, ``(B, heads, Tk, head_dim)``.
        v: values, ``(B, heads, Tk, head_dim)``.
        causal: mask out keys after each query; with ``Tq < Tk`` the queries are the last ``Tq`` positions.
        scale: multiplies the scores; ``1 / sqrt(head_dim)`` when ``None``.

    Returns:
        the attention output, ``(B, heads, Tq, head_dim)``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if causal:
        scores = scores.masked_fill(~_causal_mask(q, k), float("-inf"))
    return torch.matmul(scores.softmax(dim=-1), v)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """PyTorch's fused scaled-dot-product attention (:func:`torch.nn.functional.scaled_dot_product_attention`).

    Args:
        q: queries, ``(B, heads, Tq, head_dim)``.
        k: keys, ``(B, heads, Tk, head_dim)``.
        v: values, ``(B, heads, Tk, head_dim)``.
        causal: mask out keys after each query; with ``Tq < Tk`` the queries are the last ``Tq`` positions.
        scale: multiplies the scores; ``1 / sqrt(head_dim)`` when ``None``.

    Returns:
        the attention output, ``(B, heads, Tq, head_dim)``.
    """
    if causal and q.shape[-2] != k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(q, k), scale=scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def flash_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """FlashAttention (``flash_attn.flash_attn_func``) on CUDA in fp16/bf16; the inputs are transposed to its
    ``(batch, tokens, heads, head_dim)`` layout and back.

    Args:
        q: queries, ``(B, heads, Tq, head_dim)``.
        k: keys, ``(B, heads, Tk, head_dim)``.
        v: values, ``(B, heads, Tk, head_dim)``.
        causal: mask out keys after each query; with ``Tq < Tk`` the queries are the last ``Tq`` positions.
        scale: multiplies the scores; ``1 / sqrt(head_dim)`` when ``None``.

    Returns:
        the attention output, ``(B, heads, Tq, head_dim)``.
    """
    from flash_attn import flash_attn_func

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                          causal=causal)
    return out.transpose(1, 2)


@functools.cache
def _flash_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _flash_runs_on(q: Tensor) -> bool:
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


@functools.cache
def _hopper_flash_module() -> str | None:
    """The installed Hopper FlashAttention module: ``flash_attn_interface`` (FA3) or ``flash_attn.cute`` (FA4)."""
    if importlib.util.find_spec("flash_attn_interface") is not None:
        return "flash_attn_interface"
    if _flash_installed() and importlib.util.find_spec("flash_attn.cute") is not None:
        return "flash_attn.cute"
    return None


def _flash3_installed() -> bool:
    return _hopper_flash_module() is not None


@functools.cache
def _is_hopper_or_newer(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device)[0] >= 9


def _flash3_runs_on(q: Tensor) -> bool:
    return _flash_runs_on(q) and _is_hopper_or_newer(q.device)


def flash3_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
    """FlashAttention-3/4 on Hopper or newer; like :func:`flash_attention` it transposes to ``(batch, tokens, heads,
    dim)``. Some releases return ``(out, softmax_lse)``, others ``out`` alone.

    Args:
        q: queries, ``(B, heads, Tq, head_dim)``.
        k: keys, ``(B, heads, Tk, head_dim)``.
        v: values, ``(B, heads, Tk, head_dim)``.
        causal: mask out keys after each query; with ``Tq < Tk`` the queries are the last ``Tq`` positions.
        scale: multiplies the scores; ``1 / sqrt(head_dim)`` when ``None``.

    Returns:
        the attention output, ``(B, heads, Tq, head_dim)``.
    """
    module = importlib.import_module(_hopper_flash_module() or "flash_attn_interface")
    out = module.flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                                 causal=causal)
    out = out[0] if isinstance(out, tuple) else out
    return out.transpose(1, 2)


SDPA = AttentionBackend("sdpa", sdpa_attention, description="torch.nn.functional.scaled_dot_product_attention")
FLASH = AttentionBackend("flash", flash_attention, _flash_runs_on, "flash-attn 2 (CUDA, fp16/bf16)", _flash_installed)
FLASH3 = AttentionBackend("flash3", flash3_attention, _flash3_runs_on,
                          "FlashAttention-3/4 Hopper kernels (CUDA compute capability >= 9, fp16/bf16)",
                          _flash3_installed)
REFERENCE = AttentionBackend("reference", reference_attention, description="plain softmax attention, for tests")
BUILTIN_BACKENDS: tuple[AttentionBackend, ...] = (SDPA, FLASH, FLASH3, REFERENCE)
"""The backends nfkit-core provides (it also registers them, so that ``nf plugins`` lists them)."""


def _auto_backend() -> AttentionBackend:
    """``flash3``, else ``flash``, on the tensors they run on where installed (looked up once, here), else ``sdpa``."""
    flash = [backend for backend in (FLASH3, FLASH) if backend.is_installed()]
    if not flash:
        return dataclasses.replace(SDPA, name="auto", description="sdpa (flash-attn is not installed)")

    def attend_auto(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None) -> Tensor:
        chosen = next((backend.attend for backend in flash if backend.is_available(q)), sdpa_attention)
        return chosen(q, k, v, causal=causal, scale=scale)

    return AttentionBackend("auto", attend_auto, description=f"{' or '.join(b.name for b in flash)} where it runs, "
                                                             f"else sdpa")


_in_scope: contextvars.ContextVar[Mapping[str, AttentionBackend] | None] = contextvars.ContextVar(
    "attention_backends", default=None)


@contextlib.contextmanager
def backends_in_scope(backends: Mapping[str, AttentionBackend]) -> Iterator[None]:
    """Let :func:`resolve_backend` find ``backends`` by name inside this block (the registry uses it around an
    architecture's ``build``, so that a plugin's backend can be named in a config).

    Args:
        backends: the backends by name.
    """
    token = _in_scope.set({**(_in_scope.get() or {}), **backends})
    try:
        yield
    finally:
        _in_scope.reset(token)


def resolve_backend(backend: str | AttentionBackend) -> AttentionBackend:
    """The backend an attention layer will call: ``backend`` itself, or the one of that name.

    Names are looked up among the built-ins (``auto``, ``sdpa``, ``flash``, ``flash3``, ``reference``), then among the
    backends in scope (:func:`backends_in_scope`).

    Args:
        backend: a backend, or its name.

    Returns:
        the backend, its libraries installed.

    Raises:
        UnknownNameError: no backend of that name; the message lists the available ones.
        ConfigError: the backend's libraries are not installed (e.g. ``flash`` without flash-attn).
    """
    if isinstance(backend, AttentionBackend):
        chosen = backend
    elif backend == "auto":
        return _auto_backend()
    else:
        available = {b.name: b for b in BUILTIN_BACKENDS} | dict(_in_scope.get() or {})
        if backend not in available:
            raise UnknownNameError(f"unknown attention backend {backend!r}; available: "
                                   f"{', '.join(['auto', *sorted(available)])} (a plugin's backend is found when "
                                   f"the model is built through the registry, e.g. by nf train)")
        chosen = available[backend]
    if not chosen.is_installed():
        raise ConfigError(f"attention backend {chosen.name!r} is not installed here ({chosen.description}); choose "
                          f"another one, e.g. 'auto'")
    return chosen


def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, scale: float | None = None,
           backend: AttentionBackend = SDPA) -> Tensor:
    """Attention of ``q`` over ``k, v`` (``(batch, heads, tokens, head_dim)``) with a resolved backend.

    With ``causal`` and fewer queries than keys, the queries are the last positions (a cached decoding step).

    Args:
        q: queries, ``(B, heads, Tq, head_dim)``.
        k: keys, ``(B, heads, Tk, head_dim)``.
        v: values, ``(B, heads, Tk, head_dim)``.
        causal: mask out keys after each query.
        scale: multiplies the scores; ``1 / sqrt(head_dim)`` when ``None``.
        backend: a backend from :func:`resolve_backend`.

    Returns:
        the attention output, ``(B, heads, Tq, head_dim)``.

    Raises:
        RuntimeError: the backend cannot run on these tensors (device or dtype).

    Example:
        >>> import torch
        >>> from nfkit_core.attention import attend, reference_attention, resolve_backend
        >>> q, k, v = torch.randn(3, 2, 1, 4, 8).unbind(0)  # batch 2, 1 head, 4 tokens, head_dim 8
        >>> out = attend(q, k, v, causal=True, backend=resolve_backend("sdpa"))
        >>> out.shape, torch.allclose(out, reference_attention(q, k, v, causal=True), atol=1e-6)
        (torch.Size([2, 1, 4, 8]), True)
    """
    if not backend.is_available(q):
        raise RuntimeError(f"attention backend {backend.name!r} cannot run on {q.device} tensors of dtype {q.dtype}")
    return backend.attend(q, k, v, causal=causal, scale=scale)
