"""The nf plugin of nf-arch-tarflow: registers its architectures."""

from nf_core.plugins import hookimpl


@hookimpl
def nf_register_architectures(registry) -> None:
    pass
