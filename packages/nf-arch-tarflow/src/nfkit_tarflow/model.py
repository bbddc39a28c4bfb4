"""TarFlow as an nf :class:`~nfkit_core.Flow`: patchify, ``num_blocks`` autoregressive Transformer blocks, a Gaussian.

Zhai et al. 2025, "Normalizing Flows are Capable Generative Models". Training maximises ``log p(x + sigma eps)`` of
noise-augmented images (the flow declares ``noise_std = config.noise_std`` and the trainer adds the noise); sampling
inverts the blocks token by token, optionally with guidance (a sampling option of the blocks), and optionally removes
the noise with one score-based denoising step (``sample(..., denoise=True)``).
"""

from __future__ import annotations

from nfkit_core import NormalizingFlow, Sequential, StandardNormal
from nfkit_core.specs import DataInfo
from nfkit_tarflow.block import TarFlowBlock
from nfkit_tarflow.config import TarFlowConfig
from nfkit_tarflow.patchify import Patchify
from nfkit_tarflow.prior import LearnedVarianceNormal

__all__ = ["TarFlow", "build_tarflow"]


class TarFlow(NormalizingFlow):
    """A TarFlow model of ``(C, H, W)`` images: a :class:`nfkit_core.NormalizingFlow` assembled from the config.

    The transform is a :class:`nfkit_core.Sequential` of ``"patchify"`` and ``"block0" .. "block{N-1}"`` (the names of
    :meth:`~nfkit_core.NormalizingFlow.intermediates`); latents are token sequences ``(batch, T, D)``. The prior is
    ``N(0, I)`` in the affine variant and a zero-mean Gaussian with learned variance in the volume-preserving one.

    Sampling takes the blocks' options, e.g. ``flow.sample(16, labels, guidance=2.0, attn_temp=1.0, denoise=True)``
    (see :class:`~nfkit_tarflow.TarFlowBlock`); ``kv_cache=False`` samples with the naive prefix recomputation.

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
        super().__init__(Sequential({"patchify": patchify, **blocks}), prior, data_shape=data_shape,
                         noise_std=config.noise_std)
        self.config = config
        self.num_classes = num_classes

    @property
    def patchify(self) -> Patchify:
        """The image-to-tokens step."""
        return self.transform["patchify"]

    @property
    def blocks(self) -> list[TarFlowBlock]:
        """The flow blocks in forward (data -> latent) order."""
        return [step for step in self.transform if isinstance(step, TarFlowBlock)]

    @property
    def last_iterations(self) -> list[int]:
        """The Jacobi iterations of each block in the most recent inversion, in sampling order (0 for sequential)."""
        return [block.last_iterations for block in reversed(self.blocks)]

    @property
    def matchable_intermediates(self) -> list[list[str]]:
        """The intermediates that knowledge distillation (nfkit-distill) may match (the output of every block, as one
        level)."""
        return [[f"block{i}" for i in range(self.config.num_blocks)]]

    def set_attention_backend(self, name: str) -> None:
        """Use the :mod:`nfkit_core.attention` backend ``name`` (``"auto"``, ``"sdpa"``, ``"flash"``, ...)."""
        for block in self.blocks:
            block.set_attention_backend(name)


def build_tarflow(config: TarFlowConfig, data: DataInfo) -> TarFlow:
    """The ``build`` of the ``tarflow`` architecture: a TarFlow for ``data``, class-conditional when
    ``data.num_classes > 0``."""
    if len(data.shape) != 3:
        raise ValueError(f"TarFlow models images of shape (C, H, W); the data has shape {tuple(data.shape)}")
    return TarFlow(config, tuple(data.shape), data.num_classes)
