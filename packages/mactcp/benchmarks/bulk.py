"""Bulk transfer: mactcp ``Send``/``Rcv`` against plain sockets, measured in the same run.

Each transfer has a receiving side in this process and a sending side in a child process (two
programs talking over loopback, as peers do; one process would measure the two sides fighting
for one GIL instead). The plain-socket variant uses ``sendall``/``recv`` with the same chunk
size and the same receive buffer (``SO_RCVBUF`` = the stream's ``size``), so the ratio shows
what the mactcp layer costs, not a different TCP window. The clock runs from the established
connection to the end of the stream. Each round runs both variants back to back, alternating
which goes first; the ratio reported is the median of the rounds' ratios (the machine's load
changes between rounds, not within one), the MB/s figures are the best of each variant.

    python benchmarks/bulk.py [--mb 128] [--runs 7] [--chunk 65536] [--size 262144]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time

import mactcp

HOST = "127.0.0.1"


def _send_raw(port: int, total: int, chunk_size: int) -> None:
    chunk = bytes(chunk_size)
    with socket.create_connection((HOST, port)) as sock:
        for _ in range(total // chunk_size):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # until the receiver closes


def _send_mactcp(port: int, total: int, chunk_size: int, size: int) -> None:
    chunk = bytes(chunk_size)
    with mactcp.TCPCreate(size) as s:
        s.ActiveOpen(0, HOST, port)
        for _ in range(total // chunk_size):
            s.Send(chunk)
        s.Close()
        with contextlib.suppress(mactcp.error):
            s.Rcv(60)  # until the receiver closes


def _sender(
    variant: str, port: int, total: int, chunk_size: int, size: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", variant, "--port", str(port),
         "--total", str(total), "--chunk", str(chunk_size), "--size", str(size)]
    )


def _receive_raw(total: int, chunk_size: int, size: int) -> float:
    with socket.socket() as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        lsock.bind((HOST, 0))
        lsock.listen(1)
        child = _sender("send-raw", lsock.getsockname()[1], total, chunk_size, size)
        sock, _ = lsock.accept()
    got = 0
    with sock:
        start = time.perf_counter()
        while True:
            data = sock.recv(size)
            if not data:
                break
            got += len(data)
        elapsed = time.perf_counter() - start
    child.wait(60)
    assert got == total, (got, total)
    return elapsed


def _receive_mactcp(total: int, chunk_size: int, size: int) -> float:
    got = 0
    with mactcp.TCPCreate(size) as s:
        s.PassiveOpen(0)
        child = _sender("send-mactcp", s.GetSockName()[1], total, chunk_size, size)
        s.wait()
        start = time.perf_counter()
        while True:
            try:
                data, _urgent, _mark = s.Rcv(60)
            except mactcp.error as exc:
                if exc.args[0] != mactcp.connectionClosing:
                    raise
                break
            got += len(data)
        elapsed = time.perf_counter() - start
        s.Close()
    child.wait(60)
    assert got == total, (got, total)
    return elapsed


def run(
    mb: int = 128, runs: int = 7, chunk_size: int = 65536, size: int = 262144
) -> dict[str, float]:
    """Best MB/s of each variant and the median (min, max) of the per-round ratios."""
    total = mb * 1024 * 1024 // chunk_size * chunk_size
    variants = {"raw": _receive_raw, "mactcp": _receive_mactcp}
    best = {name: 0.0 for name in variants}
    ratios = []
    for round_no in range(runs):
        order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
        rates = {}
        for name in order:
            rates[name] = total / variants[name](total, chunk_size, size) / 1e6
            best[name] = max(best[name], rates[name])
        ratios.append(rates["mactcp"] / rates["raw"])
    ratios.sort()
    result = dict(best)
    result["ratio"] = ratios[len(ratios) // 2]
    result["ratio_min"] = ratios[0]
    result["ratio_max"] = ratios[-1]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=128, help="MiB per transfer")
    parser.add_argument("--runs", type=int, default=7, help="rounds (each runs both variants)")
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per Send / sendall")
    parser.add_argument("--size", type=int, default=262144, help="TCPCreate size = SO_RCVBUF")
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "send-raw":
        _send_raw(args.port, args.total, args.chunk)
        return 0
    if args.role == "send-mactcp":
        _send_mactcp(args.port, args.total, args.chunk, args.size)
        return 0
    result = run(args.mb, args.runs, args.chunk, args.size)
    print(f"bulk transfer, {args.mb} MiB, {args.chunk}-byte sends, {args.size}-byte buffer")
    print(f"  plain sockets  {result['raw']:8.0f} MB/s")
    print(f"  mactcp         {result['mactcp']:8.0f} MB/s")
    print(
        f"  ratio          {result['ratio']:8.2f}  (median of {args.runs} paired rounds; "
        f"range {result['ratio_min']:.2f}-{result['ratio_max']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
