# An idle server with an idle connected client: report the CPU time used while idle.
from tcpcom import *

server = TCPServer(0, None)
client = TCPClient("127.0.0.1", server.port, None)
assert client.connect()
time.sleep(0.5)  # let start-up work (thread pools, first callbacks) settle
wall0, cpu0 = time.monotonic(), time.process_time()
time.sleep(float(sys.argv[1]))
print("IDLE-CPU", time.process_time() - cpu0, time.monotonic() - wall0)
print("CONNECTED", client.isConnected(), server.isConnected())
client.disconnect()
server.terminate()
