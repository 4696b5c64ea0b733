"""The core as installed from its wheel: entry points, console script and demo are real."""

from __future__ import annotations

import shutil

from conftest import run_cli


def test_plugins_command_lists_the_builtin_framers() -> None:
    proc = run_cli("plugins")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("polysock "))
    for name in ("delimiter", "length-prefix", "raw", "none", "tls"):
        assert name in line


def test_console_script_is_installed() -> None:
    assert shutil.which("polysock") is not None


def test_demo_exchanges_every_builtin_framing() -> None:
    proc = run_cli("demo", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS") >= 3
    assert "FAIL" not in proc.stdout
