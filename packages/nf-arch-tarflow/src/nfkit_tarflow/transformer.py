"""The pre-LayerNorm Transformer layer of a TarFlow block, and the key/value cache used when sampling.

Layer norms run in fp32 whatever the autocast dtype (as the official implementation does); attention goes through
:func:`nfkit_core.attention.attend`, so the backend (PyTorch SDPA, flash-attn, the plain reference, a plugin's) is a
setting, resolved once when the layer is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core.attention import attend, resolve_backend
from nfkit_core.layers.conditioning import at_least_float32
from nfkit_core.specs import AttentionBackend

__all__ = ["Attention", "MLP", "AttentionBlock", "KVCache", "LayerKVCache", "StaticLayerKVCache"]


class LayerKVCache:
    """Keys and values of one attention layer for a whole sequence, in tensors allocated once.

    The first :meth:`write` allocates ``(batch, heads, max_tokens, head_dim)`` tensors of the incoming dtype; every
    write copies into them in place, so decoding ``T`` tokens costs no reallocation and no concatenation.

    Args:
        max_tokens: the sequence length it holds (the flow block's number of tokens).
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def write(self, position: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` (``(batch, heads, t, head_dim)``) at ``position`` and return the keys and values so far.

        Args:
            position: the index of the first of the ``t`` tokens in the sequence.
            k: their keys, shape ``(batch, heads, t, head_dim)``.
            v: their values, of ``k``'s shape.

        Returns:
            ``(keys, values)`` of tokens ``0 .. position + t - 1``, each ``(batch, heads, position + t, head_dim)``
            (views of the cache).

        Raises:
            ValueError: ``position + t`` exceeds ``max_tokens``.
        """
        end = position + k.shape[2]
        if end > self.max_tokens:
            raise ValueError(f"KV cache holds {self.max_tokens} tokens; cannot write tokens up to {end}")
        if self.keys is None:
            shape = (k.shape[0], k.shape[1], self.max_tokens, k.shape[3])
            self.keys = k.new_empty(shape)
            self.values = v.new_empty(shape)
        self.keys.narrow(2, position, k.shape[2]).copy_(k)
        self.values.narrow(2, position, v.shape[2]).copy_(v)
        return self.keys.narrow(2, 0, end), self.values.narrow(2, 0, end)

    def attend_step(self, position: int, q: Tensor, k: Tensor, v: Tensor, backend: AttentionBackend) -> Tensor:
        """Write the keys and values of the token at ``position`` and attend from its query over every token so far.

        Args:
            position: the token's index in the sequence.
            q: its queries, ``(batch, heads, 1, head_dim)``.
            k: its keys, of ``q``'s shape.
            v: its values, of ``q``'s shape.
            backend: the attention backend.

        Returns:
            the attention output, of ``q``'s shape.
        """
        k, v = self.write(position, k, v)
        return attend(q, k, v, backend=backend)  # one query over every key so far: no mask


class StaticLayerKVCache:
    """Keys and values of one attention layer for a whole sequence, always read whole: static shapes for
    :func:`torch.compile`.

    A :class:`LayerKVCache` returns a view that grows by a token every step, so a compiled step would see a new shape
    (and recompile) at every position. This cache is written at a position given as a tensor, and a step attends over
    all ``max_tokens`` entries under a mask that hides the ones after the position; the entries start at zero, so the
    masked ones are finite and drop out exactly.

    Args:
        max_tokens: the sequence length it holds.
        shape: ``(batch, heads, head_dim)`` of the keys and values of one token.
        dtype: their dtype (the one the attention layers compute in).
        device: where they live.
    """

    def __init__(self, max_tokens: int, shape: tuple[int, int, int], dtype: torch.dtype,
                 device: torch.device) -> None:
        batch, heads, head_dim = shape
        self.keys = torch.zeros(batch, heads, max_tokens, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.token_positions = torch.arange(max_tokens, device=device)

    def attend_step(self, position: Tensor, q: Tensor, k: Tensor, v: Tensor, backend: AttentionBackend) -> Tensor:
        """:meth:`LayerKVCache.attend_step`, with ``position`` a one-element integer tensor.

        The layer's backend is not used: the step needs a mask over the whole cache, which PyTorch SDPA takes (and
        compiles) on every device.

        Args:
            position: the token's index in the sequence, shape ``(1,)``.
            q: its queries, ``(batch, heads, 1, head_dim)``.
            k: its keys, of ``q``'s shape.
            v: its values, of ``q``'s shape.
            backend: the layer's attention backend (unused).

        Returns:
            the attention output, of ``q``'s shape.
        """
        self.keys.index_copy_(2, position, k)
        self.values.index_copy_(2, position, v)
        visible = (self.token_positions <= position)[None]
        return F.scaled_dot_product_attention(q, self.keys, self.values, attn_mask=visible)


class KVCache:
    """One :class:`LayerKVCache` per attention layer of a flow block.

    Args:
        num_layers: attention layers of the block.
        max_tokens: the sequence length each layer's cache holds.
    """

    def __init__(self, num_layers: int, max_tokens: int) -> None:
        self.layers = [LayerKVCache(max_tokens) for _ in range(num_layers)]

    def __getitem__(self, index: int) -> LayerKVCache:
        return self.layers[index]


class Attention(nn.Module):
    """Pre-LayerNorm multi-head causal self-attention.

    Args:
        channels: model width.
        head_dim: channels per head.
        backend: an :mod:`nfkit_core.attention` backend or its name (see :func:`~nfkit_core.attention.resolve_backend`).
    """

    def __init__(self, channels: int, head_dim: int, backend: str | AttentionBackend = "auto") -> None:
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"channels ({channels}) must be a multiple of head_dim ({head_dim})")
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.num_heads = channels // head_dim
        self.head_dim = head_dim
        self.set_backend(backend)

    def set_backend(self, backend: str | AttentionBackend) -> None:
        """Use this :mod:`nfkit_core.attention` backend (resolved here, once).

        Args:
            backend: a backend or its registered name (``"auto"``, ``"sdpa"``, ``"flash"``, ``"reference"``, a
                plugin's).

        Raises:
            UnknownNameError: no backend of that name.
            ConfigError: the backend's libraries are not installed.
        """
        self.backend: AttentionBackend = resolve_backend(backend)

    def forward(self, x: Tensor, temperature: Tensor | None = None, cache: LayerKVCache | None = None,
                position: int = 0) -> Tensor:
        """Attend causally over ``x`` of shape ``(batch, tokens, channels)``.

        Args:
            x: the residual stream.
            temperature: optional per-sample attention temperature ``tau`` of shape ``(batch,)``: the scores become
                ``q k^T / (sqrt(head_dim) tau)`` (attention-temperature guidance of Zhai et al. 2025).
            cache: when given, ``x`` holds the tokens at ``position, position + 1, ...``; their keys and values are
                written into the cache and the queries attend over every cached token up to themselves.
            position: index of the first token of ``x`` in the sequence (only with ``cache``).

        Returns:
            the attention output (projected, without the residual), of ``x``'s shape.
        """
        batch, tokens, channels = x.shape
        h = self.norm(at_least_float32(x)).type(x.dtype)
        q, k, v = self.qkv(h).reshape(batch, tokens, 3 * self.num_heads, self.head_dim).transpose(1, 2).chunk(3, dim=1)
        if temperature is not None:
            q = q / temperature.to(q.dtype).view(-1, 1, 1, 1)
        if cache is not None:
            k, v = cache.write(position, k, v)
        # With a cache, a single new query sees only past keys, so no mask is needed.
        out = attend(q, k, v, causal=tokens > 1, backend=self.backend)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))

    def step(self, x: Tensor, temperature: Tensor | None, cache: LayerKVCache | StaticLayerKVCache,
             position: int | Tensor) -> Tensor:
        """:meth:`forward` of one token at ``position`` with the cache, on ``(batch, channels)`` (a decoding step).

        It computes what :meth:`forward` computes, through the parameters directly (see :meth:`AttentionBlock.step`).

        Args:
            x: the residual stream of the token, shape ``(batch, channels)``.
            temperature: optional per-sample attention temperature of shape ``(batch,)``.
            cache: this layer's cache, holding the tokens before ``position``; the token's keys and values are
                written at ``position``.
            position: the token's index in the sequence (a one-element tensor with a :class:`StaticLayerKVCache`).

        Returns:
            the attention output (projected, without the residual), of ``x``'s shape.
        """
        batch, channels = x.shape
        h = F.layer_norm(at_least_float32(x), (channels,), self.norm.weight, self.norm.bias, self.norm.eps)
        qkv = F.linear(h.type(x.dtype), self.qkv.weight, self.qkv.bias)
        q, k, v = qkv.view(batch, 3, self.num_heads, 1, self.head_dim).unbind(1)
        if temperature is not None:
            q = q / temperature.to(q.dtype).view(-1, 1, 1, 1)
        out = cache.attend_step(position, q, k, v, self.backend)
        return F.linear(out.reshape(batch, channels), self.proj.weight, self.proj.bias)


class MLP(nn.Module):
    """Pre-LayerNorm two-layer GELU MLP of hidden width ``expansion * channels``.

    Args:
        channels: model width.
        expansion: the hidden width as a multiple of ``channels``.
    """

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.main = nn.Sequential(
            nn.Linear(channels, channels * expansion),
            nn.GELU(),
            nn.Linear(channels * expansion, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """The MLP's output (without the residual).

        Args:
            x: the residual stream, shape ``(batch, tokens, channels)``.

        Returns:
            a tensor of ``x``'s shape.
        """
        return self.main(self.norm(at_least_float32(x)).type(x.dtype))

    def step(self, x: Tensor) -> Tensor:
        """:meth:`forward` of one token, shape ``(batch, channels)``, through the parameters directly (see
        :meth:`AttentionBlock.step`).

        Args:
            x: the residual stream of the token.

        Returns:
            a tensor of ``x``'s shape.
        """
        norm, inner, outer = self.norm, self.main[0], self.main[2]
        h = F.layer_norm(at_least_float32(x), (x.shape[-1],), norm.weight, norm.bias, norm.eps).type(x.dtype)
        return F.linear(F.gelu(F.linear(h, inner.weight, inner.bias)), outer.weight, outer.bias)


class AttentionBlock(nn.Module):
    """One Transformer layer: ``x + attention(x)``, then ``x + mlp(x)``.

    Args:
        channels: model width.
        head_dim: channels per attention head; it must divide ``channels``.
        expansion: the MLP's hidden width as a multiple of ``channels``.
        backend: an :mod:`nfkit_core.attention` backend or its name.
    """

    def __init__(self, channels: int, head_dim: int, expansion: int = 4,
                 backend: str | AttentionBackend = "auto") -> None:
        super().__init__()
        self.attention = Attention(channels, head_dim, backend)
        self.mlp = MLP(channels, expansion)

    def forward(self, x: Tensor, temperature: Tensor | None = None, cache: LayerKVCache | None = None,
                position: int = 0) -> Tensor:
        """Apply the layer.

        Args:
            x: the residual stream, shape ``(batch, tokens, channels)``.
            temperature: per-sample attention temperature of shape ``(batch,)``, or ``None`` (see
                :meth:`Attention.forward`).
            cache: this layer's key/value cache when decoding token by token, else ``None``.
            position: index of the first token of ``x`` in the sequence (only with ``cache``).

        Returns:
            the updated residual stream, of ``x``'s shape.
        """
        x = x + self.attention(x, temperature, cache, position)
        return x + self.mlp(x)

    def step(self, x: Tensor, temperature: Tensor | None, cache: LayerKVCache | StaticLayerKVCache,
             position: int | Tensor) -> Tensor:
        """:meth:`forward` of one token at ``position`` with the cache, on ``(batch, channels)``: one step of
        sequential decoding.

        The step calls the functional operators on the layers' parameters instead of the submodules: at one token
        per call the Python cost of a dozen module calls per layer is a sizeable share of a small model's step.

        Args:
            x: the residual stream of the token, shape ``(batch, channels)``.
            temperature: per-sample attention temperature of shape ``(batch,)``, or ``None``.
            cache: this layer's key/value cache, holding the tokens before ``position``.
            position: the token's index in the sequence (a one-element tensor with a :class:`StaticLayerKVCache`).

        Returns:
            the updated residual stream, of ``x``'s shape.
        """
        x = x + self.attention.step(x, temperature, cache, position)
        return x + self.mlp.step(x)


