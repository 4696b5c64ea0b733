"""Benchmark of serpy/serpy2 on polysock: ``python -m polysock_serpy.bench [--quick]``.

* serpy2 1 MiB blobs, instrument -> workstation in two processes (as in the lab), against
  plain sockets moving the same blobs between two processes in the same run;
* serpy mode-1 (acknowledged) messages per second;
* serpy2: delay between a burst of 10 small frames arriving (one write by a raw peer) and all
  10 being available to ``getData``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

BLOB = 1 << 20


def _raw_sink(count: int) -> None:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    print(ls.getsockname()[1], flush=True)
    conn, _ = ls.accept()
    buf = bytearray(BLOB)
    view = memoryview(buf)
    total = 0
    while total < count * BLOB:
        n = conn.recv_into(view)
        if not n:
            break
        total += n
    conn.sendall(b"k")
    conn.close()


def _serpy2_sink(count: int) -> None:
    import serpy2

    server = serpy2.Server("127.0.0.1", 0).start()
    print(server.address[1], flush=True)
    child = None
    while child is None:
        conns = server.connections
        child = conns[0] if conns else None
        if child is None:
            time.sleep(0.005)
    for _ in range(count + 1):  # + the warm-up blob
        child.getData(timeout=60)
    child.sendData("k")
    child.close()
    server.close()


def _spawn(kind: str, count: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "polysock_serpy.bench", "--sink", kind, "--count", str(count)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def blob_throughput(count: int) -> tuple[float, float]:
    """(raw MB/s, serpy2 MB/s) for ``count`` 1 MiB blobs, each between two processes."""
    import serpy2

    blob = os.urandom(BLOB)
    proc, port = _spawn("raw", count)
    sock = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    for _ in range(count):
        sock.sendall(blob)
    sock.recv(1)
    raw = count * BLOB / (time.perf_counter() - t0) / 1e6
    sock.close()
    _reap(proc)
    proc, port = _spawn("serpy2", count)
    conn = serpy2.Connection().connect("127.0.0.1", port)
    conn.sendData(blob)  # warm-up: loads NumPy (if installed) on both sides
    time.sleep(0.3)
    t0 = time.perf_counter()
    for _ in range(count):
        conn.sendData(blob)
    conn.getData(timeout=60)
    ours = count * BLOB / (time.perf_counter() - t0) / 1e6
    conn.close()
    _reap(proc)
    return raw, ours


def _reap(proc: subprocess.Popen[str]) -> None:
    proc.wait(30)
    if proc.stdout is not None:
        proc.stdout.close()


def acknowledged_rate(count: int) -> float:
    """serpy mode-1 messages per second (each waits for its ACKEOT)."""
    import serpy

    server = serpy.Server("127.0.0.1", 0, queue_size=count + 10).start()
    conn = serpy.Connection().connect("127.0.0.1", server.address[1])
    server.getConnection(timeout=10)
    conn.sendData("warm-up", mode=1, timeout=10)
    t0 = time.perf_counter()
    for i in range(count):
        if not conn.sendData(str(i), mode=1, timeout=10):
            raise RuntimeError("an acknowledgement did not come")
    rate = count / (time.perf_counter() - t0)
    conn.close()
    server.closeServer()
    return rate


def burst_delay(rounds: int) -> float:
    """Median seconds between a raw write of 10 serpy2 frames and all 10 being queued."""
    import serpy2

    from polysock_serpy.framing import Serpy2Framer, TypedFrame

    server = serpy2.Server("127.0.0.1", 0).start()
    peer = socket.create_connection(("127.0.0.1", server.address[1]))
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while not server.connections:
        time.sleep(0.001)
    child = server.connections[0]
    burst = Serpy2Framer().frame_many([TypedFrame((42).to_bytes(8, "little"), 1)] * 10)
    delays = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        peer.sendall(burst)
        child.getData(timeout=5)
        while len(child._inq) < 9:  # the other nine must be there at the same moment
            time.sleep(0)
        delays.append(time.perf_counter() - t0)
        for _ in range(9):
            child.getData(timeout=5)
    peer.close()
    server.closeServer()
    return statistics.median(delays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sink", choices=["raw", "serpy2"], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink == "raw":
        _raw_sink(args.count)
        return 0
    if args.sink == "serpy2":
        _serpy2_sink(args.count)
        return 0
    blobs, acks, rounds = (50, 300, 30) if args.quick else (300, 2000, 200)
    raw, ours = blob_throughput(blobs)
    print(f"serpy2 1 MiB blobs, two processes: {ours:8.0f} MB/s  (plain sockets {raw:.0f} "
          f"MB/s, ratio {ours / raw:.2f}; the original: about 21 MB/s)")
    rate = acknowledged_rate(acks)
    print(f"serpy mode-1 acknowledged messages:  {rate:8.0f} /s    (the original: 5-7 /s)")
    delay = burst_delay(rounds)
    print(f"serpy2 burst of 10 frames delivered: {delay * 1e3:8.3f} ms   (median of {rounds}; "
          "the original: about 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
