#!/usr/bin/env python3
"""A stock Thrift Python client of header_echo.thrift (framed transport, binary
protocol; it knows nothing of THeader). Usage: plain_client.py GEN_DIR HOST PORT
Prints what whoami("") answered, then what current() answered."""
import sys

sys.path.insert(0, sys.argv[1])
from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402
from header_echo import Echo  # noqa: E402

socket = TSocket.TSocket(sys.argv[2], int(sys.argv[3]))
socket.setTimeout(10000)
transport = TTransport.TFramedTransport(socket)
client = Echo.Client(TBinaryProtocol.TBinaryProtocol(transport))
transport.open()
print(client.whoami(""))
print("current=" + client.current())
transport.close()
