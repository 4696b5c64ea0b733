"""The core's framer contract kit (polysock.testing) applied to both registered framers."""

from __future__ import annotations

import functools

import pytest

testing = pytest.importorskip("polysock.testing")

from polysock_serpy.framing import (  # noqa: E402
    BLOCKIDCODE,
    Serpy2Framer,
    SerpyBlockFramer,
)


class TestSerpyBlockFramer(testing.FramerContractTests):  # type: ignore[misc, name-defined]
    framer_factory = SerpyBlockFramer
    valid_payload = staticmethod(testing.delimiter_safe(b"\x1f"))
    at_eof = "discard"  # serpy drops a partial block at the end of the stream
    examples = 40


class TestSerpy2Framer(testing.FramerContractTests):  # type: ignore[misc, name-defined]
    contracts = [
        testing.FramerContract(
            Serpy2Framer, at_eof="discard", tokens=[BLOCKIDCODE], examples=40,
            name="Serpy2Framer",
        ),
        testing.FramerContract(
            functools.partial(Serpy2Framer, defer_large=True), at_eof="discard",
            tokens=[BLOCKIDCODE], examples=20, name="Serpy2Framer(defer_large=True)",
        ),
    ]
