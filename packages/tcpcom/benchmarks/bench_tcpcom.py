"""tcpcom throughput and request/reply latency, against baselines measured in the same run.

    python benchmarks/bench_tcpcom.py [--seconds 3] [--runs 3]

1. One-way: a TCPClient calls ``sendMessage`` in a loop with 32-byte messages; the figure is
   messages per second counted at the TCPServer's MESSAGE callback. Baseline: pyzmq PUSH/PULL
   with 32-byte messages (``pip install polysock-tcpcom[bench]``).
2. Request/reply: ``sendMessage(msg, 1)`` against an echoing TCPServer (the reply sent from the
   server's MESSAGE callback). Baseline: a raw blocking-socket ping-pong (send 32 bytes, recv
   32 bytes) between two processes.

Sender and receiver always run in separate processes, for tcpcom and for the baselines. The
best of ``--runs`` runs of each is reported.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

MSG = "m" * 31  # + the NUL terminator = 32 bytes on the wire, like the 32-byte baselines
RAW = b"r" * 32


# ------------------------------------------------------------------ tcpcom


def _tcpcom_sink(pipe: Connection, echo: bool) -> None:
    import threading

    from tcpcom import TCPServer

    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_state(state: str, msg: str) -> None:
        nonlocal count, first, last
        if state != "MESSAGE":
            return
        if echo:
            server.sendMessage(msg)
            return
        if msg == "stop":
            done.set()
            return
        if count == 0:
            first = time.perf_counter()
        count += 1
        last = time.perf_counter()

    server = TCPServer(0, on_state)
    pipe.send(server.port)
    if echo:
        pipe.recv()
    else:
        done.wait()
        pipe.send((count, last - first))
    server.terminate()


def _tcpcom_oneway(seconds: float) -> float:
    from tcpcom import TCPClient

    parent, child = mp.Pipe()
    proc = mp.Process(target=_tcpcom_sink, args=(child, False))
    proc.start()
    port = parent.recv()
    client = TCPClient("127.0.0.1", port, None, occupiedWindow=0)
    assert client.connect(5)
    send = client.sendMessage
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            send(MSG)
    send("stop")
    count, elapsed = parent.recv()
    client.disconnect()
    proc.join(10)
    return float(count / elapsed)


def _tcpcom_reqrep(seconds: float) -> float:
    from tcpcom import TCPClient

    parent, child = mp.Pipe()
    proc = mp.Process(target=_tcpcom_sink, args=(child, True))
    proc.start()
    port = parent.recv()
    client = TCPClient("127.0.0.1", port, None, occupiedWindow=0)
    assert client.connect(5)
    for _ in range(200):  # warm-up: worker threads, caches
        assert client.sendMessage(MSG, 1) == MSG
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            assert client.sendMessage(MSG, 1) == MSG
        n += 100
    elapsed = time.perf_counter() - t0
    client.disconnect()
    parent.send("done")
    proc.join(10)
    return n / elapsed


# ------------------------------------------------------------------ baselines


def _zmq_pull(pipe: Connection) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    pipe.send(port)
    count = 0
    first = last = 0.0
    while True:
        msg = sock.recv()
        if msg == b"stop":
            break
        if count == 0:
            first = time.perf_counter()
        count += 1
        last = time.perf_counter()
    pipe.send((count, last - first))
    sock.close()
    ctx.term()


def _zmq_oneway(seconds: float) -> float | None:
    try:
        import zmq
    except ImportError:
        return None
    parent, child = mp.Pipe()
    proc = mp.Process(target=_zmq_pull, args=(child,))
    proc.start()
    port = parent.recv()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(f"tcp://127.0.0.1:{port}")
    send = sock.send
    payload = RAW
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            send(payload)
    send(b"stop")
    count, elapsed = parent.recv()
    sock.close()
    ctx.term()
    proc.join(10)
    return float(count / elapsed)


def _raw_echo(pipe: Connection) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    pipe.send(listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
    conn.close()
    listener.close()


def _raw_pingpong(seconds: float) -> float:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_raw_echo, args=(child,))
    proc.start()
    port = parent.recv()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def once() -> None:
        sock.sendall(RAW)
        got = 0
        while got < len(RAW):
            got += len(sock.recv(65536))

    for _ in range(200):
        once()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            once()
        n += 100
    elapsed = time.perf_counter() - t0
    sock.close()
    proc.join(10)
    return n / elapsed


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    mp.set_start_method("spawn")
    results: dict[str, Any] = {}
    for name, fn in (
        ("tcpcom one-way msg/s", _tcpcom_oneway),
        ("pyzmq PUSH/PULL msg/s", _zmq_oneway),
        ("tcpcom sendMessage(msg, 1) round trips/s", _tcpcom_reqrep),
        ("raw blocking ping-pong round trips/s", _raw_pingpong),
    ):
        runs = [fn(args.seconds) for _ in range(args.runs)]
        best = None if any(r is None for r in runs) else max(runs)
        results[name] = best
        shown = "skipped (pyzmq not installed)" if best is None else f"{best:,.0f}"
        print(f"{name:<44} {shown}", flush=True)
    one, zmq_rate = results["tcpcom one-way msg/s"], results["pyzmq PUSH/PULL msg/s"]
    rr, raw = (results["tcpcom sendMessage(msg, 1) round trips/s"],
               results["raw blocking ping-pong round trips/s"])
    if zmq_rate:
        print(f"one-way ratio tcpcom / pyzmq:          {one / zmq_rate:.2f}x (goal >= 1.0x)")
    print(f"request/reply ratio tcpcom / raw:      {rr / raw:.2f}x (goal >= 0.6x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
