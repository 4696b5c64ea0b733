"""Echo server for the benchmark, written once for both implementations.

It runs unchanged on polysock-simplesockets and on the original simplesockets 0.4.0.
``callback`` (default): 0.4.0's two-parameter ``on_receive(client, response)``, which polysock
keeps for compatibility, echoes from the callback. ``poll``: the manual's loop over
``Server.event.new_data``/``return_recved_data()`` (it spins, as the manual's does).
Prints the port, then the thread count whenever a line "threads" arrives on stdin.
"""

from __future__ import annotations

import sys
import threading

from simplesockets import TCPServer

style = sys.argv[1] if len(sys.argv) > 1 else "callback"
server = TCPServer()


def on_receive(client, response):  # type: ignore[no-untyped-def]
    server.send_data(response, client)


server.setup(ip="127.0.0.1", port=0, listen=512,
             on_receive=on_receive if style == "callback" else None)
server.start()
print(server.socket.getsockname()[1], flush=True)


def control() -> None:
    for line in sys.stdin:
        if line.strip() == "threads":
            print(threading.active_count(), flush=True)


if style == "callback":
    control()
else:
    threading.Thread(target=control, daemon=True).start()
    while True:
        if server.event.new_data:
            for item in server.return_recved_data():
                server.send_data(item.response, item.from_)
