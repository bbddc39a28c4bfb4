"""The nf plugin of nfkit-glow-maf: registers the ``glow`` and ``maf`` architectures."""

from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl
from nfkit_glow_maf.glow import GLOW_PRESETS, GlowConfig, build_glow
from nfkit_glow_maf.maf import MAF_PRESETS, MAFConfig, build_maf


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(ArchitectureSpec(
        "glow", GlowConfig, build_glow,
        "Glow (Kingma & Dhariwal 2018): multi-scale ActNorm / 1x1 conv / affine coupling flow for images",
        GLOW_PRESETS))
    architectures.add(ArchitectureSpec(
        "maf", MAFConfig, build_maf,
        "MAF (Papamakarios et al. 2017): stacked Gaussian MADEs with batch norm, for vectors or flattened images",
        MAF_PRESETS))
