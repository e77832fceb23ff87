"""Make the host-side proxy reachable on 127.0.0.1 inside a sandbox's own network namespace.

No process runs inside the sandbox for this. bubblewrap is started with ``--info-fd`` (it writes
the sandbox's pid once the namespaces exist) and ``--block-fd`` (it waits, after every mount and
just before the seccomp filter and the command, until a byte arrives); ``linux.Prepared.started``
reads the one, calls ``Attachment.after_start`` and then releases the other. There a short-lived
child of ringfence joins the sandbox's network namespace -- first its user namespace (found with
``NS_GET_USERNS`` on the network namespace, so bubblewrap's nested user namespace does not
matter) when ringfence is not root -- creates a TCP socket listening on 127.0.0.1:PORT *there*,
and passes the descriptor back over a unix socket (SCM_RIGHTS). ringfence's proxy accepts on
it: a connection made inside the sandbox arrives at the host proxy in one hop, and the host
opens no TCP port. Only then is the command released.

``setns`` is called through ctypes (``os.setns`` is Python 3.12+); joining a user namespace
requires a single-threaded process, which the freshly forked child is.
"""

from __future__ import annotations

import os
import sys

from ..errors import SandboxError

assert sys.platform == "linux"

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from ..network.proxy import Connection, ConnectionLog, Listener, Proxy
    from ..network.rules import NetworkRules

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1)
SETUP_TIMEOUT = 10.0


def _setns(libc: object, fd: int, nstype: int) -> None:
    import ctypes

    if libc.setns(fd, nstype) != 0:  # type: ignore[attr-defined]
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _listen_inside(pid: int, port: int) -> socket.socket:
    """In a forked child: join ``pid``'s network namespace, listen on 127.0.0.1:``port``,
    send the socket back. Returns the listening socket (in the sandbox's namespace)."""
    import ctypes
    import fcntl
    import socket
    import time

    libc = ctypes.CDLL(None, use_errno=True)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:  # single-threaded from here on; never returns into the caller's code
        code = 1
        try:
            ours.close()
            netfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(libc, netfd, CLONE_NEWNET)
            except PermissionError:
                userfd = fcntl.ioctl(netfd, NS_GET_USERNS)
                _setns(libc, userfd, CLONE_NEWUSER)
                _setns(libc, netfd, CLONE_NEWNET)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            deadline = time.monotonic() + SETUP_TIMEOUT
            while True:  # bubblewrap brings up lo itself; until then 127.0.0.1 does not exist
                try:
                    sock.bind(("127.0.0.1", port))
                    break
                except OSError as exc:
                    if exc.errno != 99 or time.monotonic() > deadline:  # EADDRNOTAVAIL
                        raise
                    time.sleep(0.0005)
            sock.listen(4096)
            socket.send_fds(theirs, [b"ok"], [sock.fileno()])
            code = 0
        except BaseException as exc:
            try:
                theirs.sendall(f"error: {exc}".encode()[:500])
            except BaseException:
                pass
        finally:
            os._exit(code)
    theirs.close()
    try:
        ours.settimeout(SETUP_TIMEOUT)
        msg, fds, _, _ = socket.recv_fds(ours, 1024, 1)
    except OSError as exc:
        raise SandboxError(f"cannot reach the sandbox's network namespace: {exc}") from None
    finally:
        ours.close()
        os.waitpid(child, 0)
    if msg != b"ok" or not fds:
        why = msg.decode(errors="replace").removeprefix("error: ") or "no answer"
        raise SandboxError(f"cannot open the proxy port inside the sandbox: {why}; "
                           "run ringfence doctor")
    return socket.socket(fileno=fds[0])


class Attachment:
    """The proxy side of one run: the listener inside the sandbox and the records."""

    __slots__ = ("rules", "port", "records", "proxy", "listener")

    def __init__(self, rules: NetworkRules, port: int) -> None:
        self.rules = rules
        self.port = port
        self.records: ConnectionLog | None = None  # bounded, whatever the command does
        self.proxy: Proxy | None = None
        self.listener: Listener | None = None

    def warm(self) -> None:
        """Import and start the proxy (milliseconds: socket, ctypes, the proxy's loop), on this
        thread, after bubblewrap has been started: the command line does it right after the
        spawn, the library in ``after_start``; either way while bubblewrap builds the sandbox.
        (A thread started before the spawn for it held the GIL most of the time it ran, and
        held back this one's work before the spawn, the plan and the placeholders, by as long
        as it saved.) Idempotent."""
        import ctypes  # noqa: F401  (the setns helper's, imported before its fork)
        import fcntl  # noqa: F401

        from ..network import proxy as proxy_mod
        from ..network.records import ConnectionLog

        if self.records is None:
            self.records = ConnectionLog()
        if self.proxy is None:
            self.proxy = proxy_mod.acquire()

    def after_start(self, child: int) -> None:
        """The sandbox (its first process is ``child``) exists and waits: attach the proxy.
        The caller releases the command afterwards, or kills the sandbox if this raises."""
        try:
            self.warm()
        except (OSError, ImportError) as exc:
            raise SandboxError(f"cannot start the allowlist proxy: {exc}") from None
        assert self.proxy is not None and self.records is not None
        sock = _listen_inside(child, self.port)
        self.listener = self.proxy.add_listener(sock, self.rules, self.records)

    def finish(self) -> list[Connection]:
        """The command is gone: let the proxy record the connections it had, stop listening."""
        if self.proxy is not None and self.listener is not None:
            self.proxy.remove_listener(self.listener, wait=1.0)
            self.listener = None
        return self.records.entries() if self.records is not None else []

    def close(self) -> None:
        self.finish()
        if self.proxy is not None:
            from ..network import proxy as proxy_mod

            proxy_mod.release()
            self.proxy = None
