#!/usr/bin/env python3
"""An instrument (say, a camera) served with serpy2: a client sends an integer request, the
server answers with a 512x512 float32 frame as a binary blob. Other requests are ignored,
except the string ``/KTHXBYE``, which stops the server."""

import sys
from time import sleep

import serpy2 as sp
from _args import parse
from imaging import frame


def main() -> int:
    args = parse(__doc__, server=True)
    s = sp.Server(args.host, args.port, 3).start()
    print(f"Server started (instrument-style) on port {s.address[1]}", flush=True)
    stop = False
    while not stop:
        readable = s.readableConnections()
        for rc in readable:
            data = rc.getData()
            if data == "/KTHXBYE":
                stop = True
                break
            if type(data) is int:
                rc.sendData(frame(data))  # a memoryview of the image: no conversion
            else:
                print("request ignored:", repr(data), flush=True)
        if not readable:
            sleep(0.01)  # the original example's pace; serpy2 itself never polls
    s.closeServer()
    print("Server closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
