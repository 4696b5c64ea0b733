#!/usr/bin/env python3
"""serpy2 ping-pong client: sends values of every type in one go, checks that the same values
come back, ten times over fresh connections, then stops the server."""

import sys
from time import time

import serpy2 as sp
from _args import parse


def main() -> int:
    args = parse(__doc__, server=False)
    cycles = 10
    errors = 0
    t0 = time()
    for _ in range(cycles):
        c = sp.Connection(auto_restart=True).connect(args.host, args.port)
        sendlist = [123, "hello", 12.35, -1e6, 600000, "yes µù", b"\x00raw\xff"]
        for value in sendlist:
            c.sendData(value)
        for value in sendlist:
            try:
                got = c.getData(timeout=10)
            except sp.queue.Empty:
                got = "*** timeout ***"
            if got != value or type(got) is not type(value):
                print("ping pong error:", value, "->", got, flush=True)
                errors += 1
        c.close()
    print(f"{cycles} cycles in {time() - t0:.3f} seconds, {errors} ping-pong errors", flush=True)
    c = sp.Connection().connect(args.host, args.port)
    c.sendData("/KTHXBYE")
    c.close()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
