from tcpcom import *

def onStateChanged(state, msg):
    sys.stdout.write("STATE %s %s\n" % (state, msg))

server = TCPServer(0, stateChanged=onStateChanged)
sys.stdout.write("LOOPING\n")
server.loopForever()
sys.stdout.write("LOOP-RETURNED %s\n" % server.isTerminated())
