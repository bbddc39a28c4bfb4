"""The nf plugin of nf-arch-denseflow: registers its architectures."""

from nf_core.plugins import hookimpl


@hookimpl
def nf_register_architectures(registry) -> None:
    pass
