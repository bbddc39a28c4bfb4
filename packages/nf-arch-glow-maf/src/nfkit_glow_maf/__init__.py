"""nfkit-glow-maf: Glow and MAF for nf.

Build them directly (``build_glow(GlowConfig(...), DataInfo(shape))``) or through the registry
(``nf train --arch glow`` / ``--arch maf``).
"""

from nfkit_glow_maf.glow import GLOW_PRESETS, GlowConfig, build_glow, glow_step
from nfkit_glow_maf.glow_nets import GlowConditioner, GlowConv2d, LearnedTopPrior, ZeroConv2d
from nfkit_glow_maf.made import MADE, MaskedLinear
from nfkit_glow_maf.maf import MAF_PRESETS, Flatten, MAFConfig, MaskedAutoregressiveTransform, build_maf

__all__ = ["GLOW_PRESETS", "MADE", "MAF_PRESETS", "Flatten", "GlowConditioner", "GlowConfig", "GlowConv2d",
           "LearnedTopPrior", "MAFConfig", "MaskedAutoregressiveTransform", "MaskedLinear", "ZeroConv2d", "build_glow",
           "build_maf", "glow_step"]
