"""The MacTCP constants under the name the library reference uses (``MACTCP.PassiveOpenDone``).

Identical to :mod:`MACTCPconst`, which later documentation and the original package used.
"""

from __future__ import annotations

import MACTCPconst as _const
from MACTCPconst import *  # noqa: F403

__all__ = list(_const.__all__)
