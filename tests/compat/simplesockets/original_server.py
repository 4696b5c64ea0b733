"""Runs the ORIGINAL simplesockets 0.4.0 TCPServer (under the interpreter given by
POLYSOCK_ORIGINAL_SIMPLESOCKETS_PYTHON) for the compat tests.

Protocol with the test on stdout/stdin, one line each:
  out: "PORT <n>" once listening; "CONNECT <port>" per accepted client;
       "RECV <hex>" per item its on_receive got
  in:  "disconnect" -> Server.disconnect(address) of every client; "quit" -> exit
Every received item is echoed back prefixed with b"echo:" (0.4.0's two-argument on_receive).
"""

import sys
import threading

import simplesockets
from simplesockets import TCPServer

assert hasattr(simplesockets, "SecureServer"), "this must be the original package"

lock = threading.Lock()


def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


server = TCPServer()


def on_connect(client):  # 0.4.0 passes the Server_Client
    say(f"CONNECT {client.address[1]}")


def on_receive(client, response):  # 0.4.0: (Server_Client, Socket_Response)
    say(f"RECV {response.response.hex()}")
    server.send_data(b"echo:" + response.response, client)


server.setup(ip="127.0.0.1", port=0, on_connect=on_connect, on_receive=on_receive)
server.start()
say(f"PORT {server.socket.getsockname()[1]}")
for line in sys.stdin:
    command = line.strip()
    if command == "disconnect":
        for address in list(server.clients):
            server.disconnect(address)
        say("DISCONNECTED")
    elif command == "quit":
        break
