"""The plugin layer: typed registrars, discovery through entry points, attribution, clashes, a plugin's mistakes
(import errors, raising hooks, misspelt or undecorated hooks, a build that returns no flow), the env switches."""

from __future__ import annotations

import dataclasses
import inspect
import json
import textwrap
import types
import warnings
from pathlib import Path

import pytest

import nfkit_core.plugins.manager as manager_module
import nfkit_core.testing.tiny as tiny
from nfkit_core.attention import resolve_backend, sdpa_attention
from nfkit_core.cli import COMMANDS_PLUGIN, main, with_commands
from nfkit_core.errors import ConfigError, NfError
from nfkit_core.flow import Flow
from nfkit_core.plugins import (
    ArchitectureSpec,
    AttentionBackend,
    CommandSpec,
    DataInfo,
    DistillerSpec,
    DuplicateNameError,
    MetricSpec,
    PluginError,
    PluginLoadWarning,
    PluginManager,
    Registry,
    UnknownNameError,
    hook_names,
    hookimpl,
    hookspecs,
    is_flow,
)


def make_distribution(root: Path, name: str, version: str, entry_point: str, module: str, source: str) -> None:
    """Write an installed-looking distribution (dist-info + module) that importlib.metadata finds on sys.path."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"  # as wheels name it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[nfkit]\n{entry_point} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


ARCH_PLUGIN = """
    from dataclasses import dataclass
    from nfkit_core.plugins import ArchitectureSpec, hookimpl
    from nfkit_core.testing.tiny import build_tiny

    @dataclass
    class Config:
        hidden: int = 4
        dequantize: bool = False

    @hookimpl
    def nf_register_architectures(architectures):
        architectures.add(ArchitectureSpec("{arch}", Config, build_tiny, "test architecture"))
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for fake distributions, no plugin switches set, and a fresh process-wide manager."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("NF_BLOCK_PLUGINS", raising=False)
    monkeypatch.setattr(manager_module, "_manager", None)
    return tmp_path


def test_the_hooks_are_those_of_the_spec_module_each_typed_and_documented():
    names = hook_names()
    assert names == ["nf_register_architectures", "nf_register_datasets", "nf_register_metrics",
                     "nf_register_distillers", "nf_register_attention_backends", "nf_register_commands"]
    registrars = Registry().registrars()
    for name in names:
        hook = getattr(hookspecs, name)
        (parameter,) = inspect.signature(hook).parameters.values()
        assert parameter.name in registrars  # each hook hands its plugin one registrar of the registry
        assert parameter.annotation.startswith("Registrar[") and inspect.signature(hook).return_annotation == "None"
        assert f"{parameter.name}: call ``{parameter.name}.add(" in inspect.getdoc(hook)


def test_builtins_register_through_the_hooks_with_their_distribution():
    manager = PluginManager(autoload=False)
    registry = manager.registry
    assert registry.attention_backends.names() == ["flash", "flash3", "reference", "sdpa"]
    assert registry.commands.names() == []  # nf's own commands belong to the command line
    entry = registry.attention_backends.entry("sdpa")
    assert (entry.plugin, entry.distribution) == ("nfkit-core", "nfkit-core")
    assert with_commands(manager).registry.commands.names() == ["data", "plugins", "sample", "train"]
    assert manager.info(COMMANDS_PLUGIN).distribution == "nfkit-core"


def test_registrars_are_typed_and_name_what_is_missing():
    registry = Registry()
    registry.metrics.add(MetricSpec("fid", lambda *args: 0.0, "Frechet distance", data="images", default=True))

    @dataclasses.dataclass(frozen=True)
    class Metric(MetricSpec):  # an evaluation package's own metric type
        def applies_to(self, is_image: bool) -> bool:
            return self.data == "any" or (self.data == "images") == is_image

    registry.metrics.add(Metric("bpd", lambda *args: 0.0))
    registry.distillers.add(DistillerSpec("ilkd", dict, lambda *args: None, "intermediate latent distillation"))
    assert registry.metrics.get("fid").description == "Frechet distance" and registry.metrics.get("fid").default
    assert registry.metrics.get("bpd").applies_to(is_image=False)
    assert registry.distillers.names() == ["ilkd"]
    with pytest.raises(UnknownNameError, match="unknown metric 'nll'; available: bpd, fid"):
        registry.metrics.get("nll")
    with pytest.raises(PluginError, match="metric registrations take a MetricSpec, got ArchitectureSpec"):
        registry.metrics.add(ArchitectureSpec("glow", dict, lambda c, d: None))
    assert isinstance(UnknownNameError("x"), KeyError) and isinstance(PluginError("x"), NfError)


