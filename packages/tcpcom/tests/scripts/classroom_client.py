# A typical TigerJython classroom client, unchanged: GUI-less polling loop with time.sleep,
# `time` and `sys` used without importing them (the original's star import leaked them).
from tcpcom import *

IP_ADDRESS = "localhost"
IP_PORT = int(sys.argv[1])
received = []

def onStateChanged(state, msg):
    if state == TCPClient.CONNECTING:
        print("Client:-- Waiting for connecting...")
    elif state == TCPClient.CONNECTED:
        print("Client:-- Connected to", msg)
    elif state == TCPClient.CONNECTION_FAILED:
        print("Client:-- Connection failed")
    elif state == TCPClient.DISCONNECTED:
        print("Client:-- Connection lost")
    elif state == TCPClient.MESSAGE:
        print("Client:-- Received data: " + msg)
        received.append(msg)

client = TCPClient(IP_ADDRESS, IP_PORT, stateChanged = onStateChanged)
rc = client.connect()
if rc:
    n = 0
    while client.isConnected() and n < 3:
        client.sendMessage("hello " + str(n))
        n += 1
        time.sleep(0.1)
    while len(received) < 3:
        time.sleep(0.05)
    reply = client.sendMessage("grüezi €", 2)
    print("Client:-- Reply: " + str(reply))
    client.sendMessage("quit")
    while client.isConnected():   # the server terminates and closes the connection
        time.sleep(0.05)
    print("Client:-- Done")
else:
    print("Client:-- Connection failed")
