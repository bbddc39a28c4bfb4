"""The options of a TarFlow model and the configurations of the paper.

Zhai et al. 2025, "Normalizing Flows are Capable Generative Models", give per data set the patch size, the
model width, the number of flow blocks and of Transformer layers per block, and the standard deviation of the Gaussian
noise added to the training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TarFlowConfig", "PRESETS", "PAPER_TRAINING", "PRESET_TRAINING"]


@dataclass
class TarFlowConfig:
    """Options of :class:`nfkit_tarflow.TarFlow`.

    Attributes:
        patch_size: side ``P`` of the square patches; an image of ``C x H x W`` becomes ``T = HW / P^2`` tokens of
            dimension ``D = C P^2``.
        channels: width of every Transformer.
        num_blocks: number of autoregressive flow blocks (the token order flips between consecutive blocks).
        layers_per_block: Transformer layers inside each flow block.
        head_dim: channels per attention head (``channels`` must be a multiple of it).
        expansion: hidden width of the MLPs as a multiple of ``channels``.
        nvp: ``True`` for the affine (non-volume-preserving) flow predicting a shift and a log-scale per token;
            ``False`` for the volume-preserving flow (shift only) with a learned prior variance.
        noise_std: standard deviation ``sigma`` of the Gaussian noise that the trainer adds to the training data
            (scaled to ``[-1, 1]``); also the noise level that score-based denoising removes after sampling.
        attention_backend: ``"auto"`` (flash-attn when it can run, else PyTorch SDPA), ``"sdpa"``, ``"flash"`` or
            ``"reference"``; any backend registered through ``nf_register_attention_backends`` works.
    """

    patch_size: int = 2
    channels: int = 256
    num_blocks: int = 4
    layers_per_block: int = 4
    head_dim: int = 64
    expansion: int = 4
    nvp: bool = True
    noise_std: float = 0.05
    attention_backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("patch_size", "channels", "num_blocks", "layers_per_block", "head_dim", "expansion"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TarFlowConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.channels % self.head_dim != 0:
            raise ValueError(f"TarFlowConfig.channels ({self.channels}) must be a multiple of head_dim "
                             f"({self.head_dim})")
        if self.noise_std < 0:
            raise ValueError(f"TarFlowConfig.noise_std must be >= 0, got {self.noise_std}")


PRESETS: dict[str, dict[str, Any]] = {
    # The configurations of the paper and of the official checkpoints: P-channels-blocks-layers, noise sigma.
    # Parameters (3 colour channels; the ImageNet-64 model is unconditional, ImageNet-128 has 1000 classes, AFHQ 3):
    # 460,142,784, 823,927,552 and 463,481,856, as the official transformer_flow.Model builds them.
    "imagenet64": dict(patch_size=2, channels=768, num_blocks=8, layers_per_block=8, noise_std=0.05),
    "imagenet128": dict(patch_size=4, channels=1024, num_blocks=8, layers_per_block=8, noise_std=0.15),
    "afhq256": dict(patch_size=8, channels=768, num_blocks=8, layers_per_block=8, noise_std=0.07),
    # 8x8 digits with 17 levels (spacing 2/16 in [-1, 1]): 16 tokens of 4 values with patch 2; small enough for a CPU.
    "digits": dict(patch_size=2, channels=64, num_blocks=4, layers_per_block=2, head_dim=32, noise_std=0.1),
    "digits-tiny": dict(patch_size=2, channels=32, num_blocks=2, layers_per_block=1, head_dim=16, noise_std=0.1),
}

#: Where each preset comes from (the API reference and the architectures guide list them).
PRESET_SOURCES: dict[str, str] = {
    "imagenet64": "Zhai et al. 2025, the unconditional ImageNet 64x64 model (apple/ml-tarflow checkpoint)",
    "imagenet128": "Zhai et al. 2025, the class-conditional ImageNet 128x128 model (apple/ml-tarflow checkpoint)",
    "afhq256": "Zhai et al. 2025, the class-conditional AFHQ 256x256 model (apple/ml-tarflow checkpoint)",
    "digits": "nf: a CPU-sized model of the 8x8 digits",
    "digits-tiny": "nf: the smallest digits model, for tests and smoke runs",
}

# The paper's training recipe (section 4, and the official train.py): AdamW with betas (0.9, 0.95) and weight decay
# 1e-4; the learning rate rises linearly from 1e-6 to 1e-4 over the first epoch, then follows a cosine down to 1e-6.
PAPER_TRAINING: dict[str, Any] = dict(lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4, warmup_epochs=1.0,
                                      warmup_start_ratio=0.01, min_lr_ratio=0.01)

# The training defaults that ``nf train --preset NAME`` starts from (the registry's ``train_defaults``).
PRESET_TRAINING: dict[str, dict[str, Any]] = {name: PAPER_TRAINING for name in ("imagenet64", "imagenet128", "afhq256")}
