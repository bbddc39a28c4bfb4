"""TarFlow for nf: the autoregressive Transformer flow of Zhai et al. 2025, "Normalizing Flows are Capable Generative
Models", with noise augmentation, score-based denoising, guidance and KV-cached sampling.

Loads checkpoints of the official implementation (:func:`from_official_state_dict`) and registers the ``tarflow``
architecture with nf.
"""

from nfkit_tarflow.block import TarFlowBlock
from nfkit_tarflow.config import PRESETS, TarFlowConfig
from nfkit_tarflow.guidance import Guidance
from nfkit_tarflow.model import TarFlow, build_tarflow
from nfkit_tarflow.official import config_from_official, from_official_state_dict
from nfkit_tarflow.patchify import Patchify
from nfkit_tarflow.prior import LearnedVarianceNormal
from nfkit_tarflow.transformer import KVCache

__all__ = ["PRESETS", "Guidance", "KVCache", "LearnedVarianceNormal", "Patchify", "TarFlow", "TarFlowBlock",
           "TarFlowConfig", "build_tarflow", "config_from_official", "from_official_state_dict"]
