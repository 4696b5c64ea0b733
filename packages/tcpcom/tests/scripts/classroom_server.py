# A typical TigerJython classroom server, unchanged: no main loop, no imports but tcpcom's.
from tcpcom import *

IP_PORT = int(sys.argv[1])

def onStateChanged(state, msg):
    if state == "LISTENING":
        print("Server:-- Listening on", msg)
    elif state == "CONNECTED":
        print("Server:-- Connected to", msg)
    elif state == "MESSAGE":
        print("Server:-- Message received:", msg)
        if msg == "quit":
            server.terminate()
        else:
            server.sendMessage(msg.upper())
    elif state == TCPServer.TERMINATED:
        print("Server:-- Terminated")

print("Server:-- Version", TCPServer.getVersion())
server = TCPServer(IP_PORT, stateChanged = onStateChanged)
