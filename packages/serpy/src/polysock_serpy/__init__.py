"""polysock-serpy: the implementation behind the ``serpy`` and ``serpy2`` modules.

Applications import :mod:`serpy` or :mod:`serpy2`; this package holds what they share (the
framers registered with polysock's plugin hooks, the queues/lifetime machinery, the fast
base85 and checksum code) and the benchmark (``python -m polysock_serpy.bench``).
"""

from __future__ import annotations

from .__about__ import __version__
from .errors import ConnectionClosed, ProtocolWarning, UnpickleDisabledWarning
from .framing import Serpy2Framer, SerpyBlockFramer

__all__ = [
    "ConnectionClosed",
    "ProtocolWarning",
    "Serpy2Framer",
    "SerpyBlockFramer",
    "UnpickleDisabledWarning",
    "__version__",
]
