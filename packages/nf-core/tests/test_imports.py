"""nfkit-core's dependencies point one way: the import graph, function-local imports included, has no cycle, and
the contract layer imports nothing but itself, the standard library, torch, numpy and einops."""

from __future__ import annotations

from nfkit_core.testing.imports import CONTRACT_DEPENDENCIES, contract_modules, find_cycle, import_graph

GRAPH = import_graph(["nfkit_core"])
CONTRACT = contract_modules(GRAPH)
OPTIONAL = {"nfkit_core.attention": {"flash_attn"}}  # imported by the flash backend only, when it runs


def test_the_import_graph_has_no_cycle():
    assert find_cycle(GRAPH.internal) is None


def test_the_graph_counts_function_local_imports():
    # nfkit_core.data.image_folder imports PIL inside its image-reading functions only
    assert "PIL" in GRAPH.external["nfkit_core.data.image_folder"]


def test_the_contract_layer_imports_only_itself_torch_numpy_and_einops():
    for module in sorted(CONTRACT):
        assert GRAPH.internal[module] <= CONTRACT, (module, GRAPH.internal[module] - CONTRACT)
        assert GRAPH.external[module] <= CONTRACT_DEPENDENCIES | OPTIONAL.get(module, set()), module


def test_the_contract_layer_is_what_flows_are_made_of():
    assert {"nfkit_core.transform", "nfkit_core.flow", "nfkit_core.layers", "nfkit_core.layers.coupling"} <= CONTRACT
    assert not [m for m in CONTRACT if m.startswith(("nfkit_core.train", "nfkit_core.cli", "nfkit_core.plugins"))]
    assert CONTRACT <= set(GRAPH.internal)  # every name is a module that exists


def test_the_value_types_and_errors_are_leaves():
    assert GRAPH.internal["nfkit_core.errors"] == set() and GRAPH.external["nfkit_core.errors"] == set()
    assert GRAPH.internal["nfkit_core.specs"] == {"nfkit_core.errors"} and GRAPH.external["nfkit_core.specs"] == set()


def test_only_the_command_line_imports_the_command_line():
    for module, targets in GRAPH.internal.items():
        if not module.startswith("nfkit_core.cli"):
            assert not any(t.startswith("nfkit_core.cli") for t in targets), module


def test_data_and_the_registry_never_import_the_manager_the_trainer_or_the_command_line():
    above = ("nfkit_core.plugins.manager", "nfkit_core.builtins", "nfkit_core.cli", "nfkit_core.train",
             "nfkit_core.checkpoint")
    below = [m for m in GRAPH.internal if m.startswith(("nfkit_core.data", "nfkit_core.plugins.registry",
                                                         "nfkit_core.plugins.hookspecs"))]
    for module in below:
        assert "nfkit_core.plugins" not in GRAPH.internal[module], module  # the package re-exports the manager
        assert not [t for t in GRAPH.internal[module] if t.startswith(above)], module
