#!/usr/bin/env python3
"""serpy chat client: lines typed go to the broadcast server, messages from the others are
printed as ``>>> text``. ``/stop`` quits, ``/name NEW`` renames, ``/KTHXBYE`` stops the server.
"""

import sys
import threading

import serpy as sp
from _args import parse

lock = threading.Lock()
stop_flag = threading.Event()


def receiver(c: sp.Connection) -> None:
    while not stop_flag.is_set():
        try:
            text = c.getData(1).decode("utf-8")
        except sp.queue.Empty:  # also raised (as ConnectionClosed) once the server is gone
            if not c.isConnected() and not c.auto_restart:
                return
            continue
        with lock:
            print(">>> " + text, flush=True)


def main() -> int:
    args = parse(__doc__, server=False)
    name = "VOID"
    c = sp.Connection(encoding="utf-8", auto_restart=True).connect(args.host, args.port)
    print("-------------- Connected --------------", flush=True)
    th = threading.Thread(target=receiver, args=(c,))
    th.start()
    for line in sys.stdin:
        s = line.rstrip("\n")
        if not s:
            continue
        if s.lower() == "/stop":
            break
        if s.lower().startswith("/name"):
            name = " ".join(s.split(" ")[1:])
        elif s == "/KTHXBYE":
            c.sendData(s)
        elif s.startswith("/"):
            with lock:
                print("WARNING : Command not recognized", flush=True)
        else:
            c.sendData(name + " : " + s)
    stop_flag.set()
    th.join()
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
