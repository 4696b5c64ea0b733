"""``polysock matrix``: every installed flavour's server against every client of its wire.

Flavours contribute peers through the ``polysock_add_matrix_peers`` hook: an echo server they
can start on loopback, and a client that sends a list of messages and returns what came
back, both written with the flavour's own public API (so the matrix exercises what users
call). The core adds a generic client per wire format, built on :func:`polysock.connect`, so
every server is also checked against a peer that knows nothing of the flavour. Peers pair up
when their :class:`Wire` keys are equal.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import plugins
from .runtime import get_runtime
from .transport import connect


@dataclass(frozen=True)
class Wire:
    """A wire format peers share, and what it can carry (so the matrix sends only messages
    the format allows: a NUL-terminated text format cannot carry NUL or invalid UTF-8)."""

    key: str
    framing: str
    framing_options: Mapping[str, Any] = field(default_factory=dict)
    boundaries: bool = True
    text: bool = False
    empty: bool = True
    max_size: int = 1 << 20
    forbidden: bytes = b""


@dataclass(frozen=True)
class EchoServer:
    """A running echo server of a flavour: where it listens and how to stop it."""

    port: int
    stop: Callable[[], None]
    host: str = "127.0.0.1"


#: ``exchange(host, port, messages, timeout) -> messages received back`` (a byte stream wire
#: returns its chunks; the matrix compares concatenations).
Exchange = Callable[[str, int, Sequence[bytes], float], Sequence[bytes]]


@dataclass(frozen=True)
class MatrixPeer:
    """One side a flavour offers to the matrix."""

    name: str
    flavour: str
    wire: Wire
    role: Literal["server", "client"]
    start_server: Callable[[], EchoServer] | None = None
    exchange: Exchange | None = None

    def __post_init__(self) -> None:
        if self.role == "server" and self.start_server is None:
            raise ValueError(f"matrix peer {self.name!r}: a server needs start_server")
        if self.role == "client" and self.exchange is None:
            raise ValueError(f"matrix peer {self.name!r}: a client needs exchange")


def matrix_messages(wire: Wire) -> list[bytes]:
    """The edge cases each pair exchanges, limited to what ``wire`` can carry."""
    text = "gr\u00fc\u00df dich, \u4e16\u754c \u2713".encode()
    msgs = [b"hello", text]
    if wire.empty and wire.boundaries:
        msgs.append(b"")
    if not wire.text:
        msgs.append(bytes(b for b in range(256) if bytes([b]) not in wire.forbidden))
    msgs += [b"burst %d" % i for i in range(100)]
    pattern = b"0123456789abcdef" * 64
    large = (pattern * (wire.max_size // len(pattern) + 1))[: wire.max_size]
    msgs.append(large)
    return msgs


def generic_client(wire: Wire) -> MatrixPeer:
    """The CLI's own client for ``wire``: :func:`polysock.connect` with the wire's framing."""

    def exchange(host: str, port: int, messages: Sequence[bytes], timeout: float) -> list[bytes]:
        async def run() -> list[bytes]:
            conn = await connect(
                host, port, framing=wire.framing, framing_options=wire.framing_options,
                timeout=timeout,
            )
            try:
                await conn.send_many(messages)
                got: list[bytes] = []
                want = len(messages) if wire.boundaries else sum(map(len, messages))
                have = 0
                while have < want:
                    batch = await conn.recv_batch()
                    got += batch
                    have += len(batch) if wire.boundaries else sum(map(len, batch))
                return got
            finally:
                await conn.close(timeout=5)

        return get_runtime().run(run(), timeout=timeout)

    return MatrixPeer(
        name=f"polysock ({wire.framing})", flavour="polysock", wire=wire, role="client",
        exchange=exchange,
    )


@dataclass
class PairResult:
    server: str
    client: str
    wire: str
    messages: int
    ok: bool
    seconds: float
    detail: str = ""


def _compare(wire: Wire, sent: Sequence[bytes], got: Sequence[bytes]) -> str:
    if wire.boundaries:
        if list(got) == list(sent):
            return ""
        if len(got) != len(sent):
            return f"sent {len(sent)} messages, got {len(got)} back"
        index = next(i for i, (a, b) in enumerate(zip(sent, got, strict=True)) if a != b)
        return f"message {index} differs: sent {sent[index][:40]!r}, got {got[index][:40]!r}"
    want, have = b"".join(sent), b"".join(got)
    if want == have:
        return ""
    return f"sent {len(want)} bytes, got {len(have)} bytes back (or different bytes)"


def run_pair(server: MatrixPeer, client: MatrixPeer, timeout: float) -> PairResult:
    """Start ``server``, run ``client``'s exchange against it in a bounded worker thread,
    stop the server; every failure becomes a result, never an exception."""
    assert server.start_server is not None and client.exchange is not None
    exchange = client.exchange
    messages = matrix_messages(server.wire)
    t0 = time.perf_counter()
    try:
        echo = server.start_server()
    except Exception as exc:
        return PairResult(server.name, client.name, server.wire.key, len(messages), False,
                          time.perf_counter() - t0, f"server did not start: {exc!r}")
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polysock-matrix")
    try:
        future = pool.submit(exchange, echo.host, echo.port, messages, timeout)
        got = future.result(timeout + 5)
        detail = _compare(server.wire, messages, got)
    except concurrent.futures.TimeoutError:
        detail = f"no complete answer within {timeout:g} s"
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
    finally:
        pool.shutdown(wait=False)
        stopper = threading.Thread(target=echo.stop, daemon=True)
        stopper.start()
        stopper.join(10)
        if stopper.is_alive():
            detail = detail or "the server did not stop within 10 s"
    return PairResult(server.name, client.name, server.wire.key, len(messages), not detail,
                      time.perf_counter() - t0, detail)


def collect_peers(flavour: str | None = None) -> list[MatrixPeer]:
    pm = plugins.get_plugin_manager()
    peers: list[MatrixPeer] = []
    for result in pm.hook.polysock_add_matrix_peers():
        peers.extend(result or ())
    if flavour is not None:
        peers = [p for p in peers if p.flavour == flavour or p.role == "client"]
    return peers


def plan(peers: Sequence[MatrixPeer]) -> list[tuple[MatrixPeer, MatrixPeer]]:
    """Every (server, client) pair that shares a wire key, plus the generic client."""
    servers = [p for p in peers if p.role == "server"]
    clients = [p for p in peers if p.role == "client"]
    pairs = []
    generic: dict[str, MatrixPeer] = {}
    for srv in servers:
        for cli in clients:
            if cli.wire.key == srv.wire.key:
                pairs.append((srv, cli))
        gen = generic.setdefault(srv.wire.key, generic_client(srv.wire))
        pairs.append((srv, gen))
    return pairs


def run_matrix(
    peers: Sequence[MatrixPeer],
    timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> list[PairResult]:
    results = []
    pairs = plan(peers)
    for i, (srv, cli) in enumerate(pairs, 1):
        if progress:
            progress(f"[{i}/{len(pairs)}] {srv.name} <- {cli.name}")
        results.append(run_pair(srv, cli, timeout))
    return results


def format_table(results: Sequence[PairResult]) -> str:
    rows = [("server", "client", "wire", "messages", "result", "time")]
    for r in results:
        rows.append((r.server, r.client, r.wire, str(r.messages),
                     "pass" if r.ok else "FAIL", f"{r.seconds * 1000:.0f} ms"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in results:
        if not r.ok:
            lines.append(f"FAIL {r.server} <- {r.client}: {r.detail}")
    return "\n".join(lines)


def cmd_matrix(args: Any) -> int:
    peers = collect_peers(args.flavour)
    if not any(p.role == "server" for p in peers):
        what = f"flavour {args.flavour!r}" if args.flavour else "flavour"
        print(f"polysock matrix: no {what} with a matrix server is installed "
              "(pip install polysock-tcpcom, polysock-serpy, ...)")
        return 1 if args.flavour else 0

    def progress(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    t0 = time.perf_counter()
    results = run_matrix(peers, args.timeout, progress)
    elapsed = time.perf_counter() - t0
    failed = sum(not r.ok for r in results)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        print()
        print(format_table(results))
        print(f"\n{len(results) - failed} of {len(results)} pairs passed in {elapsed:.1f} s")
    return 1 if failed else 0


def add_arguments(p: Any) -> None:
    p.add_argument("--flavour", help="only this flavour's server")
    p.add_argument("--timeout", type=float, default=30.0, help="per pair (default 30 s)")
    p.add_argument("--json", action="store_true", help="machine-readable results")
