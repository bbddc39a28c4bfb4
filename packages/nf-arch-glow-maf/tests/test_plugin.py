"""The package registers ``glow`` and ``maf`` through its ``nf`` entry point."""

import torch

from nfkit_core import Flow
from nfkit_core.plugins import DataInfo, PluginManager
from nfkit_glow_maf import GlowConfig, MAFConfig


def test_glow_and_maf_are_registered_by_this_distribution():
    registry = PluginManager(autoload=True, blocked=set()).registry
    entries = {name: registry.architectures.entry(name) for name in ("glow", "maf")}
    assert set(entries) == {"glow", "maf"}
    assert {e.distribution for e in entries.values()} == {"nfkit-glow-maf"}
    assert entries["glow"].spec.config_class is GlowConfig and entries["maf"].spec.config_class is MAFConfig


def test_specs_build_flows_from_presets_and_overrides():
    registry = PluginManager(autoload=True, blocked=set()).registry
    glow = registry.architectures.get("glow")
    config = glow.make_config("digits", steps_per_level=2)
    assert (config.num_levels, config.steps_per_level, config.hidden_channels) == (2, 2, 64)
    flow = registry.build_flow("glow", config, DataInfo((1, 8, 8), num_bins=17))
    assert isinstance(flow, Flow) and flow.log_prob(torch.rand(2, 1, 8, 8) * 2 - 1).shape == (2,)

    maf = registry.architectures.get("maf")
    config = maf.make_config("gas", num_layers=2)
    assert (config.hidden_features, config.activation, config.num_layers) == (100, "tanh", 2)
    flow = registry.build_flow("maf", config, DataInfo((8,)))
    assert isinstance(flow, Flow) and flow.log_prob(torch.randn(3, 8)).shape == (3,)
