"""nfkit-denseflow: DenseFlow (Grcić, Grubišić and Šegvić, "Densely connected normalizing flows", NeurIPS 2021).

Build a model with :func:`build_denseflow` (or ``nf train --arch denseflow``), load the official weights with
:func:`from_official_state_dict`, evaluate both likelihood bounds with :meth:`DenseFlow.evaluate_bits_per_dim`.
"""

from nfkit_denseflow.attention import NystromAttention
from nfkit_denseflow.block import DenseFlowBlock, NoiseConditioner
from nfkit_denseflow.config import PRESETS, DenseFlowConfig
from nfkit_denseflow.coupling_net import DenseAttentionNet
from nfkit_denseflow.model import DenseFlow, build_denseflow
from nfkit_denseflow.official import convert_official_state_dict, from_official_state_dict

__all__ = ["PRESETS", "DenseAttentionNet", "DenseFlow", "DenseFlowBlock", "DenseFlowConfig", "NoiseConditioner",
           "NystromAttention", "build_denseflow", "convert_official_state_dict", "from_official_state_dict"]
