from simplesockets.simplesockets import TCPClient

Client = TCPClient() 
Client.setup(target_ip='localhost', target_port=9999) # more options: listen=5, recv_buffer=2048, handle_client=None
Client.start()

Client.connect()
Client.autorecv()

Client.send_data(b'Test')
while True:
  if Client.event.new_data: 
    recved_data = Client.return_recved_data()
    for data_element in recved_data:
      print(data_element)
