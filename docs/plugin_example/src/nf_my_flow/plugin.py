"""The nf plugin: registers the architecture ``my-flow``."""

from nf_my_flow.model import MyFlowConfig, build_my_flow
from nfkit_core.plugins import ArchitectureSpec, Registrar, hookimpl


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    architectures.add(ArchitectureSpec("my-flow", MyFlowConfig, build_my_flow, "couplings for vectors (example)",
                                       presets={"toy2d": {"couplings": 8, "hidden": 64}}))
