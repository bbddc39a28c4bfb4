"""TarFlow for nf: the autoregressive Transformer flow of Zhai et al. 2025, "Normalizing Flows are Capable Generative
Models", with noise augmentation, score-based denoising, guidance and KV-cached sampling.

Loads checkpoints of the official implementation (:func:`from_official_state_dict`) and registers the ``tarflow``
architecture with nf.
"""

from nf_tarflow.block import TarFlowBlock
from nf_tarflow.config import PRESETS, TarFlowConfig
from nf_tarflow.guidance import Guidance
from nf_tarflow.model import TarFlow, build_tarflow
from nf_tarflow.official import config_from_official, from_official_state_dict
from nf_tarflow.patchify import Patchify
from nf_tarflow.prior import LearnedVarianceNormal
from nf_tarflow.transformer import KVCache

__all__ = ["PRESETS", "Guidance", "KVCache", "LearnedVarianceNormal", "Patchify", "TarFlow", "TarFlowBlock",
           "TarFlowConfig", "build_tarflow", "config_from_official", "from_official_state_dict"]
