"""serpy (protocol 1), reimplemented on polysock: ``import serpy as sp``.

Everything the original package exported is here (``from serpy import *`` works as before,
including ``sp.queue.Empty``), plus :class:`ConnectionClosed`, :class:`ProtocolWarning` and
:class:`UnpickleDisabledWarning`. See the package README for the differences.
"""

from .serpy import *  # noqa: F403
from .serpy import __all__ as __all__