def test_an_entry_point_plugin_is_loaded_and_attributed(site):
    make_distribution(site, "nf-fake-arch", "1.2.3", "fake", "fake_arch_plugin", ARCH_PLUGIN.format(arch="fake"))
    manager = PluginManager()
    entry = manager.registry.architectures.entry("fake")
    assert (entry.plugin, entry.distribution, entry.version) == ("fake", "nf-fake-arch", "1.2.3")
    assert manager.info("fake").registered == ["architecture fake"]


def test_metric_and_distiller_plugins_register_through_their_hooks(site):
    make_distribution(site, "nf-fake-eval", "0.3", "fake-eval", "fake_eval_plugin", """
        from nfkit_core.plugins import DistillerSpec, MetricSpec, hookimpl

        @hookimpl
        def nf_register_metrics(metrics):
            metrics.add(MetricSpec("nll", lambda flow, data: 1.5, "negative log-likelihood"))

        @hookimpl
        def nf_register_distillers(distillers):
            distillers.add(DistillerSpec("fake-lkd", dict, lambda config, teacher, student: None))
    """)
    manager = PluginManager()
    assert manager.registry.metrics.get("nll").compute(None, None) == 1.5
    assert manager.registry.distillers.entry("fake-lkd").distribution == "nf-fake-eval"
    assert manager.info("fake-eval").registered == ["metric nll", "distiller fake-lkd"]


def test_a_name_registered_twice_is_shown_and_its_use_names_both_plugins(site, capsys):
    make_distribution(site, "nf-first", "1.0", "first", "first_plugin", ARCH_PLUGIN.format(arch="same"))
    make_distribution(site, "nf-second", "2.0", "second", "second_plugin", ARCH_PLUGIN.format(arch="same"))
    with pytest.warns(PluginLoadWarning, match="architecture 'same' is registered by more than one plugin"):
        registry = PluginManager().registry
    with pytest.raises(DuplicateNameError) as error:
        registry.architectures.get("same")
    message = str(error.value)
    assert "plugin 'first' (nf-first 1.0)" in message and "plugin 'second' (nf-second 2.0)" in message
    assert "NF_BLOCK_PLUGINS=first" in message or "NF_BLOCK_PLUGINS=second" in message
    # every command still starts: --help, and nf plugins, which shows the clash and fails
    with pytest.warns(PluginLoadWarning), pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "plugins" in capsys.readouterr().out
    code = main(["plugins"])
    out = capsys.readouterr().out
    assert code == 1
    assert "first  (nf-first 1.0)  1 registered\n    architecture same\n    CLASH: architecture 'same'" in out
    assert out.count("CLASH:") == 2
    # using the name is a one-line error with the way out
    code = main(["train", "--arch", "same", "--out", str(site / "run")])
    assert code == 2 and "is registered by more than one plugin" in capsys.readouterr().err


def test_the_way_out_of_a_clash_blocks_one_plugin(site, monkeypatch):
    make_distribution(site, "nf-first", "1.0", "first", "first_plugin2", ARCH_PLUGIN.format(arch="same"))
    make_distribution(site, "nf-second", "2.0", "second", "second_plugin2", ARCH_PLUGIN.format(arch="same"))
    monkeypatch.setenv("NF_BLOCK_PLUGINS", "second")
    assert PluginManager().registry.architectures.entry("same").distribution == "nf-first"


