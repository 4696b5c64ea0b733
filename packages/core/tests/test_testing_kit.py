"""The plugin author's kit, ``polysock.testing``.

* Every built-in framer configuration passes the whole framer contract, through the pytest
  test class a plugin author uses (``FramerContractTests``).
* Deliberately broken framers, each with one bug real framers have had, are caught by the
  check responsible for that rule, with a message that names the problem, and by no other
  check: the kit's verdict points at the bug.
* The pytest plugin part (``-p polysock.testing``, ``--polysock-examples``, the summary of
  examples run, ``POLYSOCK_CONTRACT_EXAMPLES``) works in a real pytest run (pytester).
* ``loopback_pair`` / ``loopback_pair_sync`` connect two real Connections over 127.0.0.1 and
  close everything on exit, also when the test body fails.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
import trustme
from polysock import (
    DelimiterFramer,
    FrameTooLarge,
    IncompleteFrame,
    LengthPrefixFramer,
    LocalProtocolError,
    RawFramer,
    RemoteProtocolError,
)
from polysock.framing import DEFAULT_MAX_FRAME_SIZE, BaseFramer, Buffer
from polysock.runtime import get_runtime
from polysock.testing import (
    CHECKS,
    ContractViolation,
    FramerContract,
    FramerContractTests,
    delimiter_safe,
    feed,
    loopback_pair,
    loopback_pair_sync,
)

pytest_plugins = ["pytester"]

EXAMPLES = 25  # per property check and configuration; test_framing_properties goes deeper


def delimiter_contract(delimiter: bytes, **options: Any) -> FramerContract:
    keep = options.get("strip") is False
    at_eof = options.get("at_eof", "error")
    return FramerContract(
        functools.partial(DelimiterFramer, delimiter, **options),
        valid_payload=delimiter_safe(delimiter),
        expect=(lambda p: p + delimiter) if keep else None,
        at_eof=at_eof,
        examples=EXAMPLES,
    )


BUILTIN_CONTRACTS = [
    FramerContract(RawFramer, examples=EXAMPLES, name="raw"),
    FramerContract(LengthPrefixFramer, examples=EXAMPLES, name="length-prefix 4 big"),
    FramerContract(functools.partial(LengthPrefixFramer, 1), examples=EXAMPLES),
    FramerContract(functools.partial(LengthPrefixFramer, 2, "little"), examples=EXAMPLES),
    FramerContract(functools.partial(LengthPrefixFramer, 8, "little"), examples=EXAMPLES),
    FramerContract(functools.partial(LengthPrefixFramer, 4, magic=b"PS"), examples=EXAMPLES),
    FramerContract(
        functools.partial(LengthPrefixFramer, 2, "big", magic=b"\xca\xfe"), examples=EXAMPLES
    ),
    delimiter_contract(b"\n"),
    delimiter_contract(b"\0", at_eof="deliver"),
    delimiter_contract(b"\r\n", strip=False),
    delimiter_contract(b"\r\n", escape_check=True),
    delimiter_contract(b"END", at_eof="discard"),
    delimiter_contract(b"aba", strip=False),  # self-overlapping delimiter
]


class TestBuiltinFramers(FramerContractTests):
    """What a plugin author writes, applied to the core's own framers."""

    contracts = BUILTIN_CONTRACTS


class TestBuiltinFramerFactoryAttribute(FramerContractTests):
    """The one-line form: a factory (here a plain function, which must not become a method)
    and options as class attributes."""

    @staticmethod
    def framer_factory(**options: Any) -> DelimiterFramer:
        return DelimiterFramer(b"\r\n", at_eof="deliver", **options)

    valid_payload = delimiter_safe(b"\r\n")
    at_eof = "deliver"
    examples = 10


# -------------------------------------------------------------------- broken framers


