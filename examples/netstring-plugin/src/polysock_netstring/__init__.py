"""Netstring framing for polysock (``framing="netstring"`` once installed).

A netstring is ``<length>:<payload>,``: the payload's length in ASCII decimal digits, a colon,
the payload, a comma (D. J. Bernstein, https://cr.yp.to/proto/netstrings.txt). The example
plugin of polysock's plugin author's guide.
"""

from __future__ import annotations

from .framing import NetstringFramer

__all__ = ["NetstringFramer", "__version__"]
__version__ = "0.1.0"
