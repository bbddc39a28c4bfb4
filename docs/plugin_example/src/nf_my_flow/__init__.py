"""My flow: a stack of affine couplings for vectors, as an nf plugin."""

from nf_my_flow.coupling import HalfAffineCoupling
from nf_my_flow.model import MyFlowConfig, build_my_flow

__all__ = ["HalfAffineCoupling", "MyFlowConfig", "build_my_flow"]
