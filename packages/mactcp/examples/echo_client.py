"""The client side of echo_server.py, also in the classic mactcp style.

    python echo_client.py port line...

Connects with ActiveOpen to 127.0.0.1:port, sends each line, prints each answer, then closes
and reads until the server has closed too.
"""

import sys

import mactcp
from MACTCPconst import connectionClosing


def main(port, lines):
    s = mactcp.TCPCreate(4096)
    s.ActiveOpen(0, "127.0.0.1", port)
    received = b""
    for line in lines:
        s.Send(line.encode("utf-8") + b"\r\n", 1)
        while received.count(b"\n") < 1:
            data, _urgent, _mark = s.Rcv(10)
            received = received + data
        answer, received = received.split(b"\n", 1)
        print(answer.rstrip(b"\r").decode("utf-8"))
    s.Close()
    while True:
        try:
            s.Rcv(10)
        except mactcp.error as arg:
            if arg[0] == connectionClosing:
                break
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
