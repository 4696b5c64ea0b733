#!/usr/bin/env python3
"""serpy2 broadcast server: every message a client sends goes to all the other clients.

Send ``/KTHXBYE`` to stop it. Run ``simpleChat2.py`` in two terminals to try it.
"""

import sys
from time import sleep

import serpy2 as sp
from _args import parse


def main() -> int:
    args = parse(__doc__, server=True)
    s = sp.Server(args.host, args.port, 100).start()
    print(f"Server started on port {s.address[1]}", flush=True)
    stop = False
    while not stop:
        readable = s.readableConnections()
        for rc in readable:
            data = rc.getData()
            print(data, flush=True)
            if data == "/KTHXBYE":
                stop = True
                break
            for c in s.getConnectionsList():
                if c is not rc:
                    c.sendData(data)  # serpy2 keeps the type: str stays str
        if not readable:
            sleep(0.01)  # the original example's pace; serpy itself never polls
    s.closeServer()
    print("Server closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
