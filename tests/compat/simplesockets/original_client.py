"""Runs the ORIGINAL simplesockets 0.4.0 TCPClient for the compat tests.

argv: port, then hex payloads to send one after the other. For each payload it waits until
that many echoed bytes (the polysock test server echoes with a b"echo:" prefix) have been
received, printing "RECV <hex>" per received item, then closes and prints "DONE".
"""

import sys
import time

from simplesockets import TCPClient

port = int(sys.argv[1])
client = TCPClient()
client.setup(target_ip="127.0.0.1", target_port=port)
if not client.connect():
    print("CONNECT-FAILED", client.return_exceptions(), flush=True)
    sys.exit(2)
client.autorecv()
print("CONNECTED", client.socket.getsockname()[1], flush=True)
deadline = time.monotonic() + 20
for payload_hex in sys.argv[2:]:
    payload = bytes.fromhex(payload_hex)
    assert client.send_data(payload)
    expected = len(b"echo:") + len(payload)
    got = b""
    while len(got) < expected and time.monotonic() < deadline:
        if client.event.new_data:  # the original has no blocking wait that works
            for item in client.return_recved_data():
                print("RECV", item.response.hex(), flush=True)
                got += item.response
        else:
            time.sleep(0.001)
client.close()
print("DONE", flush=True)
