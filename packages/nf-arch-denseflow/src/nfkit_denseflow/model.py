"""The DenseFlow model: dequantizer, squeeze, DenseFlow blocks separated by squeeze-and-drop, learned Gaussian prior.

    levels x --dequantize--> y in (-1/2, 1/2) --squeeze--> block_0 --squeeze, drop half--> block_1 ... --> z ~ N(mu, s)

The log-likelihood is a lower bound (SurVAE Flows): dequantization, the cross-unit noise and the dropped halves each
contribute a term. :meth:`DenseFlow.log_prob` is the single-sample bound used in training;
:func:`nfkit_core.importance_weighted_log_prob` the tighter estimate over ``K`` draws of all the noise used to report
results (Burda et al. 2016, eq. 8; the official ``eval_loglik.py --k K --kbs B``), and
:meth:`DenseFlow.evaluate_bits_per_dim` both from the same draws.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nfkit_core import DiagonalGaussian, NormalizingFlow, Sequential, bits_per_dim
from nfkit_core import noise as noise_lib
from nfkit_core.flow import log_prob_draws
from nfkit_core.layers import Split, Squeeze
from nfkit_core.specs import DataInfo
from nfkit_denseflow.block import DenseFlowBlock
from nfkit_denseflow.config import DenseFlowConfig
from nfkit_denseflow.dequantization import make_dequantizer

__all__ = ["DenseFlow", "build_denseflow"]


def _check_attention_sizes(config: DenseFlowConfig, height: int, width: int) -> None:
    for block in range(len(config.units_per_block)):
        pixels = (height >> (block + 1)) * (width >> (block + 1))
        if config.attention == "official" and pixels % config.num_landmarks:
            raise ValueError(f"official attention needs the {pixels} pixels of block {block} to be divisible by "
                             f"num_landmarks={config.num_landmarks}")
        if config.attention == "paper" and pixels > config.num_landmarks and pixels % config.num_landmarks:
            raise ValueError(f"Nyström attention needs the {pixels} pixels of block {block} to be divisible by "
                             f"num_landmarks={config.num_landmarks} (or at most num_landmarks)")


class DenseFlow(NormalizingFlow):
    """A DenseFlow for images of integer levels: a :class:`nfkit_core.NormalizingFlow` assembled from the config (see
    :class:`~nfkit_denseflow.DenseFlowConfig` for the options).

    DenseFlow is unconditional: a ``context`` is accepted and ignored, as by every layer of nf.

    Args:
        config: the architecture.
        data_shape: ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``2 ** len(config.units_per_block)``.
        num_bins: the number of levels of the data (256 for 8-bit images, 17 for the digits).
    """

    def __init__(self, config: DenseFlowConfig, data_shape: tuple[int, int, int], num_bins: int) -> None:
        if len(data_shape) != 3:
            raise ValueError(f"DenseFlow models images (C, H, W), got data of shape {tuple(data_shape)}")
        channels, height, width = (int(d) for d in data_shape)
        scale = 2 ** len(config.units_per_block)
        if height % scale or width % scale:
            raise ValueError(f"a DenseFlow with {len(config.units_per_block)} blocks halves the resolution "
                             f"{len(config.units_per_block)} times and needs H and W divisible by {scale}, "
                             f"got data of shape {tuple(data_shape)}")
        _check_attention_sizes(config, height, width)
        steps = {"squeeze": Squeeze()}
        channels, height, width = 4 * channels, height // 2, width // 2
        last = len(config.units_per_block) - 1
        for b, (units, modules, mid) in enumerate(zip(config.units_per_block, config.modules_per_unit,
                                                      config.mid_channels)):
            block = DenseFlowBlock(channels, units, modules, config.growth_rate, mid, config.dense_depth,
                                   config.dense_growth, config.num_landmarks, config.attention,
                                   config.checkpointing, config.lu)
            steps[f"block{b}"] = block
            channels = block.out_channels
            if b < last:
                steps[f"squeeze{b}"] = Squeeze()
                steps[f"split{b}"] = Split(2 * channels)
                channels, height, width = 2 * channels, height // 2, width // 2
        dequantizer = make_dequantizer(
            config.dequantization, tuple(data_shape), num_bins, config.dequantization_steps,
            config.dequantization_context_channels, config.dequantization_mid_channels,
            config.dequantization_depth, config.dequantization_growth, config.lu,
            config.dequantization_context_depth, config.dequantization_context_growth)
        super().__init__(Sequential(steps), DiagonalGaussian((channels, height, width)), dequantizer,
                         data_shape=tuple(data_shape))
        self.config = config
        self.num_bins = int(num_bins)

    @property
    def matchable_intermediates(self) -> list[list[str]]:
        """The intermediates that knowledge distillation (nfkit-distill) may match, one level per block (every unit's
        output; a block that is followed by a split ends at the split, its kept half)."""
        last = len(self.config.units_per_block) - 1
        return [[f"block{b}.units.{i}" for i in range(units - 1)] + [f"split{b}" if b < last else f"block{b}"]
                for b, units in enumerate(self.config.units_per_block)]

    @torch.no_grad()
    def evaluate_bits_per_dim(self, x: Tensor, context: Tensor | None = None, num_samples: int | None = None,
                              sample_batch_size: int | None = None, *,
                              noise: noise_lib.NoiseSource | torch.Generator | None = None) -> dict[str, Tensor]:
        """Both bounds in bits/dim from the same ``K`` draws, each of shape ``(batch,)``.

        Returns ``{"bound": ..., "importance_weighted": ...}``: the single-sample bound averaged over the draws (what
        training minimises) and the importance-weighted estimate (what papers report; the same as
        :func:`nfkit_core.importance_weighted_log_prob`). The second is never larger. ``num_samples`` and
        ``sample_batch_size`` default to ``config.eval_samples`` and ``config.eval_sample_batch_size``.

        Args:
            x: integer levels of shape ``(B, C, H, W)``.
            context: the conditioning, or ``None``.
            num_samples: the number of noise draws ``K``.
            sample_batch_size: draws evaluated in one forward pass.
            noise: seeds or replays the draws.
        """
        bounds = self._bounds(x, num_samples, sample_batch_size, noise)
        importance_weighted = torch.logsumexp(bounds, dim=0) - math.log(bounds.shape[0])
        return {"bound": bits_per_dim(bounds.mean(dim=0), self.num_dims),
                "importance_weighted": bits_per_dim(importance_weighted, self.num_dims)}

    def _num_samples(self, num_samples: int | None) -> int:
        num_samples = self.config.eval_samples if num_samples is None else int(num_samples)
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        return num_samples

    def _bounds(self, x: Tensor, num_samples: int | None, sample_batch_size: int | None,
                noise: noise_lib.NoiseSource | torch.Generator | None) -> Tensor:
        """``(K, batch)`` single-sample bounds for ``K`` independent draws of the noise."""
        self._check_input(x)
        chunk = self.config.eval_sample_batch_size if sample_batch_size is None else int(sample_batch_size)
        return log_prob_draws(self, x, None, self._num_samples(num_samples), chunk, noise=noise)


def build_denseflow(config: DenseFlowConfig, data: DataInfo) -> DenseFlow:
    """The registry's ``build``: a :class:`DenseFlow` for the data described by ``data``.

    Args:
        config: the DenseFlow options.
        data: quantized images: ``shape = (C, H, W)`` and ``num_bins``.

    Raises:
        ValueError: data without ``num_bins`` or not images.
    """
    if data.num_bins is None:
        raise ValueError("DenseFlow models quantized images and needs DataInfo.num_bins (e.g. 256 for 8-bit images)")
    if len(data.shape) != 3:
        raise ValueError(f"DenseFlow models images (C, H, W), got data of shape {tuple(data.shape)}")
    return DenseFlow(config, tuple(data.shape), data.num_bins)
