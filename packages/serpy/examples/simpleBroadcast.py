#!/usr/bin/env python3
"""serpy broadcast server: every message a client sends goes to all the other clients.

Send ``/KTHXBYE`` to stop it. Run ``simpleChat.py`` in two terminals to try it.
"""

import sys
import warnings
from time import sleep

import serpy as sp
from _args import parse


def main() -> int:
    args = parse(__doc__, server=True)
    s = sp.Server(args.host, args.port, 100, "utf-8").start()
    print(f"Server started on port {s.address[1]}", flush=True)
    stop = False
    while not stop:
        readable = s.readableConnections()
        for rc in readable:
            data = rc.getData()
            print(data, flush=True)
            if data == b"/KTHXBYE":
                stop = True
                break
            for c in s.getConnectionsList():
                if c is not rc:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        # Forward in the mode it arrived in (the original sent base85 text
                        # to the other clients here; polysock sends the bytes as they came).
                        c.sendData(data, mode=rc.in_mode, force_mode=True)
        if not readable:
            sleep(0.01)  # the original example's pace; serpy itself never polls
    s.closeServer()
    print("Server closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