def test_an_entry_point_name_declared_by_two_distributions_is_an_error_naming_both(site, monkeypatch):
    make_distribution(site, "nf-first", "1.0", "twin", "twin_one", ARCH_PLUGIN.format(arch="one"))
    make_distribution(site, "nf-second", "2.0", "twin", "twin_two", ARCH_PLUGIN.format(arch="two"))
    with pytest.warns(PluginLoadWarning, match="the plugin name 'twin' is declared by more than one distribution"):
        manager = PluginManager()
    failed = [p for p in manager.plugins if p.name == "twin"]
    assert sorted(p.distribution for p in failed) == ["nf-first", "nf-second"]
    assert all("nf-first 1.0" in p.error and "nf-second 2.0" in p.error and "NF_BLOCK_PLUGINS=nf-" in p.error
               for p in failed)
    assert not {"one", "two"} & set(manager.registry.architectures.names())
    monkeypatch.setenv("NF_BLOCK_PLUGINS", "nf-second")
    assert "one" in PluginManager().registry.architectures


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(site):
    make_distribution(site, "nf-broken", "0.1", "broken", "broken_plugin", "raise ImportError('needs libfoo')\n")
    make_distribution(site, "nf-good", "1.0", "good", "good_plugin", ARCH_PLUGIN.format(arch="good"))
    with pytest.warns(PluginLoadWarning, match="'broken' from nf-broken 0.1: failed to load"):
        manager = PluginManager()
    assert manager.info("broken").error.startswith("failed to load (ImportError: needs libfoo)")
    assert "good" in manager.registry.architectures


def test_a_hook_that_raises_is_reported_and_the_others_register(site):
    make_distribution(site, "nf-raises", "0.1", "raises", "raising_plugin", """
        from nfkit_core.plugins import hookimpl

        @hookimpl
        def nf_register_architectures(architectures):
            raise RuntimeError("bad config")
    """)
    make_distribution(site, "nf-good", "1.0", "good", "good_plugin2", ARCH_PLUGIN.format(arch="good"))
    manager = PluginManager()
    with pytest.warns(PluginLoadWarning, match="bad config"):
        registry = manager.registry
    assert "good" in registry.architectures
    assert manager.info("raises").error == "nf_register_architectures failed: RuntimeError: bad config"


def test_a_misspelt_hook_is_an_error_naming_the_plugin_and_the_hook(site, capsys):
    make_distribution(site, "nf-typo", "0.2", "typo", "typo_plugin", """
        from nfkit_core.plugins import hookimpl

        @hookimpl
        def nf_register_architecture(architectures):
            pass
    """)
    make_distribution(site, "nf-good", "1.0", "good", "good_plugin3", ARCH_PLUGIN.format(arch="good"))
    with pytest.warns(PluginLoadWarning, match=r"'typo' from nf-typo 0.2: unknown hook nf_register_architecture "
                                               r"\(misspelt\?\); nf's hooks: nf_register_architectures, "):
        code = main(["plugins"])
    assert code == 1 and "typo  (nf-typo 0.2)  FAILED: unknown hook nf_register_architecture" in capsys.readouterr().out
    assert "good" in manager_module.get_registry().architectures


def test_a_hook_without_hookimpl_is_an_error_naming_the_plugin_and_the_function(site):
    make_distribution(site, "nf-bare", "0.1", "bare", "bare_plugin", """
        from nfkit_core.plugins import ArchitectureSpec
        from nfkit_core.testing.tiny import TinyConfig, build_tiny

        def nf_register_architectures(architectures):
            architectures.add(ArchitectureSpec("bare", TinyConfig, build_tiny))
    """)
    manager = PluginManager()
    with pytest.warns(PluginLoadWarning, match="'bare' from nf-bare 0.1: nf_register_architectures lacks the "
                                               "@hookimpl marker"):
        assert "bare" not in manager.registry.architectures
    assert manager.info("bare").error.startswith("nf_register_architectures lacks the @hookimpl marker")


