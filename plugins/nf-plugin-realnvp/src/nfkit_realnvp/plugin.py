"""The nf plugin: registers ``realnvp``."""

from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl
from nfkit_realnvp.model import PRESETS, RealNVPConfig, build_realnvp


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(ArchitectureSpec(
        "realnvp", RealNVPConfig, build_realnvp, "Real NVP (Dinh et al. 2017), an example outsider plugin",
        presets=PRESETS))
