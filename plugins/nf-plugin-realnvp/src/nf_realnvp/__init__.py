"""Real NVP as an nf plugin, built only from nf-core's public API."""

from nf_realnvp.model import RealNVPConfig, build_realnvp

__all__ = ["RealNVPConfig", "build_realnvp"]