def test_a_hook_with_a_parameter_the_hook_lacks_is_reported(site):
    make_distribution(site, "nf-old", "0.1", "old", "old_plugin", """
        from nfkit_core.plugins import hookimpl

        @hookimpl
        def nf_register_architectures(architectures):
            raise AssertionError("a plugin that is not loaded is never asked")

        @hookimpl
        def nf_register_datasets(registry):
            pass
    """)
    with pytest.warns(PluginLoadWarning, match=r"'old' from nf-old 0.1: is not loaded: .*\{'registry'\} are "
                                               r"declared in the hookimpl but can not be found in the hookspec"):
        manager = PluginManager()
    assert manager.info("old").error.startswith("is not loaded") and not manager.has_plugin("old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its valid hook, registered before pluggy refused the other, is gone
        assert "digits" in manager.registry.datasets


def test_a_build_that_returns_no_flow_is_caught_at_build_time_naming_the_plugin(site, capsys):
    make_distribution(site, "nf-tuple", "0.4", "tuple-flow", "tuple_plugin", """
        from nfkit_core.plugins import ArchitectureSpec, hookimpl
        from nfkit_core.testing.tiny import TinyConfig, build_tiny

        @hookimpl
        def nf_register_architectures(architectures):
            architectures.add(ArchitectureSpec("pair", TinyConfig, lambda c, d: (build_tiny(c, d), None)))
    """)
    registry = manager_module.get_registry()
    with pytest.raises(PluginError, match=r"architecture 'pair' of plugin 'tuple-flow' \(nf-tuple 0.4\): build\(\) "
                                          r"returned a tuple, not an nfkit_core.Flow"):
        registry.build_flow("pair", tiny.TinyConfig(), DataInfo((1, 8, 8), num_bins=17))
    code = main(["train", "--arch", "pair", "--out", str(site / "run"), "--set", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "returned a tuple" in err


class FlowLike:
    """Every method and attribute of a flow (through the one it wraps), but not a torch.nn.Module."""

    def __init__(self, flow):
        self._flow = flow

    def __getattr__(self, name):
        return getattr(self._flow, name)


def test_a_flow_must_also_be_a_module():
    flow = tiny.build_tiny(tiny.TinyConfig(), DataInfo((1, 8, 8), num_bins=17))
    assert is_flow(flow) and isinstance(FlowLike(flow), Flow) and not is_flow(FlowLike(flow))
    registry = Registry()
    registry.architectures.add(ArchitectureSpec("wrapped", tiny.TinyConfig,
                                                lambda c, d: FlowLike(tiny.build_tiny(c, d))))
    with pytest.raises(PluginError, match=r"architecture 'wrapped' of .*: build\(\) returned a FlowLike, which "
                                          r"has the methods of nfkit_core.Flow but is not a torch.nn.Module \(the "
                                          r"trainer needs its parameters and state_dict\)"):
        registry.build_flow("wrapped", tiny.TinyConfig(), DataInfo((1, 8, 8), num_bins=17))


def test_an_architectures_refusal_of_its_options_is_a_config_error():
    def build(config, data):
        raise ValueError("hidden must be even")

    registry = Registry()
    registry.architectures.add(ArchitectureSpec("picky", tiny.TinyConfig, build))
    with pytest.raises(ConfigError, match="architecture 'picky' cannot be built with these options: hidden must be"):
        registry.build_flow("picky", tiny.TinyConfig(), DataInfo((2,)))


def test_a_plugins_attention_backend_is_found_by_name_when_the_model_is_built():
    calls = []

    def counting(q, k, v, causal=False, scale=None):
        calls.append(q.shape)
        return sdpa_attention(q, k, v, causal=causal, scale=scale)

    def build(config, data):
        flow = tiny.build_tiny(config, data)
        flow.attention = resolve_backend("counting")  # what an attention layer does when it is built
        return flow

    plugin = types.ModuleType("counting_plugin")
    plugin.nf_register_attention_backends = hookimpl(lambda attention_backends: attention_backends.add(
        AttentionBackend("counting", counting, description="sdpa, counted")))
    plugin.nf_register_architectures = hookimpl(lambda architectures: architectures.add(
        ArchitectureSpec("attends", tiny.TinyConfig, build)))
    manager = PluginManager(autoload=False)
    manager.register(plugin, "counting")
    flow = manager.registry.build_flow("attends", tiny.TinyConfig(), DataInfo((2,)))
    assert flow.attention.name == "counting"
    with pytest.raises(UnknownNameError, match="unknown attention backend 'counting'; available: auto, flash, "
                                               "flash3, reference, sdpa"):
        resolve_backend("counting")  # outside a build through the registry, only the built-ins are known


def test_environment_disables_autoload_or_blocks_named_plugins(site, monkeypatch):
    make_distribution(site, "nf-fake-arch", "1.0", "fake", "fake_arch_plugin2", ARCH_PLUGIN.format(arch="fake"))
    monkeypatch.setenv("NF_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not PluginManager().has_plugin("fake")
    monkeypatch.delenv("NF_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("NF_BLOCK_PLUGINS", "other, fake")
    manager = PluginManager()
    assert not manager.has_plugin("fake") and manager.pm.is_blocked("fake")  # pluggy's own blocking
    monkeypatch.setenv("NF_BLOCK_PLUGINS", "nf-fake-arch")
    assert not PluginManager().has_plugin("fake")
    monkeypatch.delenv("NF_BLOCK_PLUGINS")
    assert PluginManager().has_plugin("fake")


def test_nf_plugins_lists_distribution_version_and_registrations(site, capsys):
    make_distribution(site, "nf-fake-arch", "1.2.3", "fake", "fake_arch_plugin3", ARCH_PLUGIN.format(arch="fake"))
    make_distribution(site, "nf-broken", "0.1", "broken", "broken_plugin2", "raise ImportError('needs libfoo')\n")
    with pytest.warns(PluginLoadWarning):
        code = main(["plugins"])
    out = capsys.readouterr().out
    assert code == 1  # a broken plugin makes `nf plugins` fail, so CI notices
    assert "fake  (nf-fake-arch 1.2.3)  1 registered" in out
    assert "    architecture fake" in out
    assert "broken  (nf-broken 0.1)  FAILED: failed to load (ImportError: needs libfoo)" in out
    assert "nfkit-core  (nfkit-core " in out and "nfkit-core-commands  (nfkit-core " in out
    main(["plugins", "--json"])
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["fake"]["registered"] == ["architecture fake"] and listing["fake"]["clashes"] == []


def test_main_prints_nf_errors_in_one_line_and_lets_other_errors_through(monkeypatch, capsys):
    def run(args):
        raise {"nf": ConfigError("--widgets must be positive"), "bug": ZeroDivisionError("oops")}[args.what]

    def add_arguments(parser):
        parser.add_argument("what")

    plugin = types.ModuleType("raising_commands")
    plugin.nf_register_commands = hookimpl(lambda commands: commands.add(
        CommandSpec("explode", "raise an error", add_arguments, run)))
    manager = PluginManager(autoload=False)
    manager.register(plugin, "raising")
    monkeypatch.setattr(manager_module, "_manager", manager)
    assert main(["explode", "nf"]) == 2
    assert capsys.readouterr().err == "nf explode: error: --widgets must be positive\n"
    with pytest.raises(ZeroDivisionError):
        main(["explode", "bug"])


def test_architecture_config_from_defaults_preset_and_overrides():
    @dataclasses.dataclass
    class Config:
        depth: int = 2
        width: int = 8

        def __post_init__(self):
            if self.width < 1:
                raise ValueError("width must be positive")

    spec = ArchitectureSpec("toy", Config, lambda c, d: None, presets={"big": {"depth": 6, "width": 64}})
    assert spec.make_config() == Config(2, 8)
    assert spec.make_config("big", width=32) == Config(6, 32)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['colour'\] for architecture 'toy'"):
        spec.make_config(colour=1)
    with pytest.raises(UnknownNameError, match="has no preset 'huge'; available: big"):
        spec.make_config("huge")
    with pytest.raises(ConfigError, match="model options of architecture 'toy': width must be positive"):
        spec.make_config(width=0)
