"""The import graph of every package, function-local imports included: no cycle anywhere, and an architecture's
modules (all but its ``plugin`` module) import only nfkit-core's contract layer, torch, numpy and einops."""

from __future__ import annotations

import pytest

from nfkit_core.testing.imports import CONTRACT_DEPENDENCIES, contract_modules, find_cycle, import_graph

PACKAGES = ["nfkit_core", "nfkit_tarflow", "nfkit_denseflow", "nfkit_glow_maf", "nfkit_realnvp"]
ARCHITECTURES = PACKAGES[1:]
GRAPH = import_graph(PACKAGES)
CONTRACT = contract_modules(GRAPH)


def test_no_package_is_part_of_an_import_cycle():
    assert find_cycle(GRAPH.internal) is None


@pytest.mark.parametrize("package", ARCHITECTURES)
def test_an_architecture_imports_only_the_contract_layer(package):
    modules = [m for m in GRAPH.internal if m.split(".")[0] == package and not m.endswith(".plugin")]
    assert modules
    for module in modules:
        foreign = {t for t in GRAPH.internal[module] if t.split(".")[0] != package} - CONTRACT
        assert not foreign, f"{module} imports {sorted(foreign)}, which is nf's machinery, not its contract"
        assert GRAPH.external[module] <= CONTRACT_DEPENDENCIES, module


@pytest.mark.parametrize("package", ARCHITECTURES)
def test_a_plugin_module_registers_through_the_plugin_layer_only(package):
    targets = GRAPH.internal[f"{package}.plugin"]
    assert not [t for t in targets if t.startswith(("nfkit_core.cli", "nfkit_core.train", "nfkit_core.data"))]
