"""Servers the network tests start on 127.0.0.1 (never anything else), recording what reached
them, and a proxy fixture helper."""

from __future__ import annotations

import socket
import threading
import time


class TCPServer:
    """A threaded TCP server on 127.0.0.1. ``mode``: ``http`` (answers one request with
    ``body``), ``echo`` (echoes until EOF), ``silent`` (accepts, reads, never answers),
    ``keepalive`` (answers every request on a connection, its Content-Length body included,
    whatever ``Connection`` says, until the client is quiet for a second)."""

    def __init__(self, mode: str = "http", body: bytes = b"hello from the test server\n") -> None:
        self.mode = mode
        self.body = body
        self.seen: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port: int = self.sock.getsockname()[1]
        self._stop = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        self.conns.append(conn)
        try:
            if self.mode == "echo":
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.seen.append(data)
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            elif self.mode == "keepalive":
                self._keepalive(conn)
            elif self.mode == "silent":
                conn.settimeout(30)
                while conn.recv(65536):
                    pass
            else:
                data = b""
                conn.settimeout(10)
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.seen.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
                             b"\r\n%s" % (len(self.body), self.body))
        except OSError:
            pass
        finally:
            conn.close()

    def _keepalive(self, conn: socket.socket) -> None:
        conn.settimeout(1)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    return
                if not chunk:
                    return
                data += chunk
            end = data.index(b"\r\n\r\n") + 4
            length = 0
            for line in data[:end].split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(data) < end + length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.seen.append(data[:end + length])
            data = data[end + length:]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(self.body), self.body))

    def wait_seen(self, within: float = 2.0) -> list[bytes]:
        deadline = time.monotonic() + within
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.seen

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
