"""Factor-out split (Dinh et al. 2017 "Real NVP" section 3.6; Glow's ``split2d``).

Half of the variables leave the flow early and are scored under a prior, optionally conditioned on the half that
stays. Its forward log-det is ``log p(z_dropped | z_kept)`` (SurVAE Flows: a slice surjection).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core import noise
from nfkit_core.layers.conditioning import PARAM_LAYOUTS, check_choice, gaussian_params
from nfkit_core.priors import normal_log_prob
from nfkit_core.transform import Transform, sum_except_batch
from nfkit_core.validation import check_channels

__all__ = ["Split"]


class Split(Transform):
    """Keep the first ``keep_channels`` channels, score the rest under ``N(mean, exp(log_scale)^2)``.

    The inverse samples the dropped channels, ``mean + exp(log_scale) * eps * temperature`` with ``eps`` from
    :func:`nfkit_core.noise.randn`, and returns ``-log p(z_dropped | z_kept)`` as its log-det.

    Args:
        keep_channels: the channels that continue through the flow.
        num_channels: the channels of the input (default ``2 * keep_channels``: a split in halves).
        conditioner: network mapping ``z_kept`` (and the context, see :mod:`nfkit_core.layers.conditioning`) to
            ``2 * (C - keep_channels)`` channels of mean and log-scale (Glow: a zero-initialised convolution, so that
            the untrained prior is N(0, I)); standard normal when ``None``.
        params: layout of the network output: ``"halves"`` (mean first) or ``"interleaved"`` (mean ``h[:, 0::2]``,
            log-scale ``h[:, 1::2]``, as openai/glow).
    """

    is_bijective = False

    def __init__(self, keep_channels: int, conditioner: nn.Module | None = None, params: str = "halves",
                 num_channels: int | None = None) -> None:
        super().__init__()
        self.keep_channels = int(keep_channels)
        self.num_channels = int(num_channels) if num_channels is not None else 2 * self.keep_channels
        if not 0 < self.keep_channels < self.num_channels:
            raise ValueError(f"Split must keep between 1 and {self.num_channels - 1} of {self.num_channels} channels, "
                             f"got keep_channels={self.keep_channels}")
        self.conditioner = conditioner
        self.params = check_choice("params", params, PARAM_LAYOUTS)

    def _mean_and_log_scale(self, kept: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        shape = (kept.shape[0], self.num_channels - self.keep_channels, *kept.shape[2:])
        return gaussian_params(self.conditioner, kept, context, shape, self.params, "Split's conditioner")

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        # Checkpoints written before the network was renamed call it ``conditional_net``.
        old = prefix + "conditional_net."
        for key in [key for key in state_dict if key.startswith(old)]:
            state_dict[prefix + "conditioner." + key[len(old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_channels("Split", x, self.num_channels)
        kept, dropped = x[:, :self.keep_channels], x[:, self.keep_channels:]
        mean, log_scale = self._mean_and_log_scale(kept, context)
        return kept, sum_except_batch(normal_log_prob(dropped, mean, log_scale))

    def inverse(self, z: Tensor, context: Tensor | None = None, **options: Any) -> tuple[Tensor, Tensor]:
        check_channels("Split.inverse", z, self.keep_channels)
        mean, log_scale = self._mean_and_log_scale(z, context)
        eps = noise.randn(mean.shape, device=z.device, dtype=z.dtype)
        dropped = mean + torch.exp(log_scale) * eps * noise.temperature()
        log_det = -sum_except_batch(normal_log_prob(dropped, mean, log_scale))
        return torch.cat([z, dropped], dim=1), log_det
