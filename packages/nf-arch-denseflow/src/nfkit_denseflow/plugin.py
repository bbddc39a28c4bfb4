"""The nf plugin of nfkit-denseflow: registers the ``denseflow`` architecture."""

from __future__ import annotations

from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl
from nfkit_denseflow.config import PRESETS, DenseFlowConfig
from nfkit_denseflow.model import build_denseflow


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(ArchitectureSpec(
        name="denseflow",
        config_class=DenseFlowConfig,
        build=build_denseflow,
        description="DenseFlow (Grcić et al. 2021): cross-unit noise augmentation, dense + Nyström-attention "
                    "couplings, variational dequantization",
        presets=PRESETS,
    ))
