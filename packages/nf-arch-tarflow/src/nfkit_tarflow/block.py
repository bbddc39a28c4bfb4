"""One TarFlow flow block: a causal Transformer predicts an affine map of every token from the tokens before it.

With the tokens ``x_0 .. x_{T-1}`` of the block's order (the raster order, or its reverse on odd blocks), the
Transformer reads ``x_0 .. x_{i-1}`` and predicts a log-scale ``a_i`` and a shift ``b_i`` for token ``i``
(Zhai et al. 2025, "Normalizing Flows are Capable Generative Models")::

    forward (data -> latent, all tokens at once):   z_i = (x_i - b_i) * exp(-a_i),   z_0 = x_0
    inverse (latent -> data, one token at a time):  x_i = z_i * exp(a_i) + b_i

so ``log |det dz/dx| = -sum_i a_i``. In the volume-preserving variant only the shift is predicted (``a = 0``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit_core import Transform
from nfkit_core.layers.conditioning import at_least_float32
from nfkit_core.validation import check_class_labels, check_event_shape
from nfkit_tarflow.guidance import Guidance, guide
from nfkit_tarflow.transformer import AttentionBlock, KVCache, StaticLayerKVCache

DEFAULT_TOLERANCE = 1e-6
"""The Jacobi sampler's default tolerance (max-norm of the last update of any token); under bf16 autocast choose one
above bf16's resolution (e.g. ``1e-2``), or the iteration never settles."""

StepCache = KVCache | Sequence[StaticLayerKVCache]
"""The caches a decoding step reads, one per layer (indexed by layer); the eager step's :class:`KVCache`, or the
compiled step's static caches."""

SAMPLERS = ("sequential", "jacobi", "compiled")
"""The block solvers of :meth:`TarFlowBlock.inverse`."""

