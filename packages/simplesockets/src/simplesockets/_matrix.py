"""simplesockets in ``polysock matrix`` and ``polysock bench``: peers written with the public
``TCPServer``/``TCPClient`` API, the way the manual's users write them.

The wire is a raw byte stream (key ``"raw"``, shared with the other pass-through flavours):
an echo answers bytes, not messages, so the matrix compares what came back as one stream.
Echoes are answered from ``on_receive`` (the manual's three-parameter form); clients count
the bytes their ``on_receive`` gets until the whole answer is there.

The bench functions run in separate processes started by ``polysock bench`` (scenario W4:
many clients doing sequential round trips against one server).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polysock.matrix import EchoServer, MatrixPeer, Wire

from ._client import TCPClient
from ._data import ReceivedData
from ._server import TCPServer

__all__ = [
    "RAW_WIRE",
    "bench_echo_server",
    "bench_load_client",
    "echo_exchange",
    "matrix_peers",
    "start_echo_server",
]

#: A raw byte stream: no boundaries, so the matrix compares concatenations. The same
#: description as every other raw flavour's, as peers pair up by the key alone.
RAW_WIRE = Wire(key="raw", framing="raw", boundaries=False, max_size=1 << 20)

#: How long the bench's server waits for its load client before giving up.
BENCH_TIMEOUT = 300.0


def _errors(endpoint: TCPServer | TCPClient) -> str:
    found = endpoint.return_exceptions()
    return "; ".join(repr(e) for e in found.values()) or "no exception recorded"


# ------------------------------------------------------------------ matrix


def start_echo_server() -> EchoServer:
    """A ``TCPServer`` on 127.0.0.1, port 0, sending every chunk back to its sender."""
    server = TCPServer()

    def on_receive(client_socket: Any, address: Any, data: ReceivedData) -> None:
        server.send_data(data, client_socket)

    server.setup(ip="127.0.0.1", port=0, on_receive=on_receive)
    assert server.socket is not None
    return EchoServer(port=server.socket.getsockname()[1], stop=server.close)


def echo_exchange(
    host: str, port: int, messages: Sequence[bytes], timeout: float
) -> list[bytes]:
    """Send ``messages`` with a ``TCPClient`` and collect the chunks that come back until as
    many bytes as were sent are there (or ``timeout`` seconds have passed)."""
    want = sum(map(len, messages))
    chunks: list[bytes] = []
    have = 0
    complete = threading.Event()

    def on_receive(data: ReceivedData) -> None:
        # Callbacks of one client run one at a time, in order: no lock needed.
        nonlocal have
        chunks.append(data.response)
        have += len(data)
        if have >= want:
            complete.set()

    client = TCPClient()
    client.setup(target_ip=host, target_port=port, on_receive=on_receive)
    if not client.connect():
        raise ConnectionError(f"TCPClient could not connect: {_errors(client)}")
    try:
        client.autorecv()  # off by default: on_receive runs only with it on
        for msg in messages:
            if not client.send_data(msg):
                raise ConnectionError(f"send_data failed: {_errors(client)}")
        if want and not complete.wait(timeout):
            raise TimeoutError(f"{have} of {want} bytes came back within {timeout:g} s")
    finally:
        client.close()
    return chunks


def matrix_peers() -> list[MatrixPeer]:
    return [
        MatrixPeer("simplesockets.TCPServer", "simplesockets", RAW_WIRE, "server",
                   start_server=start_echo_server),
        MatrixPeer("simplesockets.TCPClient", "simplesockets", RAW_WIRE, "client",
                   exchange=echo_exchange),
    ]


# ------------------------------------------------------------------ bench (W4)


def bench_echo_server(params: Mapping[str, int]) -> tuple[int, Callable[[], None]]:
    """An echo ``TCPServer`` for ``conns`` clients, served by the manual's loop over received
    items in its blocking form (``await_event`` instead of spinning on ``new_data_recved``).
    ``finish()`` serves until every client has disconnected, then closes the server.

    The loop, not ``on_receive``, because it also empties the list of recorded items: a
    callback-only server keeps every chunk it ever received in ``recved_data`` (about 25 MiB
    more peak RSS over this workload's 40 000 chunks).
    """
    conns = params["conns"]
    left = [conns]
    all_gone = threading.Event()
    lock = threading.Lock()
    server = TCPServer(conns)

    def on_disconnect(address: Any) -> None:
        with lock:
            left[0] -= 1
            if left[0] == 0:
                all_gone.set()

    server.setup(ip="127.0.0.1", port=0, listen=max(conns, 5), on_disconnect=on_disconnect)
    assert server.socket is not None

    def finish() -> None:
        deadline = time.monotonic() + BENCH_TIMEOUT
        try:
            while not all_gone.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{left[0]} of {conns} bench clients never disconnected")
                # Items of several clients come back in one batch; 100 ms bounds how late
                # the loop notices the last disconnect (no event is queued for it).
                event, items = server.await_event(100)
                if event == server.EVENT_RECEIVED:
                    for client_socket, _address, data in items:
                        server.send_data(data, client_socket)
        finally:
            server.close()

    return server.socket.getsockname()[1], finish


class _Load:
    """One load connection: the next request goes out from ``on_receive`` as soon as the
    whole echo of the previous one is back (no thread per connection)."""

    def __init__(self, port: int, payload: bytes, rounds: int, done: Callable[[], None]) -> None:
        self.payload = payload
        self.size = len(payload)
        self.left = rounds
        self.got = 0
        self.done = done
        self.failed = ""
        self.client = TCPClient()
        self.client.setup(target_ip="127.0.0.1", target_port=port, on_receive=self.on_receive)

    def on_receive(self, data: ReceivedData) -> None:
        self.got += len(data)
        if self.got < self.size:
            return
        self.got -= self.size
        self.left -= 1
        if self.left == 0:
            self.done()
        elif not self.client.send_data(self.payload):
            self.failed = _errors(self.client)  # reported by the run, not waited for
            self.left = 0
            self.done()

    def send(self) -> None:
        if not self.client.send_data(self.payload):
            raise ConnectionError(f"send_data failed: {_errors(self.client)}")


def bench_load_client(params: Mapping[str, int], port: int) -> dict[str, Any]:
    """``conns`` ``TCPClient``s, each doing ``n`` sequential echo round trips of ``size``
    bytes; every client does one untimed warm-up round trip first."""
    conns, rounds, size = params["conns"], params["n"], params["size"]
    payload = b"x" * size
    lock = threading.Lock()
    pending = [conns]
    finished = threading.Event()

    def one_done() -> None:
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                finished.set()

    def run(loads: list[_Load], what: str) -> float:
        finished.clear()
        pending[0] = len(loads)
        t0 = time.perf_counter()
        for load in loads:
            load.send()
        if not finished.wait(BENCH_TIMEOUT):
            raise TimeoutError(f"{pending[0]} of {len(loads)} clients did not finish {what}")
        elapsed = time.perf_counter() - t0
        failed = [load.failed for load in loads if load.failed]
        if failed:
            raise ConnectionError(f"send_data failed during {what}: {failed[0]}")
        return elapsed

    loads: list[_Load] = []
    try:
        for _ in range(conns):
            load = _Load(port, payload, 1, one_done)
            if not load.client.connect():
                raise ConnectionError(f"TCPClient could not connect: {_errors(load.client)}")
            load.client.autorecv()
            loads.append(load)
        run(loads, "the warm-up round trip")
        for load in loads:
            load.left = rounds
        elapsed = run(loads, f"{rounds} round trips")
    finally:
        for load in loads:
            load.client.close()
    return {"elapsed": elapsed, "count": conns * rounds}
