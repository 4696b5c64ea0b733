"""The plugin manager against REAL entry points.

Every test builds real distributions on disk (``<name>-<version>.dist-info`` with METADATA,
entry_points.txt and top_level.txt, next to the plugin modules) in a temporary directory that
is put on ``sys.path``; ``importlib.metadata`` discovers them exactly as it discovers installed
wheels. ``sys.path`` is reduced to that directory plus the standard library and the core's
source, so plugins installed in the development environment cannot interfere.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
import warnings
from pathlib import Path

import pluggy
import polysock
import pytest
from polysock import (
    DelimiterFramer,
    Flavour,
    LengthPrefixFramer,
    PluginError,
    PluginLoadError,
    PluginLoadWarning,
    hookimpl,
)
from polysock.__about__ import __version__
from polysock.plugins import ENTRY_POINT_GROUP, PluginInfo, PluginManager

ENV_VARS = ("POLYSOCK_STRICT_PLUGINS", "POLYSOCK_DISABLE_PLUGINS", "POLYSOCK_NO_AUTOLOAD")


class Dists:
    """Writes real distributions into one directory on sys.path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(
        self,
        name: str,
        version: str,
        entry_points: dict[str, str],
        modules: dict[str, str],
    ) -> None:
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (info / "top_level.txt").write_text("\n".join(modules) + "\n", encoding="utf-8")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            sys.modules.pop(module, None)
            self.modules.append(module)
        importlib.invalidate_caches()