__all__ = ["SAMPLERS", "TarFlowBlock", "compiled_decode_step"]


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

    Sampling options (``inverse_options``; given to :meth:`nfkit_core.NormalizingFlow.sample`, they reach every block
    through :meth:`nfkit_core.Sequential.inverse`): ``guidance``, ``guide_what``, ``attn_temp``,
    ``annealed_guidance`` (see :mod:`nfkit_tarflow.guidance`), ``kv_cache``, and the block solver ``sampler``,
    ``tolerance``, ``max_iterations`` (see :meth:`inverse`).

    Under autocast (the trainer's bf16 precision) the linear layers and attention run in bf16 while the layer norms,
    the predicted ``(a, b)``, the exponentials and the affine update stay in fp32, as in the official code.
    """

    inverse_options: ClassVar[tuple[str, ...]] = ("guidance", "guide_what", "attn_temp", "annealed_guidance",
                                                  "kv_cache", "sampler", "tolerance", "max_iterations")

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
        self.last_iterations = 0
        """Jacobi iterations of the most recent :meth:`inverse` (0 after a sequential one)."""
        # As in the official code only the weight starts at zero: the block starts as a token-independent affine map.
        nn.init.zeros_(self.proj_out.weight)

    @property
    def num_classes(self) -> int:
        """Number of class labels (0 for an unconditional block)."""
        return 0 if self.class_embed is None else self.class_embed.shape[0]

    def set_attention_backend(self, name: str) -> None:
        """Use the :mod:`nfkit_core.attention` backend ``name`` in every layer.

        Args:
            name: a registered backend name (``"auto"``, ``"sdpa"``, ``"flash"``, ``"reference"``, a plugin's).

        Raises:
            UnknownNameError: no backend of that name.
            ConfigError: the backend's libraries are not installed.
        """
        for layer in self.attn_blocks:
            layer.attention.set_backend(name)

    def permute(self, x: Tensor, dim: int = 1) -> Tensor:
        """Put tokens into this block's order (the order is its own inverse).

        Args:
            x: a tensor with the tokens along ``dim``, e.g. ``(batch, T, D)``.
            dim: the token dimension.

        Returns:
            ``x`` reversed along ``dim`` when the block is flipped, else ``x`` itself.
        """
        return x.flip(dim) if self.flip else x

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_tokens(x)
        labels = self._labels(context, x.shape[0])
        x = self.permute(x)
        # The prediction at position i - 1 (which has seen x_0 .. x_{i-1}) transforms token i; token 0 gets (0, 0).
        # The last token is never read by a prediction, so the Transformer runs on the first T - 1 tokens only.
        params = self._predict(x[:, :-1], self._class_embedding(labels))
        params = torch.cat([torch.zeros_like(params[:, :1]), params], dim=1)
        a, b = self._split(params)
        z = (x - b) * torch.exp(-a)
        return self.permute(z), -a.sum(dim=(1, 2))

    def inverse(self, z: Tensor, context: Tensor | None = None, *, guidance: float = 0.0, guide_what: str = "ab",
                attn_temp: float = 1.0, annealed_guidance: bool = False, kv_cache: bool | None = None,
                sampler: str = "sequential", tolerance: float = DEFAULT_TOLERANCE, max_iterations: int | None = None,
                **options: Any) -> tuple[Tensor, Tensor]:
        """Solve ``z_i = (x_i - b_i(x_{<i})) exp(-a_i(x_{<i}))`` for ``x``, a triangular system.

        ``sampler="sequential"`` takes ``T - 1`` steps, each predicting ``(a_i, b_i)`` of the next token from the
        tokens before it. ``sampler="jacobi"`` updates every token at once from the previous iterate,
        ``x^(k+1)_i = z_i exp(a_i(x^(k)_{<i})) + b_i(x^(k)_{<i})``, starting from ``x^(0) = z`` (Song et al. 2021,
        "Accelerating Feedforward Computation via Parallel Nonlinear Equation Solving"; Liu et al. 2025, "Accelerate
        TarFlow Sampling with GS-Jacobi Iteration"). A token computed from a final prefix is final, so at least one
        more token settles per iteration and ``T - 1`` iterations give the sequential answer; in practice far fewer
        suffice. Settled tokens (up to the first one that moved by more than ``tolerance``) are frozen and, with the
        KV cache, never recomputed, so the iterations get cheaper as the front advances. If ``max_iterations`` pass
        before the iterate moves by at most ``tolerance``, the remaining tokens are decoded sequentially. The
        iterations used are kept in :attr:`last_iterations`. ``sampler="compiled"`` takes the sequential steps through
        :func:`compiled_decode_step`: the step reads a zeroed full-length cache under a mask
        (:class:`~nfkit_tarflow.transformer.StaticLayerKVCache`, attending with PyTorch SDPA whatever the layers'
        backend) at a position tensor, so its shapes never change and :func:`torch.compile` fuses its many small
        operations. The first call for a model shape, batch and guidance mode compiles (seconds on a CPU); it pays
        off over many calls of the same setting. It needs no gradients and the KV cache.

        Args:
            z: latent tokens ``(batch, T, D)`` in natural order.
            context: class labels ``(batch,)`` (``-1``: no label) or ``None``.
            guidance, guide_what, attn_temp, annealed_guidance: the :class:`Guidance` of the steps (the argument
                names of the official ``reverse``); its unconditional pass runs in the same forward as the
                conditional one, on a doubled batch.
            kv_cache: keep the keys and values of past tokens in a preallocated cache and feed the Transformer only
                the tokens not yet computed (``True``), or recompute the whole prefix every step (``False``, the
                naive reference). By default the cache is used unless gradients are enabled: it is written in
                place, which autograd cannot differentiate through.
            sampler: ``"sequential"``, ``"jacobi"`` or ``"compiled"``.
            tolerance: Jacobi stops once no token moves by more than this (max-norm); ``0`` iterates until every
                token is final, which is the sequential answer.
            max_iterations: the most Jacobi iterations (default ``T - 1``, which always suffices).
            options: sampling options of other layers, ignored here.
        """
        self._check_tokens(z)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}, got {sampler!r}")
        if sampler == "compiled" and (kv_cache is False or torch.is_grad_enabled()):
            raise ValueError("sampler='compiled' writes its KV cache in place, which autograd cannot differentiate "
                             "through: sample under torch.no_grad() (as flow.sample does) and leave kv_cache on")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if max_iterations is not None and max_iterations < 0:
            raise ValueError(f"max_iterations must be >= 0 (or None for T - 1), got {max_iterations}")
        batch, num_tokens, _ = z.shape
        labels = self._labels(context, batch)
        guidance = Guidance(guidance, guide_what, attn_temp, annealed_guidance)
        if kv_cache is None:
            kv_cache = not torch.is_grad_enabled()
        temperature = None
        if guidance.active:
            if self.class_embed is not None:
                conditional = labels if labels is not None else z.new_full((batch,), -1, dtype=torch.long)
                labels = torch.cat([conditional, torch.full_like(conditional, -1)])
            temperature = torch.cat([z.new_ones(batch), z.new_full((batch,), guidance.attn_temp)])
        class_embedding = self._class_embedding(labels)
        pos_embed = self.permute(self.pos_embed, dim=0)

        def affine(x: Tensor, position: int, cache: KVCache | None) -> tuple[Tensor, Tensor]:
            """Guided ``(a, b)`` of tokens ``position + 1 ..``, predicted from the tokens ``position ..`` in ``x``."""
            inputs = torch.cat([x, x]) if guidance.active else x
            a, b = self._split(self._predict(inputs, class_embedding, temperature, pos_embed, cache, position))
            if guidance.active:
                steps = torch.arange(position, position + x.shape[1], device=z.device)[:, None]
                a, b = guidance.combine((a[:batch], b[:batch]), (a[batch:], b[batch:]), steps, num_tokens)
            return a, b

        z = self.permute(z)
        if sampler == "compiled":
            # Plain tensors of fixed shapes, so that every block and every call shares one graph (pos_embed is the
            # parameter itself in an unflipped block).
            cache, pos_embed = self._static_cache(z, 2 * batch if guidance.active else batch), pos_embed.detach()
            positions = torch.arange(num_tokens, device=z.device)[:, None]
            decode_step, weights = compiled_decode_step(), guidance.weight_at(positions, num_tokens)
        else:
            cache = KVCache(len(self.attn_blocks), num_tokens) if kv_cache else None
            decode_step, positions = TarFlowBlock._decode_step, range(num_tokens)
            weights = [guidance.weight_at(i, num_tokens) for i in positions]
        guide_what = guidance.guide_what if guidance.active else ""
        x, log_scales, settled = z, torch.zeros_like(z), 1
        self.last_iterations = 0
        if sampler == "jacobi":
            limit = num_tokens - 1 if max_iterations is None else min(max_iterations, num_tokens - 1)
            while settled < num_tokens and self.last_iterations < limit:
                # Tokens before `settled` are final, so the keys of positions before `settled - 1` are in the cache.
                start = settled - 1 if cache is not None else 0
                a, b = affine(x[:, start:-1], start, cache)
                a, b = a[:, settled - 1 - start:], b[:, settled - 1 - start:]
                update = z[:, settled:] * torch.exp(a) + b
                moved = ((update - x[:, settled:]).abs().flatten(2).amax(dim=(0, 2)) > tolerance).nonzero()
                x = torch.cat([x[:, :settled], update], dim=1)
                log_scales = torch.cat([log_scales[:, :settled], a], dim=1)
                self.last_iterations += 1
                # The first token that moved was computed from a prefix that did not: it is final too.
                settled = num_tokens if moved.numel() == 0 else settled + int(moved[0]) + 1
        tokens, scales = list(x[:, :settled].unbind(1)), list(log_scales[:, :settled].unbind(1))
        for i in range(settled - 1, num_tokens - 1):
            if cache is not None:
                token, a = decode_step(self, tokens[i].contiguous(), z[:, i + 1], positions[i], cache,
                                       class_embedding, temperature, pos_embed, guide_what, weights[i])
            else:
                a, b = (p[:, -1] for p in affine(torch.stack(tokens, dim=1), 0, None))
                token = z[:, i + 1] * torch.exp(a) + b
            tokens.append(token)
            scales.append(a)
        x, log_scales = torch.stack(tokens, dim=1), torch.stack(scales, dim=1)
        return self.permute(x), log_scales.sum(dim=(1, 2))

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
        return at_least_float32(self.proj_out(h))

    def _decode_step(self, x: Tensor, z_next: Tensor, position: int | Tensor, cache: StepCache,
                     class_embedding: Tensor | None, temperature: Tensor | None, pos_embed: Tensor, guide_what: str,
                     weight: float | Tensor) -> tuple[Tensor, Tensor]:
        """One step of sequential decoding: token ``position + 1`` (``x_next = z_next exp(a) + b``) and its guided
        log-scale ``a``, from token ``position`` (``x``, ``(batch, D)``) and the cached ones before it.

        With guidance (``guide_what`` not empty) the conditional and unconditional passes run on a doubled batch and
        are combined by :func:`~nfkit_tarflow.guidance.guide` at ``weight``; the compiled step
        (:func:`compiled_decode_step`) gets the weight and the position as tensors, so that neither is a constant of
        its graph."""
        batch = x.shape[0]
        inputs = torch.cat([x, x]) if guide_what else x
        a, b = self._split(self._predict_step(inputs, class_embedding, temperature, pos_embed, cache, position))
        if guide_what:
            a, b = guide((a[:batch], b[:batch]), (a[batch:], b[batch:]), weight, guide_what)
        return z_next * torch.exp(a) + b, a

    def _static_cache(self, z: Tensor, batch: int) -> list[StaticLayerKVCache]:
        """Zeroed full-length caches for the compiled step, in the dtype the attention layers compute in (autocast's,
        where it is on)."""
        attention = self.attn_blocks[0].attention
        device = z.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.proj_in.weight.dtype
        return [StaticLayerKVCache(self.num_tokens, (batch, attention.num_heads, attention.head_dim), dtype, z.device)
                for _ in self.attn_blocks]

    def _predict_step(self, x: Tensor, class_embedding: Tensor | None, temperature: Tensor | None,
                      pos_embed: Tensor, cache: StepCache, position: int | Tensor) -> Tensor:
        """:meth:`_predict` of the one token ``x`` (``(batch, D)``) at ``position``, with the cache holding the tokens
        before it: the step of sequential decoding, on ``(batch, channels)`` tensors (see
        :meth:`~nfkit_tarflow.transformer.AttentionBlock.step`)."""
        h = F.linear(x, self.proj_in.weight, self.proj_in.bias) + pos_embed[position]
        if class_embedding is not None:
            h = h + class_embedding.reshape(-1, h.shape[-1])
        for index, layer in enumerate(self.attn_blocks):
            h = layer.step(h, temperature, cache[index], position)
        return at_least_float32(F.linear(h, self.proj_out.weight, self.proj_out.bias))

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
        check_event_shape("TarFlowBlock", x, (self.num_tokens, self.token_dim), "tokens")

    def _labels(self, context: Tensor | None, batch: int) -> Tensor | None:
        """Validated class labels, or ``None`` for an unconditional block (which ignores ``context``)."""
        if self.class_embed is None or context is None:
            return None
        return check_class_labels("TarFlowBlock", context, self.num_classes, batch, allow_missing=True)


@functools.cache
def compiled_decode_step() -> Callable[..., tuple[Tensor, Tensor]]:
    """``TarFlowBlock._decode_step`` through :func:`torch.compile` (``dynamic=False``), made once per process and
    shared by every block: the static cache and the position and weight tensors keep its inputs' shapes fixed over a
    block's ``T - 1`` steps, so it compiles once per model shape, batch and guided parts (``guide_what``), and the
    first call of each pays that. Past ``torch._dynamo.config.recompile_limit`` such variants in one process,
    PyTorch warns and runs the step uncompiled."""
    return torch.compile(TarFlowBlock._decode_step, dynamic=False)
