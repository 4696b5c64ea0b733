from tcpcom import *

def onStateChanged(state, msg):
    sys.stdout.write("STATE %s %s\n" % (state, msg))

TCPServer(int(sys.argv[1]), stateChanged=onStateChanged)
sys.stdout.write("MAIN-END\n")
