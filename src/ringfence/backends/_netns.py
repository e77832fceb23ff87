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

``setns`` is ``os.setns`` (Python 3.12+), or libc's through ``_ctypes`` (the C module alone: the
``ctypes`` package costs ~3 ms to import); joining a user namespace requires a single-threaded
process, which the freshly forked child is. The sockets are ``_socket``'s (``socket`` imports
``enum``, ``selectors`` and ``collections``: ~8 ms on every run), the descriptor passed with
``sendmsg``/``recvmsg`` and SCM_RIGHTS. Everything the child uses is imported before the fork:
an import in the child could wait forever on a module lock another thread held at the fork.
"""

from __future__ import annotations

import os
import sys

from ..errors import SandboxError

assert sys.platform == "linux"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Callable

    from ..network.proxy import Connection, ConnectionLog, Listener, Proxy
    from ..network.rules import NetworkRules

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1)
SETUP_TIMEOUT = 10.0


_setns: Callable[[int, int], None] | None = None


def _setns_function() -> Callable[[int, int], None]:
    """``setns(fd, nstype)``, raising ``OSError``; made (and its modules imported) before the
    fork, so the child only calls it."""
    global _setns
    if sys.version_info >= (3, 12):
        return os.setns
    if _setns is None:
        _setns = _libc_setns()
    return _setns


def _libc_setns() -> Callable[[int, int], None]:
    import _ctypes

    class _Setns(_ctypes.CFuncPtr):  # int setns(int, int): the default result and arguments
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO

    # None: the program itself and the libraries it loaded, libc among them (as ctypes.CDLL(None))
    libc = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]
    call = _Setns(_ctypes.dlsym(libc, "setns"))

    def setns(fd: int, nstype: int) -> None:
        if call(fd, nstype) != 0:
            err = _ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return setns


def _listen_inside(pid: int, port: int) -> socket:
    """In a forked child: join ``pid``'s network namespace, listen on 127.0.0.1:``port``,
    send the socket back. Returns the listening socket (in the sandbox's namespace)."""
    import _socket
    import fcntl
    import time

    setns = _setns_function()
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:  # single-threaded from here on; never returns into the caller's code
        code = 1
        try:
            ours.close()
            netfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(netfd, CLONE_NEWNET)
            except PermissionError:
                userfd = fcntl.ioctl(netfd, NS_GET_USERNS)
                setns(userfd, CLONE_NEWUSER)
                setns(netfd, CLONE_NEWNET)
            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
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
            theirs.sendmsg([b"ok"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                      sock.fileno().to_bytes(4, sys.byteorder))])
            code = 0
        except BaseException as exc:
            try:
                theirs.sendall(f"error: {exc}".encode()[:500])
            except BaseException:
                pass
        finally:
            os._exit(code)
    theirs.close()
    fds: list[int] = []
    try:
        ours.settimeout(SETUP_TIMEOUT)
        msg, ancillary, _, _ = ours.recvmsg(1024, _socket.CMSG_SPACE(4))
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += (int.from_bytes(data[i:i + 4], sys.byteorder)
                        for i in range(0, len(data) - 3, 4))
    except OSError as exc:
        raise SandboxError(f"cannot reach the sandbox's network namespace: {exc}") from None
    finally:
        ours.close()
        os.waitpid(child, 0)
    if msg != b"ok" or not fds:
        why = msg.decode(errors="replace").removeprefix("error: ") or "no answer"
        raise SandboxError(f"cannot open the proxy port inside the sandbox: {why}; "
                           "run ringfence doctor")
    return _socket.socket(fileno=fds[0])


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
        """Import and start the proxy (a few milliseconds: the proxy's modules and thread), on this
        thread, after bubblewrap has been started: the command line does it right after the
        spawn, the library in ``after_start``; either way while bubblewrap builds the sandbox.
        (A thread started before the spawn for it held the GIL most of the time it ran, and
        held back this one's work before the spawn, the plan and the placeholders, by as long
        as it saved.) Idempotent."""
        import fcntl  # noqa: F401  (the setns helper's, imported before its fork)

        _setns_function()  # _ctypes on Python 3.11, here rather than after the sandbox is up
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
