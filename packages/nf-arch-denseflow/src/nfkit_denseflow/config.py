"""The options of a DenseFlow model and the named presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfkit_denseflow.attention import ATTENTION_MODES
from nfkit_denseflow.dequantization import DEQUANTIZATIONS

__all__ = ["DenseFlowConfig", "PRESETS", "DENSEFLOW_74_10"]


@dataclass
class DenseFlowConfig:
    """A DenseFlow-L-k: ``L`` glow-like modules in total, growth rate ``k`` (Grcić et al. 2021, section 4).

    Attributes:
        units_per_block: DenseFlow units in each block (the official ``block_config``); a squeeze and a factor-out
            of half of the channels separate consecutive blocks.
        modules_per_unit: glow-like modules in each unit of each block (the official ``layers_config``).
        mid_channels: width of the intra-unit coupling networks in each block (the official ``layer_mid_chnls``).
        growth_rate: noise channels appended by each cross-unit coupling.
        dense_depth: dense layers per coupling network (7 in the paper).
        dense_growth: feature maps added per dense layer (64 in the paper).
        num_landmarks: landmarks of the Nyström attention (4 in the paper).
        attention: ``"paper"`` (tokens are pixels, softmax over keys) or ``"official"`` (the arithmetic that the
            official weights need); see :mod:`nfkit_denseflow.attention`.
        dequantization: ``"variational"`` (Flow++-style learned ``q(u | x)``, the paper's) or ``"uniform"``.
        dequantization_steps: coupling steps of the variational dequantizer.
        dequantization_context_channels: features of ``x`` that condition the dequantizer.
        dequantization_mid_channels: width of the dequantizer's coupling and context networks.
        dequantization_depth: dense layers of each dequantizer coupling network.
        dequantization_growth: feature maps added per dense layer in the dequantizer couplings.
        dequantization_context_depth: dense layers of each of the two dense blocks of the dequantizer's context
            network.
        dequantization_context_growth: feature maps added per dense layer in the context network.
        lu: LU-parametrised 1x1 convolutions (``False``: a plain weight matrix with an ``O(C^3)`` log-determinant,
            as the official implementation).
        checkpointing: recompute the dense blocks in the backward pass (less memory, more time).
        eval_samples: ``K``, the importance samples of the importance-weighted evaluation.
        eval_sample_batch_size: importance samples evaluated in one forward pass.
    """

    units_per_block: tuple[int, ...] = (6, 4, 1)
    modules_per_unit: tuple[int, ...] = (5, 6, 20)
    mid_channels: tuple[int, ...] = (48, 48, 48)
    growth_rate: int = 10
    dense_depth: int = 7
    dense_growth: int = 64
    num_landmarks: int = 4
    attention: str = "paper"
    dequantization: str = "variational"
    dequantization_steps: int = 4
    dequantization_context_channels: int = 64
    dequantization_mid_channels: int = 64
    dequantization_depth: int = 4
    dequantization_growth: int = 64
    dequantization_context_depth: int = 4
    dequantization_context_growth: int = 16
    lu: bool = True
    checkpointing: bool = False
    eval_samples: int = 32
    eval_sample_batch_size: int = 8

    def __post_init__(self) -> None:
        self.units_per_block = tuple(int(n) for n in self.units_per_block)
        self.modules_per_unit = tuple(int(n) for n in self.modules_per_unit)
        self.mid_channels = tuple(int(n) for n in self.mid_channels)
        blocks = len(self.units_per_block)
        if blocks == 0 or len(self.modules_per_unit) != blocks or len(self.mid_channels) != blocks:
            raise ValueError(f"units_per_block, modules_per_unit and mid_channels need one entry per block, got "
                             f"{self.units_per_block}, {self.modules_per_unit} and {self.mid_channels}")
        if min(self.units_per_block) < 1 or min(self.modules_per_unit) < 1:
            raise ValueError(f"every block needs at least one unit of at least one module, got units_per_block="
                             f"{self.units_per_block}, modules_per_unit={self.modules_per_unit}")
        if self.growth_rate < 1:
            raise ValueError(f"growth_rate must be at least 1, got {self.growth_rate}")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        if self.dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, got {self.dequantization!r}")
        if self.eval_samples < 1 or self.eval_sample_batch_size < 1:
            raise ValueError(f"eval_samples and eval_sample_batch_size must be positive, got {self.eval_samples} "
                             f"and {self.eval_sample_batch_size}")

    @property
    def num_modules(self) -> int:
        """``L``: the glow-like modules of the whole flow."""
        return sum(u * m for u, m in zip(self.units_per_block, self.modules_per_unit))


# DenseFlow-74-10, the paper's main model (official README: --block_conf 6 4 1 --layers_conf 5 6 20
# --layer_mid_chnls 48 48 48 --growth_rate 10), for CIFAR-10, ImageNet 32/64 and CelebA. Plain 1x1 convolutions and
# the variational dequantizer, as the official code: 130,656,534 parameters on 3x32x32 images, where the official
# model has 130,647,294 (nf's prior is per element, the official one per channel).
DENSEFLOW_74_10: dict[str, Any] = dict(units_per_block=(6, 4, 1), modules_per_unit=(5, 6, 20),
                                       mid_channels=(48, 48, 48), growth_rate=10, lu=False)

PRESETS: dict[str, dict[str, Any]] = {
    "denseflow-74-10": DENSEFLOW_74_10,
    # What ``nf train --arch denseflow --data cifar10`` starts from: the paper's CIFAR-10 model, the same preset.
    "cifar10": DENSEFLOW_74_10,
    # DenseFlow-45-6, the ablation model of the paper (Grcic et al. 2021, ablations, Table 4): "The first
    # DenseFlow block has 5 DenseFlow units with 3 glow-like modules per unit. The second DenseFlow block has 3 units
    # with 5 modules, while the final block has 15 modules in a single unit. We use growth rate of 6."
    # 5*3 + 3*5 + 1*15 = 45 modules. 75,025,562 parameters on 3x32x32 images, where the official code with these
    # arguments builds 75,020,522 (the per-element prior again).
    "denseflow-45-6": dict(units_per_block=(5, 3, 1), modules_per_unit=(3, 5, 15), mid_channels=(48, 48, 48),
                           growth_rate=6, lu=False),
    # Small models for the 1x8x8 digits (17 levels): 4x4 and 2x2 pixels after the squeezes. "digits" is what
    # ``nf train --arch denseflow --data digits`` starts from.
    "digits": dict(units_per_block=(2, 2), modules_per_unit=(2, 2), mid_channels=(16, 16), growth_rate=2,
                         dense_depth=3, dense_growth=16, dequantization_steps=2,
                         dequantization_context_channels=16, dequantization_mid_channels=16,
                         dequantization_depth=2, dequantization_growth=16, eval_samples=16),
    "digits-tiny": dict(units_per_block=(2, 1), modules_per_unit=(1, 1), mid_channels=(8, 8), growth_rate=2,
                        dense_depth=2, dense_growth=8, dequantization_steps=1, dequantization_context_channels=8,
                        dequantization_mid_channels=8, dequantization_depth=1, dequantization_growth=8,
                        eval_samples=8, eval_sample_batch_size=4),
}

#: Where each preset comes from (the API reference and the architectures guide list them).
PRESET_SOURCES: dict[str, str] = {
    "denseflow-74-10": "Grcić et al. 2021, DenseFlow-74-10, the paper's main model (matejgrcic/DenseFlow README "
                       "arguments)",
    "cifar10": "the same as ``denseflow-74-10``, the paper's CIFAR-10 model",
    "denseflow-45-6": "Grcić et al. 2021, DenseFlow-45-6, the ablation model (ablations, Table 4)",
    "digits": "nf: a CPU-sized model of the 8x8 digits",
    "digits-tiny": "nf: the smallest digits model, for tests and smoke runs",
}