@pytest.fixture
def dists(tmp_path, monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    isolated = [
        p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p
    ]
    monkeypatch.setattr(sys, "path", [str(tmp_path), *isolated])
    importlib.invalidate_caches()
    created = Dists(tmp_path)
    # nothing but our own distributions provides polysock plugins now
    assert not list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    yield created
    for module in created.modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


@pytest.fixture
def fresh_global_manager():
    """Forget the process-wide manager before and after the test."""
    polysock.plugins.reset()
    yield
    polysock.plugins.reset()


GOOD = """
    from polysock import DelimiterFramer, Flavour, hookimpl

    @hookimpl
    def polysock_add_framers():
        return {"fake-nul": lambda **options: DelimiterFramer(b"\\0", **options)}

    @hookimpl
    def polysock_add_flavours():
        return [Flavour("fakeflavour", summary="a fake", framing="fake-nul")]
"""

GOOD_OBJECT = """
    from polysock import LengthPrefixFramer, hookimpl

    class Plugin:
        @hookimpl
        def polysock_add_framers(self):
            return {"fake-lp2": lambda **options: LengthPrefixFramer(2, **options)}

    PLUGIN = Plugin()
"""

BROKEN = """
    raise RuntimeError("boom from the broken plugin")
"""


def add_good(dists: Dists) -> None:
    dists.add("fakeplug", "1.2.3", {"fakeplug": "fakeplug_mod"}, {"fakeplug_mod": GOOD})


def add_broken(dists: Dists) -> None:
    dists.add("broken-dist", "0.0.1", {"brokenplug": "broken_mod"}, {"broken_mod": BROKEN})


def no_plugin_warnings(record: list[warnings.WarningMessage]) -> bool:
    return not [w for w in record if issubclass(w.category, PluginLoadWarning)]


# ---------------------------------------------------------------- discovery


def test_entry_point_plugin_is_discovered_and_used(dists):
    add_good(dists)
    dists.add("objplug", "0.5", {"objplug": "objplug_mod:PLUGIN"}, {"objplug_mod": GOOD_OBJECT})
    pm = PluginManager()
    assert pm.get_plugin("fakeplug") is sys.modules["fakeplug_mod"]
    assert pm.get_plugin("objplug") is sys.modules["objplug_mod"].PLUGIN
    framer = pm.make_framer("fake-nul", max_frame_size=10)
    assert isinstance(framer, DelimiterFramer)
    assert framer.frame(b"hi") == b"hi\x00"
    assert framer.max_frame_size == 10  # options reach the factory
    assert pm.make_framer("fake-lp2").frame(b"hi") == b"\x00\x02hi"
    flavour = pm.flavour("fakeflavour")
    assert flavour == Flavour("fakeflavour", summary="a fake", framing="fake-nul")
    # the built-ins are still there
    assert isinstance(pm.make_framer("length-prefix"), LengthPrefixFramer)


def test_plugin_infos_name_distribution_version_and_contributions(dists):
    add_good(dists)
    dists.add("objplug", "0.5", {"objplug": "objplug_mod:PLUGIN"}, {"objplug_mod": GOOD_OBJECT})
    infos = PluginManager().plugin_infos()
    assert infos == [
        PluginInfo(
            "polysock",
            "polysock",
            __version__,
            framers=("delimiter", "length-prefix", "raw"),
            handshakes=("none", "tls"),
        ),
        PluginInfo(
            "fakeplug", "fakeplug", "1.2.3", framers=("fake-nul",), flavours=("fakeflavour",)
        ),
        PluginInfo("objplug", "objplug", "0.5", framers=("fake-lp2",)),
    ]
    assert all(info.loaded for info in infos)


def test_public_list_shows_distributions_and_versions(dists, fresh_global_manager):
    add_good(dists)
    add_broken(dists)
    with pytest.warns(PluginLoadWarning):
        infos = polysock.plugins.list()
    assert [(i.name, i.distribution, i.version, i.loaded) for i in infos] == [
        ("polysock", "polysock", __version__, True),
        ("fakeplug", "fakeplug", "1.2.3", True),
        ("brokenplug", "broken-dist", "0.0.1", False),  # failed ones last
    ]
    assert "boom from the broken plugin" in (infos[-1].error or "")
    # the process-wide manager is the one polysock.framer() uses
    assert polysock.framer("fake-nul").frame(b"x") == b"x\x00"


def test_code_registered_plugin_is_attributed_to_its_distribution(dists, monkeypatch):
    add_good(dists)
    monkeypatch.setenv("POLYSOCK_NO_AUTOLOAD", "1")
    pm = PluginManager()
    module = importlib.import_module("fakeplug_mod")
    pm.register(module, name="by-hand")
    info = next(i for i in pm.plugin_infos() if i.name == "by-hand")
    assert (info.distribution, info.version) == ("fakeplug", "1.2.3")

    class Local:
        @hookimpl
        def polysock_add_framers(self):
            return {"local": DelimiterFramer}

    pm.register(Local(), name="local-plugin")
    info = next(i for i in pm.plugin_infos() if i.name == "local-plugin")
    assert (info.distribution, info.version, info.framers) == (None, None, ("local",))


# ---------------------------------------------------------------- broken plugins


def test_broken_plugin_is_skipped_with_a_warning_naming_dist_version_error(dists):
    add_good(dists)
    add_broken(dists)
    with pytest.warns(PluginLoadWarning) as record:
        pm = PluginManager()
    messages = [str(w.message) for w in record if issubclass(w.category, PluginLoadWarning)]
    assert len(messages) == 1
    message = messages[0]
    assert "'brokenplug'" in message
    assert "broken-dist 0.0.1" in message
    assert "RuntimeError: boom from the broken plugin" in message
    assert "skipped" in message
    # the others are not affected
    assert pm.get_plugin("brokenplug") is None
    assert pm.make_framer("fake-nul").frame(b"") == b"\x00"
    failed = pm.plugin_infos()[-1]
    assert (failed.name, failed.distribution, failed.version, failed.loaded) == (
        "brokenplug",
        "broken-dist",
        "0.0.1",
        False,
    )


def test_entry_point_to_a_missing_module_is_skipped(dists):
    dists.add("ghost", "3.0", {"ghostplug": "no_such_module_for_polysock_tests"}, {})
    add_good(dists)
    with pytest.warns(PluginLoadWarning, match=r"ghost 3\.0.*ModuleNotFoundError"):
        pm = PluginManager()
    assert pm.get_plugin("fakeplug") is not None


def test_plugin_with_a_bad_hook_signature_is_skipped(dists):
    source = """
        from polysock import hookimpl

        @hookimpl
        def polysock_make_framer(name, options, bogus_argument):
            return None
    """
    dists.add("badsig", "1.0", {"badsig": "badsig_mod"}, {"badsig_mod": source})
    with pytest.warns(PluginLoadWarning, match=r"(?s)badsig 1\.0.*bogus_argument"):
        pm = PluginManager()
    assert pm.get_plugin("badsig") is None
    assert isinstance(pm.make_framer("raw"), polysock.RawFramer)


@pytest.mark.parametrize("value", ["1", "true"])
def test_strict_mode_turns_a_load_failure_into_an_error(dists, monkeypatch, value):
    add_good(dists)
    add_broken(dists)
    monkeypatch.setenv("POLYSOCK_STRICT_PLUGINS", value)
    with pytest.raises(PluginLoadError) as info:
        PluginManager()
    message = str(info.value)
    assert "'brokenplug'" in message
    assert "broken-dist 0.0.1" in message
    assert "boom from the broken plugin" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value, PluginError)


