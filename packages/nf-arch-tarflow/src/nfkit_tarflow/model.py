"""TarFlow as an nf :class:`~nfkit_core.Flow`: patchify, ``num_blocks`` autoregressive Transformer blocks, a Gaussian.

Zhai et al. 2025, "Normalizing Flows are Capable Generative Models". Training maximises ``log p(x + sigma eps)`` of
noise-augmented images (the trainer adds the noise, ``config.noise_std``); sampling inverts the blocks token by token,
optionally with guidance, and optionally removes the noise with one score-based denoising step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit_core import Flow, Sequential, StandardNormal
from nfkit_core import noise as noise_lib
from nfkit_core.flow import Noise
from nfkit_core.specs import DataInfo
from nfkit_tarflow.block import TarFlowBlock
from nfkit_tarflow.config import TarFlowConfig
from nfkit_tarflow.guidance import Guidance
from nfkit_tarflow.patchify import Patchify
from nfkit_tarflow.prior import LearnedVarianceNormal

__all__ = ["TarFlow", "build_tarflow"]


class TarFlow(Flow):
    """A TarFlow model of ``(C, H, W)`` images.

    The transform is a :class:`nfkit_core.Sequential` of ``"patchify"`` and ``"block0" .. "block{N-1}"`` (the names of
    :meth:`intermediates`); latents are token sequences ``(batch, T, D)``. The prior is ``N(0, I)`` in the affine
    variant and a zero-mean Gaussian with learned variance in the volume-preserving one.

    Args:
        config: the model options.
        data_shape: ``(C, H, W)`` of one image.
        num_classes: number of class labels (0: unconditional).
    """

    def __init__(self, config: TarFlowConfig, data_shape: tuple[int, int, int], num_classes: int = 0) -> None:
        data_shape = tuple(int(d) for d in data_shape)
        if len(data_shape) != 3:
            raise ValueError(f"TarFlow models images of shape (C, H, W); got data of shape {data_shape}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        patchify = Patchify(config.patch_size, data_shape)
        num_tokens, token_dim = patchify.num_tokens, patchify.token_dim
        blocks = {
            f"block{i}": TarFlowBlock(token_dim, num_tokens, config.channels, config.layers_per_block,
                                      head_dim=config.head_dim, expansion=config.expansion, nvp=config.nvp,
                                      num_classes=num_classes, flip=i % 2 == 1,
                                      attention_backend=config.attention_backend)
            for i in range(config.num_blocks)
        }
        event_shape = (num_tokens, token_dim)
        prior = StandardNormal(event_shape) if config.nvp else LearnedVarianceNormal(event_shape)
        super().__init__(Sequential({"patchify": patchify, **blocks}), prior, data_shape=data_shape)
        self.config = config
        self.num_classes = num_classes

    @property
    def noise_std(self) -> float:
        """Standard deviation of the training noise augmentation, the noise that :meth:`denoise` removes."""
        return self.config.noise_std

    @property
    def patchify(self) -> Patchify:
        """The image-to-tokens step."""
        return self.transform["patchify"]

    @property
    def blocks(self) -> list[TarFlowBlock]:
        """The flow blocks in forward (data -> latent) order."""
        return [step for step in self.transform if isinstance(step, TarFlowBlock)]

    @property
    def matchable_intermediates(self) -> list[list[str]]:
        """What knowledge distillation (nfkit-distill) may match: the output of every block, as one level."""
        return [[f"block{i}" for i in range(self.config.num_blocks)]]

    def set_attention_backend(self, name: str) -> None:
        """Use the :mod:`nfkit_core.attention` backend ``name`` (``"auto"``, ``"sdpa"``, ``"flash"``, ...)."""
        for block in self.blocks:
            block.set_attention_backend(name)

    def latent_to_data(self, z: Tensor, context: Tensor | None = None, *, noise: Noise = None,
                       temperature: float = 1.0, guidance: float = 0.0, guide_what: str = "ab",
                       attn_temp: float = 1.0, annealed_guidance: bool = False,
                       kv_cache: bool | None = None) -> Tensor:
        """Invert the blocks from latent tokens ``z`` ``(batch, T, D)`` to images, optionally guided.

        Args:
            z: latent tokens.
            context: class labels ``(batch,)`` of a conditional model (``None`` or ``-1``: no label).
            noise, temperature: accepted for the :class:`nfkit_core.Flow` signature; the inverse draws no noise.
            guidance: guidance weight (0: none); see :mod:`nfkit_tarflow.guidance`.
            guide_what: guide the log-scales ``"a"``, the shifts ``"b"`` or both ``"ab"``.
            attn_temp: attention temperature of the unconditional pass.
            annealed_guidance: grow the weight linearly over the tokens.
            kv_cache: use the preallocated key/value cache (default: unless gradients are enabled) or the naive
                sampler that recomputes the prefix at every step.
        """
        plan = Guidance(guidance, guide_what, attn_temp, annealed_guidance)
        with noise_lib.use(noise, temperature=temperature):
            x = z
            for block in reversed(self.blocks):
                x, _ = block.inverse(x, context, plan, kv_cache)
            return self.patchify.inverse(x, context)[0]

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, *, guidance: float = 0.0, guide_what: str = "ab",
               attn_temp: float = 1.0, annealed_guidance: bool = False, denoise: bool = False,
               kv_cache: bool = True) -> Tensor:
        """Draw ``n`` images.

        Args:
            n: number of samples.
            context: class labels ``(n,)`` of a conditional model (``None`` or ``-1``: no label).
            temperature: scales the prior draw.
            generator: makes the draw reproducible.
            guidance, guide_what, attn_temp, annealed_guidance: guidance as in :meth:`latent_to_data` (the argument
                names of the official ``reverse``).
            denoise: finish with one score-based denoising step (:meth:`denoise`).
            kv_cache: sample with the preallocated key/value cache (``False``: naive prefix recomputation).
        """
        with noise_lib.use(generator, temperature=temperature):
            z = self.prior.sample(n, context)
        x = self.latent_to_data(z, context, guidance=guidance, guide_what=guide_what, attn_temp=attn_temp,
                                annealed_guidance=annealed_guidance, kv_cache=kv_cache)
        return self.denoise(x, context) if denoise else x

    def score(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``grad_x log p(x | context)`` by autograd through the flow, in fp32."""
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            x = x.detach().requires_grad_(True)
            log_prob = self.log_prob(x, context)
            return torch.autograd.grad(log_prob.sum(), x)[0]

    def denoise(self, x: Tensor, context: Tensor | None = None, noise_std: float | None = None) -> Tensor:
        """One step of score-based denoising: ``x + sigma^2 grad_x log p(x)`` (Tweedie's formula).

        A model of ``y = x + sigma eps`` gives ``E[x | y] = y + sigma^2 grad_y log p(y)`` (Tweedie; Efron 2011).

        The official code takes the step as ``x - step_size * grad(loss)`` with
        ``loss = mean_b (0.5 |z_b|^2 - log|det|_b) / N`` over a batch of ``B`` images of ``N`` dimensions and
        ``step_size = B N sigma^2``; since ``grad_{x_b} loss = -grad log p(x_b) / (B N)`` that is the same step.

        Args:
            x: noisy images (e.g. fresh samples).
            context: their class labels, if the model is conditional.
            noise_std: ``sigma``; by default the training noise ``config.noise_std``.
        """
        sigma = self.noise_std if noise_std is None else float(noise_std)
        return (x + sigma**2 * self.score(x, context)).detach()


def build_tarflow(config: TarFlowConfig, data: DataInfo) -> TarFlow:
    """The ``build`` of the ``tarflow`` architecture: a TarFlow for ``data``, class-conditional when
    ``data.num_classes > 0``."""
    if len(data.shape) != 3:
        raise ValueError(f"TarFlow models images of shape (C, H, W); the data has shape {tuple(data.shape)}")
    return TarFlow(config, tuple(data.shape), data.num_classes)
