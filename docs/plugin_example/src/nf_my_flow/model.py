"""The flow: couplings alternating with a reversal of the features, under a standard normal prior."""

from __future__ import annotations

from dataclasses import dataclass

from nf_my_flow.coupling import HalfAffineCoupling
from nfkit_core import NormalizingFlow, Sequential, StandardNormal
from nfkit_core.layers import Reverse
from nfkit_core.specs import DataInfo


@dataclass
class MyFlowConfig:
    """Options of my flow (each one is ``--set model.KEY=VALUE`` on the command line).

    Attributes:
        couplings: number of coupling layers.
        hidden: units of each conditioner's hidden layer.
    """

    couplings: int = 6
    hidden: int = 64


def build_my_flow(config: MyFlowConfig, data: DataInfo) -> NormalizingFlow:
    """My flow for vectors of shape ``(D,)``, ``D >= 2`` (e.g. ``toy2d`` or ``tabular`` data)."""
    if len(data.shape) != 1 or data.shape[0] < 2:
        raise ValueError(f"my-flow models vectors of 2 or more features, got data of shape {data.shape}")
    features = data.shape[0]
    steps = {}
    for i in range(config.couplings):
        steps[f"coupling{i}"] = HalfAffineCoupling(features, config.hidden)
        steps[f"reverse{i}"] = Reverse()
    return NormalizingFlow(Sequential(steps), StandardNormal((features,)), data_shape=data.shape)