def test_strict_mode_with_healthy_plugins_loads_them(dists, monkeypatch):
    add_good(dists)
    monkeypatch.setenv("POLYSOCK_STRICT_PLUGINS", "1")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pm = PluginManager()
    assert no_plugin_warnings(record)
    assert pm.get_plugin("fakeplug") is not None


# ---------------------------------------------------------------- environment


def test_disable_plugins_skips_named_plugins_without_importing_them(dists, monkeypatch):
    add_good(dists)
    add_broken(dists)
    dists.add("objplug", "0.5", {"objplug": "objplug_mod:PLUGIN"}, {"objplug_mod": GOOD_OBJECT})
    monkeypatch.setenv("POLYSOCK_DISABLE_PLUGINS", " brokenplug , objplug,")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pm = PluginManager()
    assert no_plugin_warnings(record)
    assert "broken_mod" not in sys.modules
    assert "objplug_mod" not in sys.modules
    assert pm.get_plugin("objplug") is None
    assert pm.get_plugin("fakeplug") is not None
    with pytest.raises(PluginError, match="unknown framing 'fake-lp2'"):
        pm.make_framer("fake-lp2")
    assert [i.name for i in pm.plugin_infos()] == ["polysock", "fakeplug"]


def test_disable_plugins_even_in_strict_mode(dists, monkeypatch):
    add_broken(dists)
    monkeypatch.setenv("POLYSOCK_STRICT_PLUGINS", "1")
    monkeypatch.setenv("POLYSOCK_DISABLE_PLUGINS", "brokenplug")
    pm = PluginManager()  # no PluginLoadError: the broken plugin is never imported
    assert pm.get_plugin("brokenplug") is None


def test_no_autoload_loads_only_builtins_and_explicit_plugins(dists, monkeypatch):
    add_good(dists)
    add_broken(dists)
    monkeypatch.setenv("POLYSOCK_NO_AUTOLOAD", "1")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pm = PluginManager()
    assert no_plugin_warnings(record)
    assert "fakeplug_mod" not in sys.modules
    assert "broken_mod" not in sys.modules
    assert [name for name, _ in pm.list_name_plugin()] == ["polysock"]
    with pytest.raises(PluginError):
        pm.make_framer("fake-nul")

    class Explicit:
        @hookimpl
        def polysock_add_framers(self):
            return {"explicit": lambda **kw: DelimiterFramer(b"!", **kw)}

    pm.register(Explicit(), name="explicit")
    assert pm.make_framer("explicit").frame(b"a") == b"a!"


def test_no_autoload_with_the_process_wide_manager(dists, monkeypatch, fresh_global_manager):
    add_good(dists)
    monkeypatch.setenv("POLYSOCK_NO_AUTOLOAD", "1")

    class Explicit:
        @hookimpl
        def polysock_add_framers(self):
            return {"explicit-global": lambda **kw: DelimiterFramer(b"#", **kw)}

    plugin = Explicit()
    assert polysock.plugins.register(plugin, name="explicit-global") == "explicit-global"
    assert polysock.framer("explicit-global").frame(b"a") == b"a#"
    assert [i.name for i in polysock.plugins.list()] == ["polysock", "explicit-global"]
    with pytest.raises(PluginError):
        polysock.framer("fake-nul")  # installed, but autoload is off
    polysock.plugins.unregister(plugin)
    with pytest.raises(PluginError):
        polysock.framer("explicit-global")


