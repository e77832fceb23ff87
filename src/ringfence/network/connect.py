"""``connect.py PROXY_HOST PROXY_PORT HOST PORT``: an HTTP CONNECT tunnel on stdin/stdout.

Inside the sandbox this is the SSH ProxyCommand ringfence sets (``GIT_SSH_COMMAND``), so
``git clone ssh://...`` to an allowed host goes through the allowlist proxy like everything
else. Standard library only; run as ``python -I -S``.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.stderr.write("usage: connect.py PROXY_HOST PROXY_PORT HOST PORT\n")
        return 2
    proxy_host, proxy_port, host, port = argv
    sock = socket.create_connection((proxy_host, int(proxy_port)), timeout=30)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        body = head.partition(b"\r\n\r\n")[2]
        sys.stderr.write(f"ringfence: {status.decode(errors='replace')}\n"
                         f"{body.decode(errors='replace')}")
        return 1
    rest = head.partition(b"\r\n\r\n")[2]
    if rest:
        os.write(1, rest)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    open_ends = 2
    while open_ends:
        for key, _ in sel.select():
            if key.data == "in":
                data = os.read(0, 65536)
                if not data:
                    sel.unregister(0)
                    sock.shutdown(socket.SHUT_WR)
                    open_ends -= 1
                else:
                    sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                os.write(1, data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
