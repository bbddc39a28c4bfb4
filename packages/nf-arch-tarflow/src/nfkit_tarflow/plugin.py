"""The nf plugin of nfkit-tarflow: registers the ``tarflow`` architecture."""

from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl
from nfkit_tarflow.config import PRESET_TRAINING, PRESETS, TarFlowConfig
from nfkit_tarflow.model import build_tarflow


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(ArchitectureSpec(
        name="tarflow",
        config_class=TarFlowConfig,
        build=build_tarflow,
        description="TarFlow: autoregressive Transformer flow on image patches (Zhai et al. 2025)",
        presets=PRESETS,
        train_defaults=PRESET_TRAINING,
    ))
