from tcpcom import *

def onStateChanged(state, msg):
    sys.stdout.write("STATE %s %s\n" % (state, msg))
    if state == TCPServer.MESSAGE and msg == "stop":
        server.terminate()

server = TCPServer(0, stateChanged=onStateChanged)
sys.stdout.write("MAIN-END\n")
