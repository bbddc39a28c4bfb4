"""Loading checkpoints of the official implementation (matejgrcic/DenseFlow, ``experiments/image/model/dense_flow.py``).

The official model is a survae-style ``Flow`` whose ``transforms`` are::

    0  VariationalDequantization(encoder=DequantizationFlow)  -> our ``dequantizer``
    1  ScalarAffineBijection(shift=-0.5)                       -> folded into the dequantizer's range (-1/2, 1/2)
    2  Squeeze2d                                               -> ``transform.squeeze``
    3  InvertibleDenseBlock, 4 InvertibleTransition, 5 ...     -> ``transform.block0``, ``squeeze0`` + ``split0``, ...

and ``base_dist`` is a per-channel Gaussian. The conversion renames parameters and makes three exact
reparametrisations: survae's ``ActNorm`` ``(x - shift) * exp(-log_scale)`` becomes ours with negated parameters; the
coupling networks' output channels, ordered ``[s_0, t_0, s_1, t_1, ...]`` by survae's ``ElementwiseParams2d(2,
mode="sequential")``, are permuted to our ``"halves"`` layout ``[s..., t...]``; the per-channel prior is broadcast to
our per-element one. The model uses the ``"official"`` attention and plain 1x1 convolution weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from nfkit_denseflow.config import DenseFlowConfig
from nfkit_denseflow.model import DenseFlow

__all__ = ["official_config", "from_official_state_dict", "convert_official_state_dict"]

# The sizes of the official networks that its constructors fix (DNMH, DequantizationFlow and MultiHeadDenseBlock
# defaults), under nf's names. A config may carry other values for them: the small models recorded by
# tools/record_official_fixtures.py shrink them.
OFFICIAL_LANDMARKS = 4
OFFICIAL_SIZES = dict(dense_depth=7, dense_growth=64, dequantization_steps=4, dequantization_context_channels=64,
                      dequantization_mid_channels=64, dequantization_depth=4, dequantization_growth=64)
"""The sizes that the official DenseFlow constructors fix (not among their command-line arguments)."""


def official_config(config: Mapping[str, Any]) -> tuple[DenseFlowConfig, tuple[int, int, int], int]:
    """``(DenseFlowConfig, data_shape, num_bins)`` from the official ``DenseFlow(...)`` constructor arguments.

    Optional entries named as in :data:`OFFICIAL_SIZES` give the sizes that the official constructors fix, for
    official models built with other values (the recorded parity fixtures); absent, the official values apply.

    Args:
        config: the official constructor arguments (``data_shape``, ``block_config``, ``layers_config``,
            ``layer_mid_chnls``, ``growth_rate``, optionally ``num_bits``).

    Raises:
        ValueError: a required argument is missing, or an odd ``growth_rate``.
    """
    missing = {"data_shape", "block_config", "layers_config", "layer_mid_chnls", "growth_rate"} - set(config)
    if missing:
        raise ValueError(f"the official DenseFlow config lacks {sorted(missing)}")
    growth_rate = int(config["growth_rate"])
    if growth_rate % 2:
        raise ValueError(f"official checkpoints with an odd growth_rate ({growth_rate}) are not supported: their "
                         f"odd-width units split channels as ceil/floor, nf's couplings as floor/ceil")
    dense_config = DenseFlowConfig(
        units_per_block=tuple(config["block_config"]), modules_per_unit=tuple(config["layers_config"]),
        mid_channels=tuple(config["layer_mid_chnls"]), growth_rate=growth_rate,
        num_landmarks=OFFICIAL_LANDMARKS, attention="official", dequantization="variational", lu=False,
        **{name: int(config.get(name, default)) for name, default in OFFICIAL_SIZES.items()})
    return dense_config, tuple(int(d) for d in config["data_shape"]), 2 ** int(config.get("num_bits", 8))


def _sequential_to_halves(weight: Tensor) -> Tensor:
    """Reorder output channels ``[s_0, t_0, s_1, t_1, ...]`` as ``[s_0, s_1, ..., t_0, t_1, ...]``."""
    return torch.cat([weight[0::2], weight[1::2]])


def _dense_block_rules(official: str, ours: str) -> list[tuple[str, str]]:
    """Rename rules for a survae ``DenseBlock`` (an ``nn.Sequential`` of ``DenseLayer``s ending in a gated conv)."""
    return [(rf"{official}\.(\d+)\.nn\.0\.", rf"{ours}.layers.\1.bottleneck."),
            (rf"{official}\.(\d+)\.nn\.2\.", rf"{ours}.layers.\1.conv."),
            (rf"{official}\.(\d+)\.conv\.", rf"{ours}.output.conv.")]


def _rules(num_blocks: int, num_steps: int) -> list[tuple[str, str]]:
    """``(official regex, our replacement)`` pairs; the first pattern found in a key renames it."""
    encoder = "dequantizer.encoder.transforms"
    coupling_in = r"coupling_net\.0\.transform"
    rules = [
        (r"^base_dist\.loc$", "prior.mean"),
        (r"^base_dist\.log_scale$", "prior.log_scale"),
        (r"^transforms\.0\.encoder\.base_dist\.loc$", f"{encoder}.base.shift"),
        (r"^transforms\.0\.encoder\.base_dist\.log_scale$", f"{encoder}.base.log_scale"),
        (r"^transforms\.0\.encoder\.context_init\.2\.", "dequantizer.context_net.2."),
    ]
    rules += _dense_block_rules(r"^transforms\.0\.encoder\.context_init\.1", "dequantizer.context_net.1")
    rules += _dense_block_rules(r"^transforms\.0\.encoder\.context_init\.3", "dequantizer.context_net.3")
    for step in range(num_steps + 1):
        rules.append((rf"^transforms\.0\.encoder\.transforms\.{2 * step}\.weight$", f"{encoder}.conv{step}.weight"))
    for step in range(num_steps):
        official = rf"^transforms\.0\.encoder\.transforms\.{2 * step + 1}\.{coupling_in}"
        ours = f"{encoder}.coupling{step}.conditioner"
        rules += [(rf"{official}\.0\.", f"{ours}.project."), (rf"{official}\.2\.", f"{ours}.output.")]
        rules += _dense_block_rules(rf"{official}\.1\.dense", f"{ours}.dense")
    for block in range(num_blocks):
        official = rf"^transforms\.{3 + 2 * block}"
        ours = f"transform.transforms.block{block}"
        rules.append((rf"{official}\.noise_params\.(\d+)\.transformation\.", rf"{ours}.augment.\1.conditioner.net."))
        module = rf"{official}\.blocks\.(\d+)\.transforms\.(\d+)\.transforms"
        unit = rf"{ours}.units.\1.transforms.\2.transforms"
        net = rf"{module}\.2\.coupling_net\.0\.dn\.transform"
        rules += [
            (rf"{module}\.0\.shift$", rf"{unit}.actnorm.shift"),
            (rf"{module}\.0\.log_scale$", rf"{unit}.actnorm.log_scale"),
            (rf"{module}\.0\.initialized$", rf"{unit}.actnorm.initialized"),
            (rf"{module}\.1\.weight$", rf"{unit}.conv.weight"),
            (rf"{net}\.0\.", rf"{unit}.coupling.conditioner.project."),
            (rf"{net}\.2\.", rf"{unit}.coupling.conditioner.output."),
            (rf"{net}\.1\.mha\.qkv\.", rf"{unit}.coupling.conditioner.attention.qkv."),
            (rf"{net}\.1\.mha\.out_transform\.", rf"{unit}.coupling.conditioner.attention.out."),
            (rf"{net}\.1\.mix_conv\.", rf"{unit}.coupling.conditioner.fuse."),
        ]
        rules += [(rf"{net}\.1\.dense\.(\d+)\.nn\.0\.", rf"{unit}.coupling.conditioner.dense.layers.\3.bottleneck."),
                  (rf"{net}\.1\.dense\.(\d+)\.nn\.2\.", rf"{unit}.coupling.conditioner.dense.layers.\3.conv."),
                  (rf"{net}\.1\.dense\.(\d+)\.conv\.", rf"{unit}.coupling.conditioner.dense.output.conv.")]
    return rules


def _check_constant(name: str, value: Tensor, expected: float) -> None:
    if not torch.allclose(value.float(), torch.tensor(expected), atol=1e-6):
        raise ValueError(f"official buffer {name} is {value.tolist()}, expected {expected}: not a checkpoint of the "
                         f"official DenseFlow this loader reads")


def _constant_buffers(num_bins: int, num_steps: int) -> dict[str, Callable[[str, Tensor], None]]:
    """Official buffers that hold constants of the architecture: checked, then dropped."""
    return {
        "transforms.0.ldj_per_dim": lambda n, v: _check_constant(n, v, -math.log(num_bins)),
        f"transforms.0.encoder.transforms.{2 * num_steps + 2}.temperature": lambda n, v: _check_constant(n, v, 1.0),
        "transforms.1._shift": lambda n, v: _check_constant(n, v, -0.5),
        "transforms.1._scale": lambda n, v: _check_constant(n, v, 1.0),
    }


def convert_official_state_dict(state_dict: Mapping[str, Tensor], model: DenseFlow) -> dict[str, Tensor]:
    """Map an official ``state_dict`` onto the parameter names and conventions of ``model`` (built in official mode).

    Args:
        state_dict: the official ``model.state_dict()``.
        model: the :class:`DenseFlow` it is loaded into (built in official mode).

    Returns:
        the state dict in ``model``'s names and conventions.

    Raises:
        ValueError: keys that match no parameter of ``model`` (named), or constants of another architecture.
    """
    num_blocks = len(model.config.units_per_block)
    num_steps = model.config.dequantization_steps
    rules = [(re.compile(pattern), replacement) for pattern, replacement in _rules(num_blocks, num_steps)]
    constants = _constant_buffers(model.num_bins, num_steps)
    ours = model.state_dict()
    converted: dict[str, Tensor] = {}
    unknown = []
    for name, value in state_dict.items():
        if name in constants:
            constants[name](name, value)
            continue
        if re.fullmatch(r"transforms\.\d+\.dist\.buffer", name):
            continue  # the transitions' standard-normal distributions keep a device marker only
        for pattern, replacement in rules:
            if pattern.search(name):
                new_name = pattern.sub(replacement, name)
                break
        else:
            unknown.append(name)
            continue
        if new_name not in ours:
            unknown.append(f"{name} (as {new_name})")
            continue
        converted[new_name] = _convert_value(new_name, value, ours[new_name])
    if unknown:
        raise ValueError(f"{len(unknown)} official parameters have no counterpart in this DenseFlow "
                         f"(wrong config?): {unknown[:8]}")
    return converted


def _convert_value(name: str, value: Tensor, target: Tensor) -> Tensor:
    if name.endswith("actnorm.shift") or name.endswith("actnorm.log_scale"):
        value = -value.reshape(-1)
    elif name.endswith("actnorm.initialized"):
        value = value.reshape(()).bool()
    elif name.startswith("prior.") and value.numel() == target.shape[0]:
        value = value.reshape(-1, 1, 1).expand(target.shape)
    elif name.startswith("dequantizer.encoder.transforms.base."):
        value = value.reshape(target.shape)
    elif re.search(r"coupling(\d+)?\.conditioner\.output\.(weight|bias)$", name):
        value = _sequential_to_halves(value)
    if value.shape != target.shape:
        raise ValueError(f"official parameter for {name} has shape {tuple(value.shape)}, this model expects "
                         f"{tuple(target.shape)} (wrong config?)")
    return value.to(target.dtype).clone()


def from_official_state_dict(state_dict: Mapping[str, Tensor], config: Mapping[str, Any]) -> DenseFlow:
    """A :class:`DenseFlow` holding the weights of an official checkpoint, in eval mode.

    Args:
        state_dict: ``model.state_dict()`` of the official ``DenseFlow`` (e.g. ``checkpoint["model"]``; a
            ``DataParallelDistribution``'s ``module.`` prefix is removed).
        config: the official constructor arguments: ``data_shape``, ``block_config``, ``layers_config``,
            ``layer_mid_chnls``, ``growth_rate`` and optionally ``num_bits`` (default 8).
    """
    dense_config, data_shape, num_bins = official_config(config)
    model = DenseFlow(dense_config, data_shape, num_bins)
    state_dict = {name.removeprefix("module."): value for name, value in state_dict.items()}
    model.load_state_dict(convert_official_state_dict(state_dict, model), strict=True)
    return model.eval()
