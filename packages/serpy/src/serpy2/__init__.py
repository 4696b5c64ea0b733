"""serpy2 (protocol 2), reimplemented on polysock: ``import serpy2``.

Everything the original package exported is here (``from serpy2 import *`` works as before,
including ``serpy2.queue.Empty`` and the protocol constants), plus :class:`ConnectionClosed`
and :class:`ProtocolWarning`. See the package README for the differences.
"""

from .serpy2 import *  # noqa: F403
from .serpy2 import __all__ as __all__
