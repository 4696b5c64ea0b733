"""The ``tcpcom`` framing against the core's framer contract (every split point, byte at a
time, garbage, size limits, end of stream), as any polysock framing plugin is checked."""

from __future__ import annotations

import functools

import pytest

testing = pytest.importorskip("polysock.testing", reason="the core's plugin kit")
pytest.importorskip("hypothesis")

from tcpcom._plugin import tcpcom_framer  # noqa: E402


class TestTcpcomFraming(testing.FramerContractTests):  # type: ignore[name-defined,misc]
    contracts = [
        testing.FramerContract(
            tcpcom_framer,
            valid_payload=testing.delimiter_safe(b"\0"),
            at_eof="discard",  # an unterminated tail is dropped at the end, not an error
            name="tcpcom NUL",
            examples=40,
        ),
        testing.FramerContract(
            functools.partial(tcpcom_framer, "\n"),
            valid_payload=testing.delimiter_safe(b"\n"),
            at_eof="discard",
            name="tcpcom endOfBlock=\\n",
            examples=20,
        ),
    ]
