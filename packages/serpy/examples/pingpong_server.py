#!/usr/bin/env python3
"""serpy2 ping-pong server: every value a client sends comes back to it, same value, same
type. Send the string ``/KTHXBYE`` to stop it."""

import sys
from time import sleep

import serpy2 as sp
from _args import parse


def main() -> int:
    args = parse(__doc__, server=True)
    s = sp.Server(args.host, args.port, 3).start()
    print(f"Server started (ping-pong) on port {s.address[1]}", flush=True)
    stop = False
    while not stop:
        readable = s.readableConnections()
        for rc in readable:
            data = rc.getData()
            if data == "/KTHXBYE":
                stop = True
                break
            rc.sendData(data)
        if not readable:
            sleep(0.01)  # the original example's pace; serpy2 itself never polls
    s.closeServer()
    print("Server closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
