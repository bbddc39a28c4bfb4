"""The plugin system: discovery through entry points, attribution, duplicates, broken plugins, env switches."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

import nfkit_core.plugins.manager as manager_module
from nfkit_core.cli import main
from nfkit_core.plugins import (
    ArchitectureSpec,
    DuplicateNameError,
    PluginLoadWarning,
    PluginManager,
    Registry,
    UnknownNameError,
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

    @dataclass
    class Config:
        width: int = 4

    @hookimpl
    def nf_register_architectures(registry):
        registry.add_architecture(ArchitectureSpec("{arch}", Config, lambda config, data: None, "test architecture"))
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("NF_BLOCK_PLUGINS", raising=False)
    return tmp_path


def test_builtins_register_through_the_hooks_with_their_distribution():
    registry = PluginManager(autoload=False).registry
    assert registry.names("attention_backend") == ["flash", "flash3", "reference", "sdpa"]
    assert "plugins" in registry.names("command")
    entry = next(e for e in registry.entries("attention_backend") if e.name == "sdpa")
    assert (entry.plugin, entry.distribution) == ("nfkit-core", "nfkit-core")


def test_an_entry_point_plugin_is_loaded_and_attributed(site):
    make_distribution(site, "nf-fake-arch", "1.2.3", "fake", "fake_arch_plugin", ARCH_PLUGIN.format(arch="fake"))
    manager = PluginManager()
    entry = next(e for e in manager.registry.entries("architecture") if e.name == "fake")
    assert (entry.plugin, entry.distribution, entry.version) == ("fake", "nf-fake-arch", "1.2.3")
    assert manager.plugins["fake"].registered == ["architecture fake"]


def test_a_duplicate_name_names_both_distributions(site):
    make_distribution(site, "nf-first", "1.0", "first", "first_plugin", ARCH_PLUGIN.format(arch="same"))
    make_distribution(site, "nf-second", "2.0", "second", "second_plugin", ARCH_PLUGIN.format(arch="same"))
    with pytest.raises(DuplicateNameError, match="architecture 'same' is registered twice") as error:
        PluginManager().fill_registry()
    assert "nf-first" in str(error.value) and "nf-second" in str(error.value)


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(site):
    make_distribution(site, "nf-broken", "0.1", "broken", "broken_plugin", "raise ImportError('needs libfoo')\n")
    make_distribution(site, "nf-good", "1.0", "good", "good_plugin", ARCH_PLUGIN.format(arch="good"))
    with pytest.warns(PluginLoadWarning, match="'broken' from nf-broken 0.1 failed to load"):
        manager = PluginManager()
    assert manager.plugins["broken"].error == "ImportError: needs libfoo"
    assert "good" in manager.registry.names("architecture")


def test_a_hook_that_raises_is_reported_and_the_others_register(site):
    make_distribution(site, "nf-raises", "0.1", "raises", "raising_plugin", """
        from nfkit_core.plugins import hookimpl

        @hookimpl
        def nf_register_architectures(registry):
            raise RuntimeError("bad config")
    """)
    make_distribution(site, "nf-good", "1.0", "good", "good_plugin", ARCH_PLUGIN.format(arch="good"))
    manager = PluginManager()
    with pytest.warns(PluginLoadWarning, match="bad config"):
        registry = manager.registry
    assert "good" in registry.names("architecture")
    assert manager.plugins["raises"].error.startswith("nf_register_architectures failed: RuntimeError")


def test_environment_disables_autoload_or_blocks_named_plugins(site, monkeypatch):
    make_distribution(site, "nf-fake-arch", "1.0", "fake", "fake_arch_plugin2", ARCH_PLUGIN.format(arch="fake"))
    monkeypatch.setenv("NF_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fake" not in PluginManager().plugins
    monkeypatch.delenv("NF_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("NF_BLOCK_PLUGINS", "other, fake")
    assert "fake" not in PluginManager().plugins
    monkeypatch.setenv("NF_BLOCK_PLUGINS", "nf-fake-arch")
    assert "fake" not in PluginManager().plugins
    monkeypatch.delenv("NF_BLOCK_PLUGINS")
    assert "fake" in PluginManager().plugins


def test_nf_plugins_lists_distribution_version_and_registrations(site, monkeypatch, capsys):
    make_distribution(site, "nf-fake-arch", "1.2.3", "fake", "fake_arch_plugin3", ARCH_PLUGIN.format(arch="fake"))
    make_distribution(site, "nf-broken", "0.1", "broken", "broken_plugin2", "raise ImportError('needs libfoo')\n")
    monkeypatch.setattr(manager_module, "_manager", None)
    with pytest.warns(PluginLoadWarning):
        code = main(["plugins"])
    out = capsys.readouterr().out
    assert code == 1  # a broken plugin makes `nf plugins` fail, so CI notices
    assert "fake  (nf-fake-arch 1.2.3)  1 registered" in out
    assert "    architecture fake" in out
    assert "broken  (nf-broken 0.1)  FAILED: ImportError: needs libfoo" in out
    assert "nfkit-core  (nfkit-core " in out
    monkeypatch.setattr(manager_module, "_manager", None)
    with pytest.warns(PluginLoadWarning):
        main(["plugins", "--json"])
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["fake"]["registered"] == ["architecture fake"]
    monkeypatch.setattr(manager_module, "_manager", None)


def test_unknown_names_list_the_available_ones():
    registry = Registry()
    registry.add("metric", "fid", object())
    registry.add("metric", "bpd", object())
    with pytest.raises(UnknownNameError, match="unknown metric 'nll'; available: bpd, fid"):
        registry.get("metric", "nll")
    with pytest.raises(ValueError, match="unknown registry kind 'widget'"):
        registry.add("widget", "x", object())


def test_architecture_config_from_defaults_preset_and_overrides():
    @dataclasses.dataclass
    class Config:
        depth: int = 2
        width: int = 8

    spec = ArchitectureSpec("toy", Config, lambda c, d: None, presets={"big": {"depth": 6, "width": 64}})
    assert spec.make_config() == Config(2, 8)
    assert spec.make_config("big", width=32) == Config(6, 32)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\] for architecture 'toy'"):
        spec.make_config(colour=1)
    with pytest.raises(UnknownNameError, match="has no preset 'huge'; available: big"):
        spec.make_config("huge")
