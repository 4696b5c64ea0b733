"""mactcp's polysock plugin: registers the flavour through the core's hooks.

Loaded by the core from the ``polysock`` entry-point group, so ``polysock plugins`` lists the
flavour and tools can speak its wire format (a raw byte stream: the built-in ``raw`` framer).
"""

from __future__ import annotations

from polysock import Flavour, hookimpl

from .__about__ import __version__

FLAVOUR = Flavour(
    name="mactcp",
    summary=(
        "classic MacPython mactcp: MacTCP TCP streams (PassiveOpen/ActiveOpen, Send/Rcv with "
        "urgent data, Close/Abort, Status, asr events)"
    ),
    framing="raw",
    framing_options={},
    modules=("mactcp", "MACTCPconst", "MACTCP"),
    extra={"version": __version__, "distribution": "polysock-mactcp"},
)


@hookimpl
def polysock_add_flavours() -> list[Flavour]:
    return [FLAVOUR]
