"""A complete nf architecture: a layer, a config, a build function, its registration, and the conformance checks.

Run it with ``python docs/examples/architecture.py``; ``integration_tests/test_docs_examples.py`` runs it too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nfkit_core import NormalizingFlow, Sequential, StandardNormal, Transform
from nfkit_core.layers import ActNorm, Reverse
from nfkit_core.layers.conditioning import run_conditioner, zero_init
from nfkit_core.plugins import ArchitectureSpec, DataInfo, PluginManager, Registrar, hookimpl
from nfkit_core.testing import check_flow, check_transform


class TanhCoupling(Transform):
    """``z_b = x_b * exp(tanh(s(x_a))) + t(x_a)`` on vectors: a Bijector written from scratch.

    Its inverse has one sampling option, ``shift_scale`` (a knob of the generative direction, as TarFlow's blocks
    have ``guidance``): it scales the predicted shift. ``Sequential.inverse`` hands every option to every layer; a
    layer names the ones it reads in ``inverse_options`` and ignores the rest.
    """

    inverse_options = ("shift_scale",)

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.half = features // 2
        rest = features - self.half
        self.conditioner = nn.Sequential(nn.Linear(self.half, hidden), nn.ReLU(),
                                         zero_init(nn.Linear(hidden, 2 * rest)))  # starts as the identity

    def _log_scale_and_shift(self, x_a: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raw_log_scale, shift = run_conditioner(self.conditioner, x_a, context).chunk(2, dim=1)
        return torch.tanh(raw_log_scale), shift

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, :self.half], x[:, self.half:]
        log_s, shift = self._log_scale_and_shift(x_a, context)
        return torch.cat([x_a, x_b * log_s.exp() + shift], dim=1), log_s.sum(dim=1)  # log_det: (batch,)

    def inverse(self, z: Tensor, context: Tensor | None = None, *, shift_scale: float = 1.0,
                **options: object) -> tuple[Tensor, Tensor]:
        z_a, z_b = z[:, :self.half], z[:, self.half:]
        log_s, shift = self._log_scale_and_shift(z_a, context)
        return torch.cat([z_a, (z_b - shift_scale * shift) * torch.exp(-log_s)], dim=1), -log_s.sum(dim=1)


@dataclass
class TanhFlowConfig:
    """The options of the architecture (``nf train --set model.hidden=...``)."""

    couplings: int = 4
    hidden: int = 32


def build_tanh_flow(config: TanhFlowConfig, data: DataInfo) -> NormalizingFlow:
    """The one way to express an architecture: compose layers into a ``NormalizingFlow``."""
    if len(data.shape) != 1:
        raise ValueError(f"tanh-flow models vectors; the data has shape {tuple(data.shape)}")
    features = data.shape[0]
    steps: dict[str, Transform] = {}
    for i in range(config.couplings):
        steps[f"actnorm{i}"] = ActNorm(features)
        steps[f"coupling{i}"] = TanhCoupling(features, config.hidden)
        steps[f"reverse{i}"] = Reverse()
    return NormalizingFlow(Sequential(steps), StandardNormal((features,)), data_shape=tuple(data.shape))


@hookimpl
def nf_register_architectures(architectures: Registrar[ArchitectureSpec]) -> None:
    """Registered through the ``nfkit`` entry-point group of the plugin's distribution."""
    architectures.add(ArchitectureSpec("tanh-flow", TanhFlowConfig, build_tanh_flow,
                                       "affine couplings with tanh-bounded scales"))


if __name__ == "__main__":
    torch.manual_seed(0)
    errors = check_transform(lambda: TanhCoupling(4, 8), torch.randn(3, 4))
    assert errors["log_det_vs_jacobian"] < 1e-6
    manager = PluginManager()  # what installing the distribution does: its entry point registers this module
    manager.register(sys.modules[__name__], "tanh-flow", distribution="tanh-flow-example", version="0.1.0")
    spec = manager.registry.architectures.get("tanh-flow")
    flow = manager.registry.build_flow("tanh-flow", spec.make_config(couplings=2, hidden=8), DataInfo((4,)))
    errors = check_flow(flow, torch.randn(5, 4))
    assert errors["latent_roundtrip"] < 1e-5
    samples = flow.sample(8, generator=torch.Generator().manual_seed(0), shift_scale=0.5)
    print(f"conformant; samples of shape {tuple(samples.shape)}")
