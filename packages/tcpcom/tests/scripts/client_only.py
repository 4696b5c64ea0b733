from tcpcom import *

def onStateChanged(state, msg):
    sys.stdout.write("STATE %s %s\n" % (state, msg))

client = TCPClient("127.0.0.1", int(sys.argv[1]), stateChanged=onStateChanged)
sys.stdout.write("CONNECT %s\n" % client.connect())
sys.stdout.write("MAIN-END\n")
