"""Loading checkpoints of the official implementation (apple/ml-tarflow, ``transformer_flow.Model``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from nfkit_tarflow.config import TarFlowConfig
from nfkit_tarflow.model import TarFlow

__all__ = ["OFFICIAL_ARGUMENTS", "config_from_official", "from_official_state_dict"]

OFFICIAL_ARGUMENTS = ("in_channels", "img_size", "patch_size", "channels", "num_blocks", "layers_per_block", "nvp",
                      "num_classes")
"""The constructor arguments of the official ``transformer_flow.Model``."""

_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


def config_from_official(arguments: Mapping[str, Any],
                         **overrides: Any) -> tuple[TarFlowConfig, tuple[int, int, int], int]:
    """``(config, data_shape, num_classes)`` for the official constructor arguments.

    The official model fixes ``head_dim=64`` and ``expansion=4``; ``overrides`` set the nf-only options
    (``noise_std``, ``attention_backend``, ...).

    Args:
        arguments: the official constructor arguments (:data:`OFFICIAL_ARGUMENTS`); ``nvp`` (default ``True``) and
            ``num_classes`` (default 0) may be left out.
        **overrides: :class:`~nfkit_tarflow.config.TarFlowConfig` options applied last.

    Returns:
        the config, ``(in_channels, img_size, img_size)``, and the number of classes.

    Raises:
        ValueError: an official argument is missing or unknown, or the config refuses a value.
    """
    missing = [name for name in OFFICIAL_ARGUMENTS if name not in arguments and name not in ("nvp", "num_classes")]
    if missing:
        raise ValueError(f"official TarFlow arguments are missing {missing}; expected {list(OFFICIAL_ARGUMENTS)}")
    unknown = sorted(set(arguments) - set(OFFICIAL_ARGUMENTS))
    if unknown:
        raise ValueError(f"unknown official TarFlow arguments {unknown}; expected {list(OFFICIAL_ARGUMENTS)}")
    num_classes = int(arguments.get("num_classes", 0))
    values = dict(patch_size=int(arguments["patch_size"]), channels=int(arguments["channels"]),
                  num_blocks=int(arguments["num_blocks"]), layers_per_block=int(arguments["layers_per_block"]),
                  head_dim=64, expansion=4, nvp=bool(arguments.get("nvp", True)))
    values.update(overrides)
    size = int(arguments["img_size"])
    return TarFlowConfig(**values), (int(arguments["in_channels"]), size, size), num_classes


def from_official_state_dict(state_dict: Mapping[str, Tensor], config: Mapping[str, Any],
                             **overrides: Any) -> TarFlow:
    """Build an nf :class:`TarFlow` from an official checkpoint and the official constructor arguments.

    Parameter names match those of the official ``MetaBlock`` under ``transform.block{i}``; the class embedding
    drops its singleton axis; the causal mask buffer is not needed (attention is called with ``causal=True``); the
    prior variance ``var`` of a volume-preserving model becomes the prior's ``log_scale = log(var) / 2``.

    Args:
        state_dict: ``Model.state_dict()`` of the official implementation.
        config: its constructor arguments (``in_channels``, ``img_size``, ``patch_size``, ``channels``,
            ``num_blocks``, ``layers_per_block``, ``nvp``, ``num_classes``).
        overrides: nf-only :class:`TarFlowConfig` options such as ``noise_std``.
    """
    tar_config, data_shape, num_classes = config_from_official(config, **overrides)
    flow = TarFlow(tar_config, data_shape, num_classes)
    mapped: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.fullmatch(key)
        if key == "var":
            if tar_config.nvp:
                if not torch.equal(value, torch.ones_like(value)):
                    raise ValueError("an affine (nvp) official model must have var == 1; this checkpoint does not")
            else:
                mapped["prior.log_scale"] = 0.5 * torch.log(value)
        elif match is None:
            raise KeyError(f"unexpected key {key!r} in the official TarFlow state dict")
        elif match.group(2) == "attn_mask":
            continue
        elif match.group(2) == "class_embed":
            mapped[f"transform.transforms.block{match.group(1)}.class_embed"] = value.reshape(value.shape[0], -1)
        else:
            mapped[f"transform.transforms.block{match.group(1)}.{match.group(2)}"] = value
    flow.load_state_dict(mapped, strict=True)
    return flow


