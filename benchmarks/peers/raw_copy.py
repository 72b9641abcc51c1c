"""The floor: one HTTP/1.1 GET on a plain socket, every received byte copied to stdout.
No parsing, no JSON: what moving the bytes through a Python process costs at the least."""

import os
import socket
import sys
from urllib.parse import urlsplit

url = sys.argv[1]
parts = urlsplit(url)
target = parts.path + ("?" + parts.query if parts.query else "")
sock = socket.create_connection((parts.hostname, parts.port or 80))
sock.sendall(
    f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
    "Connection: close\r\n\r\n".encode()
)
out = sys.stdout.fileno()
buf = bytearray(1 << 16)
view = memoryview(buf)
while True:
    n = sock.recv_into(buf)
    if not n:
        break
    pos = 0
    while pos < n:
        pos += os.write(out, view[pos:n])
sock.close()