class LineFramer(BaseFramer):
    """A correct third-party framer: newline-terminated lines, the tail delivered at EOF."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame_size)
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            return self._tail()
        self._buf += data
        *lines, rest = self._buf.split(b"\n")
        done = [bytes(line) for line in lines]
        for i, line in enumerate(done):
            if len(line) > self.max_frame_size:
                raise FrameTooLarge(self.max_frame_size, len(line), frames=done[:i])
        if len(rest) > self.max_frame_size:
            raise FrameTooLarge(self.max_frame_size, len(rest), frames=done)
        self._buf = bytearray(rest)
        return done

    def _tail(self) -> list[bytes]:
        tail = bytes(self._buf)
        self._buf.clear()
        return [tail] if tail else []

    def frame(self, payload: Buffer) -> bytes:
        if len(payload) > self.max_frame_size:
            raise LocalProtocolError(f"{len(payload)} bytes > {self.max_frame_size}")
        return bytes(payload) + b"\n"


def line_contract(factory: Callable[..., Any], **options: Any) -> FramerContract:
    options.setdefault("at_eof", "deliver")
    return FramerContract(
        factory,
        valid_payload=delimiter_safe(b"\n"),
        examples=30,
        settings={"derandomize": True},
        **options,
    )


class SplitDependentFramer(BaseFramer):
    """CRLF lines, but the delimiter is searched in each new chunk only: a b"\\r\\n" that TCP
    cut in two is missed and two lines run together."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame_size)
        self._buf = b""

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            if self._buf:
                raise IncompleteFrame(len(self._buf))
            return []
        parts = data.split(b"\r\n")
        parts[0] = self._buf + parts[0]
        self._buf = parts.pop()
        for i, part in enumerate(parts):
            if len(part) > self.max_frame_size:
                raise FrameTooLarge(self.max_frame_size, len(part), frames=parts[:i])
        if len(self._buf) > self.max_frame_size + 1:
            raise FrameTooLarge(self.max_frame_size, len(self._buf), frames=parts)
        return parts

    def frame(self, payload: Buffer) -> bytes:
        if len(payload) > self.max_frame_size:
            raise LocalProtocolError("too large")
        return bytes(payload) + b"\r\n"


class LateLimitFramer(BaseFramer):
    """A 2-byte length prefix that compares the length with the limit only once the whole
    body is buffered: any peer can make it hold 64 KiB per connection, whatever the limit."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(min(max_frame_size, 0xFFFF))
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            if self._buf:
                raise IncompleteFrame(len(self._buf))
            return []
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 2:
            size = int.from_bytes(self._buf[:2], "big")
            if len(self._buf) < 2 + size:
                break
            if size > self.max_frame_size:  # too late: the body is already buffered
                raise FrameTooLarge(self.max_frame_size, size, frames=out)
            out.append(bytes(self._buf[2 : 2 + size]))
            del self._buf[: 2 + size]
        return out

    def frame(self, payload: Buffer) -> bytes:
        if len(payload) > self.max_frame_size:
            raise LocalProtocolError("too large")
        return len(payload).to_bytes(2, "big") + bytes(payload)


class ValueErrorFramer(BaseFramer):
    """Netstrings whose length is parsed with int(): a non-numeric length raises ValueError
    out of receive_data(), which the transport cannot report as the peer's fault."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame_size)
        self._buf = b""

    def receive_data(self, data: bytes) -> list[bytes]:
        if not data:
            if self._buf:
                raise IncompleteFrame(len(self._buf))
            return []
        self._buf += data
        out: list[bytes] = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                if len(self._buf) > 12:
                    raise RemoteProtocolError("no ':' in sight", frames=out)
                return out
            size = int(self._buf[:colon])  # the bug
            if size > self.max_frame_size:
                raise FrameTooLarge(self.max_frame_size, size, frames=out)
            end = colon + 1 + size
            if len(self._buf) <= end:
                return out
            if self._buf[end : end + 1] != b",":
                raise RemoteProtocolError("missing ','", frames=out)
            out.append(self._buf[colon + 1 : end])
            self._buf = self._buf[end + 1 :]

    def frame(self, payload: Buffer) -> bytes:
        if len(payload) > self.max_frame_size:
            raise LocalProtocolError("too large")
        return b"%d:%s," % (len(payload), bytes(payload))


