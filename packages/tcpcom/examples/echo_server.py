"""Echo server in the style of the TigerJython course (run it, then echo_client.py).

    python echo_server.py [port]

Every message is sent back prefixed with "echo:"; the message "stop" terminates the server.
There is no loop at the end: a running TCPServer keeps the program alive by itself, exactly as
with the original tcpcom.
"""

from tcpcom import *

IP_PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 22000  # `sys` comes with the star import


def onStateChanged(state, msg):
    if state == TCPServer.LISTENING:
        print("Server: listening on port", msg)
    elif state == TCPServer.CONNECTED:
        print("Server: connected to", msg)
    elif state == TCPServer.MESSAGE:
        print("Server: received", msg)
        if msg == "stop":
            server.terminate()
        else:
            server.sendMessage("echo:" + msg)
    elif state == TCPServer.TERMINATED:
        print("Server: terminated")
    elif state == TCPServer.PORT_IN_USE:
        print("Server: port", msg, "is in use")


server = TCPServer(IP_PORT, stateChanged=onStateChanged)
