"""The polysock plugin of polysock-serpy (entry point ``serpy`` in group ``polysock``).

It registers serpy's two framings through the core's hooks, so that every polysock tool can
speak them (``polysock.framer("serpy2")``, ``polysock demo``), and describes the two legacy
flavours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from polysock import Flavour, Framer, hookimpl

from .framing import Serpy2Framer, SerpyBlockFramer

FRAMERS: dict[str, Callable[..., Framer]] = {
    "serpy": SerpyBlockFramer,
    "serpy2": Serpy2Framer,
}


@hookimpl
def polysock_add_framers() -> Mapping[str, Callable[..., Framer]]:
    return FRAMERS


@hookimpl
def polysock_add_flavours() -> list[Flavour]:
    return [
        Flavour(
            name="serpy",
            summary="serpy protocol 1: 0x1F-separated blocks, in-band mode switches and "
            "acknowledgements, base85/pickle modes",
            framing="serpy",
            framing_options={},
            modules=("serpy",),
        ),
        Flavour(
            name="serpy2",
            summary="serpy protocol 2: 14-byte headers (magic, type, byte-sum checksum, "
            "length) for str/bytes/int/float, geared to large binary blobs",
            framing="serpy2",
            framing_options={},
            modules=("serpy2",),
        ),
    ]
