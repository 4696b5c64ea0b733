from simplesockets import TCPServer

Server = TCPServer()
Server.setup(ip='127.0.0.1',port=9999) 
Server.start() 

while True:
    if Server.new_data_recved: #checks if any data recved
        recved_data = Server.return_recved_data() #returns the recved data as a list
        for data_element in recved_data:
            client_socket, address, data = data_element 
            Server.send_data(data, client_socket)
            Server.disconnect(client_socket)
