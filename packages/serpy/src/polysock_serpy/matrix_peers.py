"""serpy and serpy2 in ``polysock matrix`` and ``polysock bench``: peers written with the
public ``Server``/``Connection`` API of each module, the way its users write them.

What the wires carry (and so what the matrix may send):

* protocol 1 (``serpy``): the core's generic client speaks the block layer only (the
  ``"serpy"`` framer: payload + ``0x1F``), i.e. mode 0. A mode-0 block cannot contain
  ``0x1F`` and an empty block is not a message (receivers skip it), so the wire forbids
  ``0x1F`` and empty messages. Blocks are raw bytes, not text.
* protocol 2 (``serpy2``): the generic client sends raw-bytes frames (type ``0x81``); any
  bytes, empty payloads included, come back as sent.

The echo servers answer in the mode or type a message came in, so a serpy client using
base85 (mode 2) and a plain block peer (mode 0) are both answered in their own terms.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from polysock.matrix import EchoServer, MatrixPeer, Wire

from .errors import ConnectionClosed

__all__ = [
    "SERPY2_WIRE",
    "SERPY_WIRE",
    "matrix_peers",
    "serpy2_blob_client",
    "serpy2_blob_server",
    "serpy2_exchange",
    "serpy_exchange",
    "serpy_one_way_client",
    "serpy_one_way_server",
    "start_serpy2_echo_server",
    "start_serpy_echo_server",
]

#: Protocol 1 as a plain block peer sees it: mode-0 blocks (no 0x1F inside, never empty).
SERPY_WIRE = Wire(key="serpy", framing="serpy", empty=False, forbidden=b"\x1f",
                  max_size=1 << 20)
#: Protocol 2 raw-bytes frames: anything, empty included.
SERPY2_WIRE = Wire(key="serpy2", framing="serpy2", max_size=1 << 20)

#: How long a bench process waits for its peer before giving up.
BENCH_TIMEOUT = 300.0
#: serpy2 has no ``getConnection()``: new children are looked for at the original
#: examples' pace.
CHILD_POLL = 0.01
#: How long stopping an echo server waits for its echo threads.
STOP_TIMEOUT = 5.0

def _echo_serpy(child: Any) -> None:
    """Send every message of one serpy child back, in the mode it came in: mode 0 to a
    plain block peer, base85 (mode 2) to a serpy client that sent bytes. ``force_mode``
    keeps bytes raw in mode 0 (serpy would otherwise switch them to base85).

    Taking messages and sending them back happen in two threads. An echo that does both in
    one thread stalls on a burst: its first answer in a new mode waits for the client's
    ``ACKMODCG``, the answers after it fill the outgoing queue, the loop stops taking
    messages, the full incoming queue stops reading the socket, and the ``ACKMODCG`` sits
    unread behind the burst until ``mode_ack_timeout`` (10 s) expires.
    """
    backlog: queue.SimpleQueue[tuple[Any, int] | None] = queue.SimpleQueue()

    def send_back() -> None:
        while (item := backlog.get()) is not None:
            data, mode = item
            try:
                child.sendData(data, mode=mode, force_mode=True)
            except ConnectionClosed:
                return

    sender = threading.Thread(target=send_back, daemon=True, name="polysock-serpy-echo-send")
    sender.start()
    try:
        while True:
            data = child.getData()
            # The mode of the latest SETMODE seen: right for a peer that stays in one mode
            # (both of the matrix's serpy clients do).
            backlog.put((data, child.in_mode))
    except ConnectionClosed:
        pass  # the peer left, or the server is closing
    finally:
        backlog.put(None)
        sender.join(STOP_TIMEOUT)


def _echo_serpy2(child: Any) -> None:
    """Send every value of one serpy2 child back (same value, same type)."""
    try:
        while True:
            child.sendData(child.getData())
    except ConnectionClosed:
        pass


def _quiet_forwarding() -> None:
    """Silence the two warnings that forwarding bytes with ``force_mode=True`` issues (as
    the project's broadcast example does), for this module's calls only: they would clutter
    the matrix's output and say nothing to its reader. serpy reports the second one at its
    own line, so that location is matched too."""
    here = re.escape(__name__)
    warnings.filterwarnings("ignore", "Wrong mode used", UserWarning, rf"{here}\Z")
    warnings.filterwarnings("ignore", "Discouraged. Forcing mode", UserWarning,
                            rf"({here}|serpy\.serpy)\Z")


class _Echo:
    """A running echo server: the ``Server``, the thread that finds new children and one
    echo thread per child (each blocks in ``getData``)."""

    def __init__(self, server: Any, echo: Callable[[Any], None]) -> None:
        self.server = server
        self.echo = echo
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def serve(self, child: Any) -> None:
        thread = threading.Thread(target=self.echo, args=(child,), daemon=True,
                                  name="polysock-serpy-echo")
        self.threads.append(thread)
        thread.start()

    def run_in_background(self, target: Callable[[], None]) -> EchoServer:
        acceptor = threading.Thread(target=target, daemon=True, name="polysock-serpy-accept")
        acceptor.start()

        def stop() -> None:
            self.stopping.set()
            self.server.closeServer()  # every child's getData now raises ConnectionClosed
            acceptor.join(STOP_TIMEOUT)
            deadline = time.monotonic() + STOP_TIMEOUT
            for thread in list(self.threads):
                thread.join(max(0.0, deadline - time.monotonic()))
            if acceptor.is_alive() or any(t.is_alive() for t in self.threads):
                raise TimeoutError("the echo server's threads did not stop")

        return EchoServer(port=self.server.address[1], stop=stop)


def start_serpy_echo_server() -> EchoServer:
    """A ``serpy.Server`` on 127.0.0.1, port 0; each child is echoed by its own thread."""
    import serpy

    _quiet_forwarding()
    echo = _Echo(serpy.Server("127.0.0.1", 0).start(), _echo_serpy)

    def accept() -> None:
        try:
            while True:
                echo.serve(echo.server.getConnection())
        except ConnectionClosed:
            pass  # closeServer(): no more children

    return echo.run_in_background(accept)


def start_serpy2_echo_server() -> EchoServer:
    """A ``serpy2.Server`` on 127.0.0.1, port 0; each child is echoed by its own thread."""
    import serpy2

    echo = _Echo(serpy2.Server("127.0.0.1", 0).start(), _echo_serpy2)

    def accept() -> None:
        seen: list[Any] = []
        while not echo.stopping.wait(CHILD_POLL):
            for child in echo.server.connections:
                if not any(child is known for known in seen):
                    seen.append(child)
                    echo.serve(child)

    return echo.run_in_background(accept)


def _exchange(
    conn: Any, send: Callable[[bytes, float], object], messages: Sequence[bytes],
    timeout: float,
) -> list[bytes]:
    """Send ``messages`` from a second thread while this one takes the answers, so that
    neither side's bounded queues can hold the other up; ``timeout`` bounds the whole."""
    deadline = time.monotonic() + timeout
    failed: list[BaseException] = []

    def send_all() -> None:
        try:
            for msg in messages:
                send(msg, max(0.001, deadline - time.monotonic()))
        except BaseException as exc:
            failed.append(exc)

    sender = threading.Thread(target=send_all, daemon=True, name="polysock-serpy-send")
    sender.start()
    got: list[bytes] = []
    try:
        for _ in messages:
            if failed:
                raise failed[0]
            try:
                got.append(conn.getData(timeout=max(0.001, deadline - time.monotonic())))
            except ConnectionClosed:
                raise
            except queue.Empty:
                raise TimeoutError(
                    f"{len(got)} of {len(messages)} answers came within {timeout:g} s"
                ) from None
    finally:
        conn.close()
        sender.join(max(0.0, deadline - time.monotonic()) + 1)
    if failed:
        raise failed[0]
    return got


def serpy_exchange(
    host: str, port: int, messages: Sequence[bytes], timeout: float
) -> list[bytes]:
    """A ``serpy.Connection`` sending bytes the documented way, base85 (mode 2)."""
    import serpy

    conn = serpy.Connection().connect(host, port)
    return _exchange(
        conn, lambda msg, left: conn.sendData(msg, mode=2, timeout=left), messages, timeout
    )


def serpy2_exchange(
    host: str, port: int, messages: Sequence[bytes], timeout: float
) -> list[bytes]:
    """A ``serpy2.Connection`` sending raw-bytes values."""
    import serpy2

    conn = serpy2.Connection().connect(host, port)
    return _exchange(conn, lambda msg, left: conn.sendData(msg, timeout=left), messages,
                     timeout)


def matrix_peers() -> list[MatrixPeer]:
    return [
        MatrixPeer("serpy.Server", "serpy", SERPY_WIRE, "server",
                   start_server=start_serpy_echo_server),
        MatrixPeer("serpy.Connection", "serpy", SERPY_WIRE, "client", exchange=serpy_exchange),
        MatrixPeer("serpy2.Server", "serpy2", SERPY2_WIRE, "server",
                   start_server=start_serpy2_echo_server),
        MatrixPeer("serpy2.Connection", "serpy2", SERPY2_WIRE, "client",
                   exchange=serpy2_exchange),
    ]


# ------------------------------------------------------------------ bench
# Both scenarios are one way: the client sends n messages, the server acknowledges the last
# with a short reply (the raw baselines W1 and W3 do the same). One untimed warm-up round
# trip comes first, so that neither the accept nor first-use costs (NumPy's import for
# serpy2's checksums) are timed.


def _until_closed(child: Any) -> None:
    """Wait for the client to leave (its ``close()`` after reading the acknowledgement).

    ``getData()`` without a timeout: on a gone connection it raises at once, whereas with a
    timeout it raises only when that expires (serpy's guard against spinning loops). The
    wait ends with the client process at the latest (``polysock bench`` bounds that).
    """
    try:
        while True:
            child.getData()
    except ConnectionClosed:
        return


def serpy_one_way_server(params: Mapping[str, int]) -> tuple[int, Callable[[], None]]:
    """A ``serpy.Server`` taking ``n`` mode-0 messages from one client."""
    import serpy

    server = serpy.Server("127.0.0.1", 0, 1).start()

    def finish() -> None:
        try:
            child = server.getConnection(timeout=BENCH_TIMEOUT)
            child.getData(timeout=BENCH_TIMEOUT)  # warm-up
            child.sendData("go")
            for _ in range(params["n"]):
                child.getData(timeout=BENCH_TIMEOUT)
            child.sendData("ack")
            _until_closed(child)
        finally:
            server.closeServer()

    return server.address[1], finish


def serpy_one_way_client(params: Mapping[str, int], port: int) -> dict[str, Any]:
    """``n`` text messages of ``size`` ASCII characters (mode 0, a plain block each), the
    way an instrument reports readings."""
    import serpy

    n, size = params["n"], params["size"]
    text = ("reading 0123456789 " * (size // 19 + 1))[:size]
    conn = serpy.Connection().connect("127.0.0.1", port)
    try:
        conn.sendData(text)
        conn.getData(timeout=BENCH_TIMEOUT)
        t0 = time.perf_counter()
        for _ in range(n):
            conn.sendData(text)
        conn.getData(timeout=BENCH_TIMEOUT)
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return {"elapsed": elapsed, "count": n, "bytes": n * size}


def serpy2_blob_server(params: Mapping[str, int]) -> tuple[int, Callable[[], None]]:
    """A ``serpy2.Server`` taking ``n`` blobs from one client (a workstation receiving an
    instrument's frames)."""
    import serpy2

    server = serpy2.Server("127.0.0.1", 0, 1).start()

    def finish() -> None:
        try:
            deadline = time.monotonic() + BENCH_TIMEOUT
            while not server.connections:  # serpy2 has no getConnection()
                if time.monotonic() > deadline:
                    raise TimeoutError("the bench client never connected")
                time.sleep(CHILD_POLL)
            child = server.connections[0]
            child.getData(timeout=BENCH_TIMEOUT)  # warm-up blob
            child.sendData("go")
            for _ in range(params["n"]):
                child.getData(timeout=BENCH_TIMEOUT)
            child.sendData("ack")
            _until_closed(child)
        finally:
            server.closeServer()

    return server.address[1], finish


def serpy2_blob_client(params: Mapping[str, int], port: int) -> dict[str, Any]:
    """``n`` blobs of ``size`` bytes as raw-bytes values."""
    import serpy2

    n, size = params["n"], params["size"]
    blob = os.urandom(size)
    conn = serpy2.Connection().connect("127.0.0.1", port)
    try:
        conn.sendData(blob)
        conn.getData(timeout=BENCH_TIMEOUT)
        t0 = time.perf_counter()
        for _ in range(n):
            conn.sendData(blob)
        conn.getData(timeout=BENCH_TIMEOUT)
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return {"elapsed": elapsed, "count": n, "bytes": n * size}
