"""nfkit-glow-maf: Glow and MAF for nf.

Build them directly (``build_glow(GlowConfig(...), DataInfo(shape))``) or through the registry
(``nf train --arch glow`` / ``--arch maf``). The named configurations are ``nfkit_glow_maf.glow.PRESETS`` and
``nfkit_glow_maf.maf.PRESETS``.
"""

from nfkit_glow_maf.glow import GlowConfig, build_glow, glow_step
from nfkit_glow_maf.glow_nets import GlowConditioner, GlowConv2d, LearnedTopPrior, ZeroConv2d
from nfkit_glow_maf.made import MADE, MaskedLinear
from nfkit_glow_maf.maf import Flatten, MAFConfig, MaskedAutoregressiveTransform, build_maf

__all__ = ["MADE", "Flatten", "GlowConditioner", "GlowConfig", "GlowConv2d",
           "LearnedTopPrior", "MAFConfig", "MaskedAutoregressiveTransform", "MaskedLinear", "ZeroConv2d", "build_glow",
           "build_maf", "glow_step"]