class TailLosingFramer(LineFramer):
    """Declares the tail delivered at EOF, and drops it."""

    def _tail(self) -> list[bytes]:
        self._buf.clear()
        return []


class LateDeliveryFramer(LineFramer):
    """Holds the last complete line back until the next read: fine for bulk transfer, a hang
    for request/response (the reply never comes out)."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame_size)
        self._held: list[bytes] = []

    def receive_data(self, data: bytes) -> list[bytes]:
        frames = self._held + super().receive_data(data)
        self._held = frames[-1:] if data else []
        return frames[:-1] if data else frames


class MutableFramesFramer(LineFramer):
    """Hands out bytearrays: frames the framer may still change."""

    def receive_data(self, data: bytes) -> list[bytes]:
        return [bytearray(f) for f in super().receive_data(data)]


class NoSendLimitFramer(LineFramer):
    def frame(self, payload: Buffer) -> bytes:
        return bytes(payload) + b"\n"


class ValueErrorOnSendFramer(LineFramer):
    def frame(self, payload: Buffer) -> bytes:
        if len(payload) > self.max_frame_size:
            raise ValueError("payload too large")
        return bytes(payload) + b"\n"


_shared_line_framer = LineFramer()

BROKEN = {
    "split-dependent": (
        FramerContract(
            SplitDependentFramer,
            valid_payload=delimiter_safe(b"\r\n"),
            examples=30,
            settings={"derandomize": True},
        ),
        "every_split",
        "every split",
        ["cut in two at byte", "the frames must not depend on how TCP split the stream"],
    ),
    "limit checked after the body": (
        FramerContract(LateLimitFramer, examples=30, settings={"derandomize": True}),
        "max_size_receive",
        "max size on receive",
        ["FrameTooLarge came only after", "never after buffering the body"],
    ),
    "ValueError on garbage": (
        FramerContract(ValueErrorFramer, examples=30, settings={"derandomize": True}),
        "garbage",
        "garbage",
        ["receive_data() raised ValueError", "only polysock.RemoteProtocolError"],
    ),
    "tail lost at EOF": (
        line_contract(TailLosingFramer),
        "eof",
        "end of stream",
        ["(the partial frame was lost)", "at_eof=deliver expects"],
    ),
    "tail lost silently at EOF": (
        line_contract(TailLosingFramer, at_eof="error"),
        "eof",
        "end of stream",
        ["gave nothing and no error: the partial frame was lost silently", "IncompleteFrame"],
    ),
    "tail delivered though declared an error": (
        line_contract(LineFramer, at_eof="error"),
        "eof",
        "end of stream",
        ["as a message without an error", "declare at_eof='deliver'"],
    ),
    "frame returned late": (
        line_contract(LateDeliveryFramer),
        "byte_at_a_time",
        "byte at a time",
        ["must be returned by the call that brings its last byte"],
    ),
    "bytearray frames": (
        line_contract(MutableFramesFramer),
        "roundtrip",
        "roundtrip",
        ["frame of type bytearray", "frames must be bytes"],
    ),
    "one framer for every connection": (
        line_contract(lambda **options: _shared_line_framer, name="shared LineFramer"),
        "shape",
        "shape",
        ["returned the same object twice"],
    ),
    "no limit on send": (
        line_contract(NoSendLimitFramer),
        "max_size_send",
        "max size on send",
        ["frame() accepted a payload of 41 bytes with max_frame_size=40"],
    ),
    "ValueError on send": (
        line_contract(ValueErrorOnSendFramer),
        "max_size_send",
        "max size on send",
        ["frame() raised ValueError", "must raise polysock.LocalProtocolError"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_kit_reports_each_broken_framer_with_a_clear_message(case: str) -> None:
    contract, check, rule, phrases = BROKEN[case]
    with pytest.raises(ContractViolation) as info:
        getattr(contract, f"check_{check}")()
    violation = info.value
    assert violation.rule == rule
    assert violation.framer == contract.name
    message = str(violation)
    assert message.startswith(f"{contract.name} breaks the framer contract [{rule}]: ")
    for phrase in phrases:
        assert phrase in message, message
    # and check_all() stops at a violation too (maybe an earlier rule's)
    with pytest.raises(ContractViolation):
        contract.replace(examples=10).check_all()


def failing_checks(contract: FramerContract) -> set[str]:
    failed = set()
    for check in CHECKS:
        try:
            getattr(contract, f"check_{check}")()
        except ContractViolation:
            failed.add(check)
    return failed


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("limit checked after the body", {"max_size_receive"}),
        ("ValueError on garbage", {"garbage"}),
        ("tail lost at EOF", {"eof"}),
        ("no limit on send", {"max_size_send"}),
    ],
)
def test_kit_blames_only_the_broken_rule(case: str, expected: set[str]) -> None:
    contract = BROKEN[case][0].replace(examples=15)
    assert failing_checks(contract) == expected


def test_split_dependent_framer_fails_the_split_rules_only() -> None:
    contract = BROKEN["split-dependent"][0].replace(examples=15)
    failed = failing_checks(contract)
    assert {"every_split", "byte_at_a_time"} <= failed
    assert not failed & {"shape", "max_size_send", "eof"}


def test_a_correct_third_party_framer_passes_and_examples_are_counted() -> None:
    contract = line_contract(LineFramer).replace(examples=12)
    counts = contract.check_all()
    # the four property checks ran hypothesis examples (a few more than asked is fine:
    # hypothesis also replays and explores), the deterministic ones none
    for check in ("roundtrip", "batch", "every_split", "garbage"):
        assert 12 <= counts[check] <= 40, counts
    assert set(counts) == {"roundtrip", "batch", "every_split", "garbage"}
    assert contract.examples_run == counts


def test_contract_options_are_validated() -> None:
    with pytest.raises(ValueError, match="is not valid for this framing"):
        FramerContract(DelimiterFramer, payloads=[b"a\nb"], valid_payload=delimiter_safe(b"\n"))
    with pytest.raises(ValueError, match="non-empty sample payload"):
        FramerContract(RawFramer, payloads=[b""])
    with pytest.raises(ValueError, match="at_eof"):
        FramerContract(RawFramer, at_eof="explode")
    with pytest.raises(ValueError, match="limit"):
        FramerContract(RawFramer, limit=0)
    with pytest.raises(TypeError, match="no framer"):
        FramerContractTests.framer_contracts()


def test_factory_that_ignores_max_frame_size_is_reported() -> None:
    def no_options() -> LineFramer:
        return LineFramer()

    contract = FramerContract(no_options, name="LineFramer without options")
    with pytest.raises(ContractViolation, match=r"factory\(max_frame_size=40\) raised"):
        contract.check_shape()


def test_delimiter_safe_rules_out_overlapping_tails() -> None:
    valid = delimiter_safe(b"aba")
    assert valid(b"xyz")
    assert not valid(b"xabay")
    assert not valid(b"xab")  # xab + aba = xababa: the delimiter starts inside the payload
    assert valid(b"xb")


def test_feed_reports_frames_carried_by_the_error() -> None:
    frames, error = feed(LengthPrefixFramer(1, max_frame_size=3), [b"\x01a\x02bc\x09"])
    assert frames == [b"a", b"bc"]
    assert isinstance(error, FrameTooLarge)
    frames, error = feed(DelimiterFramer(b"\n"), [b"x\ny"])
    assert frames == [b"x"]
    assert isinstance(error, IncompleteFrame)
    assert feed(DelimiterFramer(b"\n"), [b"x\n"], eof=False) == ([b"x"], None)


# -------------------------------------------------------------------- the pytest plugin

PLUGIN_SUITE = '''
import functools

from polysock import LengthPrefixFramer
from polysock.framing import BaseFramer
from polysock.errors import FrameTooLarge, IncompleteFrame, LocalProtocolError
from polysock.testing import FramerContractTests


class LateLimit(BaseFramer):
    def __init__(self, max_frame_size=16 * 1024 * 1024):
        super().__init__(min(max_frame_size, 0xFFFF))
        self._buf = bytearray()

    def receive_data(self, data):
        if not data:
            if self._buf:
                raise IncompleteFrame(len(self._buf))
            return []
        self._buf += data
        out = []
        while len(self._buf) >= 2:
            size = int.from_bytes(self._buf[:2], "big")
            if len(self._buf) < 2 + size:
                break
            if size > self.max_frame_size:
                raise FrameTooLarge(self.max_frame_size, size, frames=out)
            out.append(bytes(self._buf[2 : 2 + size]))
            del self._buf[: 2 + size]
        return out

    def frame(self, payload):
        if len(payload) > self.max_frame_size:
            raise LocalProtocolError("too large")
        return len(payload).to_bytes(2, "big") + bytes(payload)


class TestGood(FramerContractTests):
    framer_factory = functools.partial(LengthPrefixFramer, 2)


class TestLateLimit(FramerContractTests):
    framer_factory = LateLimit
'''


@pytest.mark.timeout(300)
def test_plugin_option_summary_and_failure_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_my_framer=PLUGIN_SUITE)
    result = pytester.runpytest(
        "-p", "polysock.testing", "--polysock-examples", "5",
        # this process imported polysock.testing before the inner run asked for it
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(passed=2 * len(CHECKS) - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "polysock framer contract: 5 hypothesis examples per check",
            "*- polysock framer contract: hypothesis examples run -*",
            "FAILED test_my_framer.py::TestLateLimit::test_max_size_receive[[]LateLimit[]]*",
        ]
    )
    out = result.stdout.str()
    assert "LateLimit breaks the framer contract [max size on receive]: FrameTooLarge came" in out
    counts = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and "::" in fields[1]:
            counts[fields[1]] = int(fields[0])
    good = "test_my_framer.py::TestGood::test_{}[LengthPrefixFramer(2)]"
    garbage = counts[good.format("garbage")]
    assert 5 <= garbage <= 20  # the override applies, not the default of 100


@pytest.mark.timeout(300)
def test_contract_class_works_without_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without -p polysock.testing the test class still runs; the example count comes from
    the environment and is recorded as a property (junit XML)."""
    monkeypatch.setenv("POLYSOCK_CONTRACT_EXAMPLES", "4")
    pytester.makepyfile(test_my_framer=PLUGIN_SUITE)
    result = pytester.runpytest(
        "-q", "-k", "TestGood", "--junitxml=report.xml", "-o", "junit_family=xunit1"
    )
    result.assert_outcomes(passed=len(CHECKS))
    assert "hypothesis examples run" not in result.stdout.str()
    tree = ET.parse(pytester.path / "report.xml")
    recorded = {
        case.get("name"): int(prop.get("value"))
        for case in tree.iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "polysock_examples"
    }
    assert len(recorded) == len(CHECKS)
    assert 4 <= recorded["test_garbage[LengthPrefixFramer(2)]"] <= 16
    assert recorded["test_shape[LengthPrefixFramer(2)]"] == 0


