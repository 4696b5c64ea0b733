#!/usr/bin/env python3
"""The acquisition workstation: requests frames from ``instrument_server.py`` over serpy2,
checks every pixel, reports the throughput, then stops the server."""

import sys
from time import time

import serpy2 as sp
from _args import parse
from imaging import HEIGHT, WIDTH, frame_bytes


def main() -> int:
    args = parse(__doc__, server=False)
    t0 = time()
    received = frames = errors = 0
    for cycle in range(10):
        c = sp.Connection(auto_restart=True).connect(args.host, args.port)
        # Requests of every type at once; only the integers are answered (with a frame).
        sendlist = [1 + cycle, "hello", 12.35, -1e6, 12, 30, "yes éµù utf8"]
        expected = [v for v in sendlist if type(v) is int]
        for value in sendlist:
            c.sendData(value)
        for index in expected:
            try:
                data = c.getData(timeout=10.0)
            except sp.queue.Empty:
                print("*** TIMEOUT ERROR ***", flush=True)
                errors += 1
                continue
            if type(data) is not bytes or data != frame_bytes(index):
                print("*** DATA ERROR ***", flush=True)
                errors += 1
                continue
            received += len(data)
            frames += 1
        c.close()
    elapsed = time() - t0
    print(f"Received {received} bytes in {elapsed:.3f} seconds "
          f"({received / 1e6 / elapsed:.1f} MB/s, {frames / elapsed:.1f} frames/s)", flush=True)
    print(f"frame dimensions: {WIDTH} x {HEIGHT} (32 bits per pixel)", flush=True)
    print(f"{frames} frames, {errors} errors", flush=True)
    c = sp.Connection().connect(args.host, args.port)
    c.sendData("/KTHXBYE")
    c.close()
    return 1 if errors or frames != 30 else 0


if __name__ == "__main__":
    sys.exit(main())