def test_reset_rereads_the_environment(dists, monkeypatch, fresh_global_manager):
    add_good(dists)
    assert polysock.framer("fake-nul").frame(b"") == b"\x00"
    monkeypatch.setenv("POLYSOCK_DISABLE_PLUGINS", "fakeplug")
    assert polysock.framer("fake-nul").frame(b"") == b"\x00"  # still the old manager
    polysock.plugins.reset()
    with pytest.raises(PluginError):
        polysock.framer("fake-nul")


# ---------------------------------------------------------------- clashes


def clash_source(framer_name: str) -> str:
    return f"""
        from polysock import RawFramer, hookimpl

        @hookimpl
        def polysock_add_framers():
            return {{{framer_name!r}: RawFramer}}
    """


def test_framer_name_clash_names_both_plugins(dists):
    dists.add("clash-a", "1.0", {"clasha": "clasha_mod"}, {"clasha_mod": clash_source("x")})
    dists.add("clash-b", "2.0", {"clashb": "clashb_mod"}, {"clashb_mod": clash_source("x")})
    pm = PluginManager()
    with pytest.raises(PluginError) as info:
        pm.make_framer("x")
    message = str(info.value)
    assert "framer 'x' is registered twice" in message
    assert "plugin 'clasha' (clash-a 1.0)" in message
    assert "plugin 'clashb' (clash-b 2.0)" in message
    assert "POLYSOCK_DISABLE_PLUGINS=clashb" in message  # how to get out of it
    with pytest.raises(PluginError):
        pm.make_framer("raw")  # the registry is unusable until the clash is resolved


def test_clash_resolved_by_disabling_one(dists, monkeypatch):
    dists.add("clash-a", "1.0", {"clasha": "clasha_mod"}, {"clasha_mod": clash_source("x")})
    dists.add("clash-b", "2.0", {"clashb": "clashb_mod"}, {"clashb_mod": clash_source("x")})
    monkeypatch.setenv("POLYSOCK_DISABLE_PLUGINS", "clashb")
    pm = PluginManager()
    assert isinstance(pm.make_framer("x"), polysock.RawFramer)
    info = next(i for i in pm.plugin_infos() if i.name == "clasha")
    assert info.framers == ("x",)


def test_clash_with_a_builtin_blames_the_plugin(dists):
    dists.add("shadow", "0.1", {"shadowraw": "shadow_mod"}, {"shadow_mod": clash_source("raw")})
    pm = PluginManager()
    with pytest.raises(PluginError) as info:
        pm.make_framer("raw")
    message = str(info.value)
    assert f"plugin 'polysock' (polysock {__version__})" in message
    assert "plugin 'shadowraw' (shadow 0.1)" in message
    # the way out names the plugin, never the core (which cannot be disabled)
    assert "POLYSOCK_DISABLE_PLUGINS=shadowraw" in message
    assert "POLYSOCK_DISABLE_PLUGINS=polysock" not in message


# ---------------------------------------------------------------- hook validation


def test_misspelled_hook_in_an_entry_point_plugin_fails_loudly(dists):
    source = """
        from polysock import hookimpl

        @hookimpl
        def polysock_conection_made(event):
            pass
    """
    dists.add("typo", "1.0", {"typo": "typo_mod"}, {"typo_mod": source})
    with pytest.raises(pluggy.PluginValidationError, match="polysock_conection_made"):
        PluginManager()


def test_addhooks_from_entry_points_lets_other_plugins_implement_new_hooks(dists):
    # "aa-user" sorts (and loads) before "zz-provider" that declares the hook it implements:
    # the pending implementation is validated once the spec arrives, so check_pending passes.
    provider = """
        from polysock import hookimpl, hookspec

        class Specs:
            @hookspec
            def polysock_custom_event(self, value):
                "A hook added by a plugin."

        @hookimpl
        def polysock_addhooks(pluginmanager):
            pluginmanager.add_hookspecs(Specs)
    """
    user = """
        from polysock import hookimpl

        @hookimpl
        def polysock_custom_event(value):
            return f"user got {value}"
    """
    dists.add("hookprov", "1.0", {"zz-provider": "hookprov_mod"}, {"hookprov_mod": provider})
    dists.add("hookuser", "1.0", {"aa-user": "hookuser_mod"}, {"hookuser_mod": user})
    pm = PluginManager()
    assert pm.hook.polysock_custom_event(value=42) == ["user got 42"]
