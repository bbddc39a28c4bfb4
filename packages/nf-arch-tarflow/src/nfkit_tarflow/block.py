"""One TarFlow flow block: a causal Transformer predicts an affine map of every token from the tokens before it.

With the tokens ``x_0 .. x_{T-1}`` of the block's order (the raster order, or its reverse on odd blocks), the
Transformer reads ``x_0 .. x_{i-1}`` and predicts a log-scale ``a_i`` and a shift ``b_i`` for token ``i``
(Zhai et al. 2025, "Normalizing Flows are Capable Generative Models")::

    forward (data -> latent, all tokens at once):   z_i = (x_i - b_i) * exp(-a_i),   z_0 = x_0
    inverse (latent -> data, one token at a time):  x_i = z_i * exp(a_i) + b_i

so ``log |det dz/dx| = -sum_i a_i``. In the volume-preserving variant only the shift is predicted (``a = 0``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nfkit_core import Transform
from nfkit_tarflow.guidance import Guidance
from nfkit_tarflow.transformer import AttentionBlock, KVCache, at_least_fp32

__all__ = ["TarFlowBlock"]


class TarFlowBlock(Transform):
    """An autoregressive affine flow on ``(batch, T, D)`` token sequences, parametrised by a causal Transformer.

    The parameter names are those of the official ``MetaBlock``, so that official checkpoints load by renaming.

    Args:
        token_dim: dimension ``D`` of a token.
        num_tokens: sequence length ``T``.
        channels: Transformer width.
        num_layers: Transformer layers.
        head_dim: channels per attention head.
        expansion: MLP width as a multiple of ``channels``.
        nvp: predict a log-scale and a shift (``True``) or a shift only (``False``).
        num_classes: number of class labels (0: unconditional).
        flip: process the tokens in reverse order.
        attention_backend: the :mod:`nfkit_core.attention` backend.

    Under autocast (the trainer's bf16 precision) the linear layers and attention run in bf16 while the layer norms,
    the predicted ``(a, b)``, the exponentials and the affine update stay in fp32, as in the official code.
    """

    def __init__(self, token_dim: int, num_tokens: int, channels: int, num_layers: int, head_dim: int = 64,
                 expansion: int = 4, nvp: bool = True, num_classes: int = 0, flip: bool = False,
                 attention_backend: str = "auto") -> None:
        super().__init__()
        self.token_dim = token_dim
        self.num_tokens = num_tokens
        self.nvp = nvp
        self.flip = flip
        self.proj_in = nn.Linear(token_dim, channels)
        self.pos_embed = nn.Parameter(torch.randn(num_tokens, channels) * 1e-2)
        self.class_embed = nn.Parameter(torch.randn(num_classes, channels) * 1e-2) if num_classes else None
        self.attn_blocks = nn.ModuleList(
            [AttentionBlock(channels, head_dim, expansion, attention_backend) for _ in range(num_layers)])
        self.proj_out = nn.Linear(channels, 2 * token_dim if nvp else token_dim)
        # As in the official code only the weight starts at zero: the block starts as a token-independent affine map.
        nn.init.zeros_(self.proj_out.weight)

    @property
    def num_classes(self) -> int:
        """Number of class labels (0 for an unconditional block)."""
        return 0 if self.class_embed is None else self.class_embed.shape[0]

    def set_attention_backend(self, name: str) -> None:
        """Use the :mod:`nfkit_core.attention` backend ``name`` in every layer."""
        for layer in self.attn_blocks:
            layer.attention.set_backend(name)

    def permute(self, x: Tensor, dim: int = 1) -> Tensor:
        """Put tokens into this block's order (the order is its own inverse)."""
        return x.flip(dim) if self.flip else x

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_tokens(x)
        labels = self._labels(context, x.shape[0])
        x = self.permute(x)
        params = self._predict(x, self._class_embedding(labels))
        # The prediction at position i - 1 (which has seen x_0 .. x_{i-1}) transforms token i; token 0 gets (0, 0).
        params = torch.cat([torch.zeros_like(params[:, :1]), params[:, :-1]], dim=1)
        a, b = self._split(params)
        z = (x - b) * torch.exp(-a)
        return self.permute(z), -a.sum(dim=(1, 2))

    def inverse(self, z: Tensor, context: Tensor | None = None, guidance: Guidance | None = None,
                kv_cache: bool | None = None) -> tuple[Tensor, Tensor]:
        """Invert token by token: ``T - 1`` sequential steps, each predicting ``(a_i, b_i)`` for the next token.

        Args:
            z: latent tokens ``(batch, T, D)`` in natural order.
            context: class labels ``(batch,)`` (``-1``: no label) or ``None``.
            guidance: optional :class:`Guidance`; its unconditional pass runs in the same forward as the
                conditional one, on a doubled batch.
            kv_cache: keep the keys and values of past tokens in a preallocated cache and feed the Transformer one
                token per step (``True``), or recompute the whole prefix every step (``False``, the naive reference).
                By default the cache is used unless gradients are enabled: it is written in place, which autograd
                cannot differentiate through.
        """
        self._check_tokens(z)
        batch, num_tokens, _ = z.shape
        labels = self._labels(context, batch)
        guidance = guidance if guidance is not None else Guidance()
        if kv_cache is None:
            kv_cache = not torch.is_grad_enabled()
        temperature = None
        if guidance.active:
            if self.class_embed is not None:
                conditional = labels if labels is not None else z.new_full((batch,), -1, dtype=torch.long)
                labels = torch.cat([conditional, torch.full_like(conditional, -1)])
            temperature = torch.cat([z.new_ones(batch), z.new_full((batch,), guidance.attn_temp)])

        z = self.permute(z)
        pos_embed = self.permute(self.pos_embed, dim=0)
        class_embedding = self._class_embedding(labels)
        cache = KVCache(len(self.attn_blocks), num_tokens) if kv_cache else None
        tokens = [z[:, 0]]
        log_det = z.new_zeros(batch)
        for i in range(num_tokens - 1):
            if cache is not None:
                inputs, position = tokens[i][:, None], i
            else:
                inputs, position = torch.stack(tokens, dim=1), 0
            if guidance.active:
                inputs = torch.cat([inputs, inputs])
            params = self._predict(inputs, class_embedding, temperature, pos_embed, cache, position)[:, -1]
            a, b = self._split(params)
            if guidance.active:
                a, b = guidance.combine((a[:batch], b[:batch]), (a[batch:], b[batch:]), i, num_tokens)
            tokens.append(z[:, i + 1] * torch.exp(a) + b)
            log_det = log_det + a.sum(dim=-1)
        return self.permute(torch.stack(tokens, dim=1)), log_det

    def _predict(self, x: Tensor, class_embedding: Tensor | None, temperature: Tensor | None = None,
                 pos_embed: Tensor | None = None, cache: KVCache | None = None, position: int = 0) -> Tensor:
        """Transformer outputs (fp32 or wider) at the tokens ``position, position + 1, ...`` of ``x`` (block order)."""
        if pos_embed is None:
            pos_embed = self.permute(self.pos_embed, dim=0)
        h = self.proj_in(x) + pos_embed[position:position + x.shape[1]]
        if class_embedding is not None:
            h = h + class_embedding
        for index, layer in enumerate(self.attn_blocks):
            h = layer(h, temperature, cache[index] if cache is not None else None, position)
        return at_least_fp32(self.proj_out(h))

    def _class_embedding(self, labels: Tensor | None) -> Tensor | None:
        """``(batch, 1, channels)`` embeddings (``None`` when unconditional); no label (``None`` or ``-1``) gets the
        mean class embedding."""
        if self.class_embed is None:
            return None
        mean = self.class_embed.mean(dim=0)
        if labels is None:
            return mean
        embedding = torch.where((labels < 0)[:, None], mean, self.class_embed[labels.clamp(min=0)])
        return embedding[:, None]

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)``: log-scale and shift (``a = 0`` in the volume-preserving variant)."""
        if self.nvp:
            a, b = params.chunk(2, dim=-1)
            return a, b
        return torch.zeros_like(params), params

    def _check_tokens(self, x: Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.num_tokens, self.token_dim):
            raise ValueError(f"TarFlowBlock expects tokens of shape (batch, {self.num_tokens}, {self.token_dim}), "
                             f"got {tuple(x.shape)}")

    def _labels(self, context: Tensor | None, batch: int) -> Tensor | None:
        """Validated class labels, or ``None`` for an unconditional block (which ignores ``context``)."""
        if self.class_embed is None or context is None:
            return None
        if context.is_floating_point() or context.is_complex() or context.dtype == torch.bool:
            raise TypeError(f"class labels must be an integer tensor, got dtype {context.dtype}")
        if tuple(context.shape) != (batch,):
            raise ValueError(f"expected class labels of shape ({batch},), got {tuple(context.shape)}")
        if context.numel() and (context.min() < -1 or context.max() >= self.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}) or be -1 for 'no label', "
                             f"got {context.tolist()}")
        return context.long()
