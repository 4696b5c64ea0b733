"""Install only the flavour you need: run inside a tox env that installed core + one flavour.

The per-flavour tox envs (``py3XX-<flavour>``) run this file after the flavour's own tests,
with ``POLYSOCK_ISOLATION_EXPECT`` naming the package directory they installed. It checks that
the flavour's modules import, that no other flavour's modules exist, and that ``polysock
plugins`` lists exactly the core and that flavour.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from importlib import metadata

import pytest
from conftest import run_cli

#: package directory -> (distribution, import names)
FLAVOURS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tcpcom": ("polysock-tcpcom", ("tcpcom",)),
    "simplesockets": ("polysock-simplesockets", ("simplesockets",)),
    "serpy": ("polysock-serpy", ("serpy", "serpy2")),
    "mactcp": ("polysock-mactcp", ("mactcp",)),
    "kamaelia-tcp": ("polysock-kamaelia-tcp", ("polysock_kamaelia",)),
}

EXPECT = os.environ.get("POLYSOCK_ISOLATION_EXPECT", "")
pytestmark = pytest.mark.skipif(
    EXPECT not in FLAVOURS,
    reason="run by the per-flavour tox envs (POLYSOCK_ISOLATION_EXPECT=<package dir>)",
)


def test_the_flavour_imports_under_its_original_names() -> None:
    for module in FLAVOURS[EXPECT][1]:
        importlib.import_module(module)


def test_no_other_flavour_is_importable() -> None:
    for name, (_dist, modules) in FLAVOURS.items():
        if name == EXPECT:
            continue
        for module in modules:
            assert importlib.util.find_spec(module) is None, f"{module} ({name}) is installed"


def test_only_core_and_this_flavour_are_installed() -> None:
    ours = {
        d.metadata["Name"].lower()
        for d in metadata.distributions()
        if d.metadata["Name"] and d.metadata["Name"].lower().startswith("polysock")
    }
    assert ours == {"polysock", FLAVOURS[EXPECT][0]}


def test_plugins_command_lists_exactly_core_and_this_flavour() -> None:
    proc = run_cli("plugins")
    assert proc.returncode == 0, proc.stderr
    _header, _rule, *rows = proc.stdout.strip().splitlines()
    assert "failed to load" not in proc.stdout
    distributions = {row.split()[1] for row in rows if row.strip()}
    assert distributions == {"polysock", FLAVOURS[EXPECT][0]}
