"""A line-protocol echo server written the way MacPython programs used mactcp.

One TCP stream waits for one client (PassiveOpen + wait), then loops on Rcv, splitting the
byte stream into CR/LF-terminated lines and answering each with ``echo: <line>``; urgent data
is answered with ``urgent: <bytes>``. ``QUIT`` makes the server close first; when the client
closes, Rcv reports connectionClosing and the server closes its side too.

    python echo_server.py [port]      (port 0 or none: any free port, printed on stdout)
"""

import sys

import mactcp
from MACTCPconst import connectionClosing


def main(port=0):
    s = mactcp.TCPCreate(4096)
    s.PassiveOpen(port)
    port = s.GetSockName()[1]
    print("listening on port", port)
    sys.stdout.flush()
    s.wait()
    pending = b""
    lines = 0
    closed = 0
    while True:
        try:
            data, urgent, _mark = s.Rcv(0)
        except mactcp.error as arg:
            if arg[0] == connectionClosing:
                break
            raise
        if urgent:
            s.Send(b"urgent: " + data + b"\r\n", 1)
            continue
        pending = pending + data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            line = line.rstrip(b"\r")
            lines = lines + 1
            if line == b"QUIT":
                s.Send(b"bye\r\n", 1)
                s.Close()
                closed = 1
                break
            s.Send(b"echo: " + line + b"\r\n", 1)
    if not closed:
        s.Close()
        try:
            s.Rcv(1)  # the final report of the ended connection
        except mactcp.error as arg:
            if arg[0] != connectionClosing:
                raise
    print("served", lines, "lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
