"""Real NVP as an nf plugin, built only from nfkit-core's public API."""

from nfkit_realnvp.model import RealNVPConfig, build_realnvp

__all__ = ["RealNVPConfig", "build_realnvp"]
