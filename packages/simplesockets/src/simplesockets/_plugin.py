"""polysock plugin: makes the flavour visible to ``polysock plugins`` and tools.

simplesockets needs no framer of its own: its wire format is the core's ``raw`` framing.
"""

from __future__ import annotations

from polysock import Flavour, hookimpl


@hookimpl
def polysock_add_flavours() -> list[Flavour]:
    return [
        Flavour(
            name="simplesockets",
            summary="simplesockets TCPServer/TCPClient (MrPoisen): raw bytes, no framing",
            framing="raw",
            framing_options={},
            modules=("simplesockets",),
        )
    ]