# -------------------------------------------------------------------- loopback pairs


LOOPBACK_CASES = [
    ("length-prefix", None),
    ("length-prefix", {"length_size": 2, "byteorder": "little", "magic": b"PS"}),
    ("delimiter", {"delimiter": b"\0"}),
    (functools.partial(LengthPrefixFramer, 1), None),  # a factory nobody registered
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("framing", "options"), LOOPBACK_CASES, ids=str)
def test_loopback_pair_talks_both_ways_and_closes_everything(
    run: Callable[..., Any], framing: Any, options: Any
) -> None:
    messages = [b"hello", b"", "gr\u00fc\u00df".encode(), b"x" * 200]

    async def main() -> None:
        async with loopback_pair(framing, options) as pair:
            client, server = pair
            assert client.peername == server.sockname
            assert server.peername == client.sockname
            assert client.peername[0] == "127.0.0.1"
            for msg in messages:
                await client.send(msg)
            assert [await server.recv() for _ in messages] == messages
            await server.send_many(messages)
            assert [await client.recv() for _ in messages] == messages
            port = client.peername[1]
        assert client.state == "closed"
        assert server.state == "closed"
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    run(main())


@pytest.mark.timeout(60)
def test_loopback_pair_raw_stream(run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with loopback_pair("raw") as (client, server):
            await client.send(b"abc")
            await client.send(b"def")
            got = b""
            while len(got) < 6:
                got += await server.recv()
            assert got == b"abcdef"

    run(main())


@pytest.mark.timeout(60)
def test_loopback_pair_closes_when_the_body_fails(run: Callable[..., Any]) -> None:
    async def main() -> None:
        with pytest.raises(KeyError, match="boom"):
            async with loopback_pair() as pair:
                raise KeyError("boom")
        assert pair.client.state == "closed"
        assert pair.server.state == "closed"

    run(main())


@pytest.mark.timeout(60)
def test_loopback_pair_with_tls_options_per_side(run: Callable[..., Any]) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with loopback_pair(
            server_options={"ssl": server_ctx}, client_options={"ssl": client_ctx}
        ) as (client, server):
            assert client.is_tls
            assert server.is_tls
            await client.send(b"secret")
            assert await server.recv() == b"secret"

    run(main())


@pytest.mark.timeout(60)
def test_loopback_pair_is_bounded_when_the_server_end_never_gets_ready(
    run: Callable[..., Any],
) -> None:
    """A TLS server and a plain client: the server end's handshake never completes, and the
    pair gives up after its timeout, with a clear error, instead of waiting for it."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="server end of the loopback pair was not ready"):
            async with loopback_pair(server_options={"ssl": server_ctx}, timeout=1.0):
                pass
        return time.monotonic() - started

    assert run(main()) < 10


@pytest.mark.timeout(60)
def test_loopback_pair_sync_on_the_shared_runtime() -> None:
    with loopback_pair_sync("delimiter", {"delimiter": b"\0"}, timeout=5.0) as (client, server):
        assert client.connection.loop is get_runtime().loop
        client.send(b"ping")
        assert server.recv() == b"ping"
        server.send_many([b"a", b"b", b"c"])
        assert [client.recv() for _ in range(3)] == [b"a", b"b", b"c"]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.3)
        assert time.monotonic() - started < 5
        client.send(b"after a timeout")
        assert server.recv() == b"after a timeout"
    assert client.connection.state == "closed"
    assert server.connection.state == "closed"


@pytest.mark.timeout(60)
def test_loopback_pair_sync_half_close_and_raw_bytes() -> None:
    with loopback_pair_sync("raw") as (client, server):
        client.send(b"all of it")
        client.write_eof()
        assert server.recv_bytes(9) == b"all of it"
        server.send(b"reply after EOF")
        assert client.recv_bytes(15) == b"reply after EOF"


@pytest.mark.timeout(60)
def test_loopback_pair_sync_refuses_strangers_and_stops_listening() -> None:
    """The pair listens on a real port: a stranger that connects to it is cut off (reset or
    EOF, never a hang) without disturbing the pair, and nothing listens after the pair."""
    with loopback_pair_sync() as (client, server):
        port = client.connection.peername[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as stranger:
                data = stranger.recv(1)
        except ConnectionResetError:
            data = b""
        assert data == b""
        client.send(b"still here")
        assert server.recv() == b"still here"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
