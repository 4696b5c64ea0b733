"""Run the example's tests from a checkout too: without an installed polysock-netstring, the
package is imported from ../src (its entry point then does not exist: the tests that need it
register the plugin in code)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("polysock_netstring") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
