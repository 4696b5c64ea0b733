"""Client for echo_server.py: connects, asks five questions, then stops the server.

    python echo_client.py [host] [port]

``sendMessage(msg, 2)`` waits up to 2 s for the server's reply and returns it (the original
documented this but always returned None).
"""

from tcpcom import *

IP_ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "localhost"
IP_PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 22000


def onStateChanged(state, msg):
    if state == TCPClient.CONNECTING:
        print("Client: connecting to", msg)
    elif state == TCPClient.CONNECTED:
        print("Client: connected to", msg)
    elif state == TCPClient.SERVER_OCCUPIED:
        print("Client: the server is busy with another client")
    elif state == TCPClient.CONNECTION_FAILED:
        print("Client: connection failed")
    elif state == TCPClient.DISCONNECTED:
        print("Client: disconnected")


client = TCPClient(IP_ADDRESS, IP_PORT, stateChanged=onStateChanged)
if client.connect(5):
    for i in range(5):
        reply = client.sendMessage("question %d" % i, 2)
        print("Client: reply", reply)
    client.sendMessage("stop")
    client.disconnect()
