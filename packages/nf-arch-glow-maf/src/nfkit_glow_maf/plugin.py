"""The nf plugin of nfkit-glow-maf: registers the ``glow`` and ``maf`` architectures."""

from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl
from nfkit_glow_maf import glow, maf


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(ArchitectureSpec(
        "glow", glow.GlowConfig, glow.build_glow,
        "Glow (Kingma & Dhariwal 2018): multi-scale ActNorm / 1x1 conv / affine coupling flow for images",
        glow.PRESETS))
    architectures.add(ArchitectureSpec(
        "maf", maf.MAFConfig, maf.build_maf,
        "MAF (Papamakarios et al. 2017): stacked Gaussian MADEs with batch norm, for vectors or flattened images",
        maf.PRESETS))
