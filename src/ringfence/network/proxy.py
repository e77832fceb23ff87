"""The allowlist proxy: in ringfence's own host-side process (never sandboxed), in a thread.

It accepts connections on listening sockets it is handed: a unix socket path, or a TCP socket
that was created *inside* a sandbox's network namespace and passed out (see
``backends._netns``), so the sandbox reaches it on its own 127.0.0.1 and the host opens no TCP
port. One port speaks both protocols; the first byte tells them apart:

- SOCKS5 (first byte 5): no authentication; CONNECT with a host name, IPv4 or IPv6 address.
  BIND and UDP ASSOCIATE are refused ("command not supported"), a denial answers "connection
  not allowed by ruleset".
- HTTP: ``CONNECT host:port`` (then bytes are relayed), or a plain request in absolute form
  (``GET http://host/path``), forwarded in origin form with ``Connection: close``; the rest of
  that connection (its body, and anything the client sends after it) is relayed unchanged to
  the same host and port, whatever a later request on it names. A refusal is a 403 whose body
  names the host and the option that would allow it.

Each listener carries its own ``NetworkRules`` and a ``ConnectionLog`` that receives one
``Connection`` record per connection (host, port, decision, rule, bytes each way, duration),
bounded in size and number (``network.records``): the command chooses what it sends. Bad input -- an
oversized or endless header, a client that sends nothing, garbage, a target that never answers --
ends that one connection with a log line and a record; everything else keeps being served.

Name resolution is the proxy's (``getaddrinfo`` on the host, or a resolver hook a test passes
in-process); the sandboxed command cannot influence it. The checked address is the one connected
to, so a name cannot be re-resolved to somewhere else in between.

The loop is ``network._loop`` (epoll and generator tasks), not ``asyncio``: importing
``asyncio`` costs more than the rest of a ``ringfence run``. Bytes are relayed with ``splice(2)``
on Linux (they never enter Python), by ``recv``/``send`` elsewhere.

``acquire()`` returns the process's shared proxy (started on first use) and ``release()`` stops
it with its last user: many runs of one session share one proxy.
"""

from __future__ import annotations

import _socket  # not `socket`: it imports enum, selectors and collections (~8 ms a run)
import _thread  # not `threading`: see _loop.start_thread
import os
import sys
import time

from . import _loop
from ._loop import Loop, Task
from .records import Connection, ConnectionLog
from .rules import Decision, NetworkRules, allow_hint, check_address, decide, normalise_host, shown

__all__ = ["Connection", "ConnectionLog", "Proxy", "acquire", "release"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable
    from typing import Any

    from ._loop import Gen, _Thread

    Resolver = Callable[[str, int], Iterable[str]]

MAX_HEADER = 32 * 1024
"""Bytes a request head (HTTP) may have; more ends the connection (431)."""
_TOO_LARGE = "431 Request Header Fields Too Large"
_MAX_TEXT = 300
"""Characters of a record's host and rule (twice that for its reason): a host name has 253."""


class Listener:
    __slots__ = ("sock", "rules", "records", "task", "closed", "tasks", "lookups")

    def __init__(self, sock: _socket.socket, rules: NetworkRules,
                 records: ConnectionLog) -> None:
        self.sock = sock
        self.rules = rules
        self.records = records
        self.task: Task | None = None
        self.closed = False
        self.tasks: set[Task] = set()
        self.lookups: dict[tuple[str, int], _Lookup] = {}  # in flight, by (host, port)


class _Lookup:
    """One name lookup in flight for a run, shared by every connection of that run to the
    same host and port that comes while it runs (a burst of parallel downloads makes one)."""

    __slots__ = ("done", "found", "error", "waiters", "task")

    def __init__(self) -> None:
        self.done = _loop.Event()
        self.found: list[str] = []
        self.error: BaseException | None = None
        # the connections waiting: their client socket, or None for one whose client may
        # have half-closed (a whole plain-http request): the lookup runs for it regardless
        self.waiters: list[_socket.socket | None] = []
        self.task: Task | None = None


class _Refused(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class _BadInput(Exception):
    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status  # the HTTP answer, if not 400 (431)


class _Abandoned(Exception):
    """The client went away while its connection waited (for a name lookup)."""


class _Unreachable(Exception):
    """The connection was allowed, but the target could not be reached (``timeout``: in time)."""

    def __init__(self, message: str, timeout: bool) -> None:
        super().__init__(message)
        self.timeout = timeout


class _State:
    """What one connection learned, for its record."""

    __slots__ = ("protocol", "host", "port", "allowed", "rule", "reason", "address", "sent",
                 "received", "start", "plain")

    def __init__(self) -> None:
        self.protocol = "?"
        self.host = ""
        self.port = 0
        self.allowed = False
        self.rule = ""
        self.reason = ""
        self.address = ""
        self.sent = 0
        self.received = 0
        self.start = time.monotonic()
        self.plain = False  # a plain http:// request (not CONNECT, not SOCKS5)

    def record(self) -> Connection:
        # every string is bounded (see ``records``): the host is normalised or cut short
        # where it is set, a reason is made of bounded parts; cut here too, to be sure
        return Connection(protocol=self.protocol, host=self.host[:_MAX_TEXT], port=self.port,
                          allowed=self.allowed, rule=self.rule[:_MAX_TEXT],
                          reason=self.reason[:2 * _MAX_TEXT],
                          address=self.address, sent=self.sent, received=self.received,
                          duration=round(time.monotonic() - self.start, 6))


class Proxy:
    """The proxy. ``start()`` runs its loop in a daemon thread; ``add_listener`` hands it a
    listening socket with its rules; ``stop()`` closes everything."""

    def __init__(self, *, resolver: Resolver | None = None, header_timeout: float = 10.0,
                 connect_timeout: float = 10.0,
                 own_addresses: Iterable[str] | Callable[[], Iterable[str]] | None = None
                 ) -> None:
        """``own_addresses``: this host's addresses, fixed (a test's), or a function that reads
        them (default: ``own_addresses()``, from the kernel's tables), called again when a
        decision needs them and they are older than ``OWN_MAX_AGE`` seconds: addresses come
        and go (IPv6 privacy addresses, a VPN, a container bridge) while a session's proxy
        lives for hours."""
        self.resolver = resolver
        self.header_timeout = header_timeout
        self.connect_timeout = connect_timeout
        self._own_source: Callable[[], Iterable[str]] | None
        if own_addresses is None or callable(own_addresses):
            self._own_source = own_addresses or _host_addresses
            self._own: tuple[str, ...] | None = None
        else:
            self._own_source = None
            self._own = tuple(own_addresses)
        self._own_at = 0.0  # when _own was read (monotonic)
        self.loop: Loop | None = None
        self.thread: threading.Thread | _Thread | None = None
        self.listeners: list[Listener] = []
        self.open_connections = 0
        self.per_run = MAX_PER_RUN  # connections one listener may hold open (set by start)

    # -- lifecycle (called from other threads) ---------------------------------------------

    def start(self) -> Proxy:
        if self.thread is not None:
            return self
        self.per_run = _raise_nofile()
        self.loop = loop = Loop()

        def main() -> None:
            if self._own is None:  # before the first connection is served
                self._read_own()
            loop.run()
            loop.close()

        self.thread = _loop.start_thread(main, "ringfence-proxy")
        return self

    def _in_loop(self, fn: Callable[[Callable[[], None]], None], timeout: float = 30) -> None:
        """Run ``fn(done)`` in the loop's thread and wait until it calls ``done()``."""
        assert self.loop is not None, "start() the proxy first"
        finished = _thread.allocate_lock()  # released when done
        finished.acquire()
        errors: list[BaseException] = []
        called: list[bool] = []

        def done() -> None:  # in the loop's thread
            if not called:
                called.append(True)
                finished.release()

        def call() -> None:
            try:
                fn(done)
            except BaseException as exc:
                errors.append(exc)
                done()

        self.loop.call_soon_threadsafe(call)
        if not finished.acquire(True, timeout):
            from ..errors import SandboxError

            raise SandboxError("the allowlist proxy did not answer (its thread is stuck or "
                               "gone); run the command again")
        if errors:
            raise errors[0]

    def stop(self) -> None:
        loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return

        def shutdown(done: Callable[[], None]) -> None:
            for listener in list(self.listeners):
                self._close_listener(listener)
            for task in list(loop.tasks):
                task.cancel()
            loop.call_later(0, loop.stop)  # after the cancelled tasks have run their endings
            done()

        self._in_loop(shutdown)
        thread.join(timeout=10)
        self.loop = None
        self.thread = None

    def add_listener(self, sock: _socket.socket, rules: NetworkRules,
                     records: ConnectionLog | None = None) -> Listener:
        """Serve connections accepted on ``sock`` (already listening) under ``rules``; their
        records go to ``records`` (``listener.records``)."""
        sock.setblocking(False)
        listener = Listener(sock, rules, records if records is not None else ConnectionLog())

        def add(done: Callable[[], None]) -> None:
            assert self.loop is not None
            self.listeners.append(listener)
            listener.task = self.loop.spawn(self._accept(listener))
            done()

        self._in_loop(add)
        return listener

    def serve_unix(self, path: str, rules: NetworkRules,
                   records: ConnectionLog | None = None) -> Listener:
        if sys.platform == "win32":
            raise OSError("unix socket listeners need Linux or macOS")
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(1024)
        return self.add_listener(sock, rules, records)

    def remove_listener(self, listener: Listener, *, wait: float = 2.0) -> None:
        """Stop accepting; wait up to ``wait`` seconds for its open connections to finish
        recording, then close them."""
        if self.loop is None:
            return

        def remove(done: Callable[[], None]) -> None:
            assert self.loop is not None
            loop = self.loop
            self._close_listener(listener)
            if not listener.tasks:
                done()
                return

            def check(task: Task | None = None) -> None:
                if not listener.tasks:
                    loop.cancel_timer(timer)
                    done()

            def give_up() -> None:
                for task in list(listener.tasks):
                    task.cancel()  # their endings record them, then check() calls done()

            timer = loop.call_later(wait, give_up)
            def later(task: Task) -> None:
                loop.call_later(0, check)

            for task in list(listener.tasks):
                task.add_done_callback(later)

        self._in_loop(remove, timeout=wait + 10)

    def _read_own(self) -> None:
        """Read this host's addresses again (any thread; the loop's only at start: reading may
        block on the host's own name lookup)."""
        if self._own_source is not None:
            self._own = tuple(self._own_source())
            self._own_at = time.monotonic()

    def _own_stale(self) -> bool:
        return self._own_source is not None and time.monotonic() - self._own_at > OWN_MAX_AGE

    def _close_listener(self, listener: Listener) -> None:
        if listener.closed:
            return
        listener.closed = True
        if listener.task is not None:
            listener.task.cancel()
        try:
            listener.sock.close()
        except OSError:
            pass
        if listener in self.listeners:
            self.listeners.remove(listener)

    # -- serving (in the loop's thread) ----------------------------------------------------

    def _accept(self, listener: Listener) -> Gen:
        assert self.loop is not None
        loop = self.loop
        full = False
        while not listener.closed:
            if len(listener.tasks) >= self.per_run:  # this run holds its share: wait
                if not full:
                    _warn("ringfence proxy: a run holds %d connections, its most at once; "
                          "new ones wait", len(listener.tasks))
                full = True
                yield from _loop.sleep(0.05)
                continue
            full = False
            try:
                conn, _ = yield from _loop.accept(listener.sock)
            except OSError as exc:
                if listener.closed:
                    return
                _warn("ringfence proxy: accept failed: %s", exc)
                yield from _loop.sleep(0.05)  # EMFILE and friends: back off, keep serving
                continue
            conn.setblocking(False)
            _loopback_congestion(conn)
            task = loop.spawn(self._handle(conn, listener))
            if not task.done:
                listener.tasks.add(task)
                task.add_done_callback(listener.tasks.discard)

    def _handle(self, conn: _socket.socket, listener: Listener) -> Gen:
        state = _State()
        self.open_connections += 1
        upstream: _socket.socket | None = None
        try:
            yield ("deadline", self.header_timeout + self.connect_timeout)
            up, leftover, reply = yield from self._handshake(conn, listener, state)
            upstream = up
            yield ("deadline", None)
            yield from _loop.sendall(conn, reply)
            yield from self._relay(conn, up, leftover, state)
        except _Refused as refused:
            state.allowed = False
            state.rule, state.reason = refused.decision.rule, refused.decision.reason
        except (_Unreachable, _Abandoned) as exc:
            state.reason = str(exc)
        except (_BadInput, TimeoutError) as exc:
            yield ("deadline", None)
            state.allowed = False
            state.rule = "malformed"
            state.reason = (str(exc) if isinstance(exc, _BadInput)
                            else "no complete request within the time limit")
            _warn("ringfence proxy: ended a connection: %s", state.reason)
            if state.protocol == "http":
                status = "408 Request Timeout" if isinstance(exc, TimeoutError) \
                    else exc.status or "400 Bad Request"
                yield from _quiet_send(conn, _http_response(status, state.reason + "\n"))
        except _loop.Cancelled:
            state.reason = state.reason or "proxy stopped"
        except OSError as exc:
            state.reason = f"connection error: {exc.strerror or exc}"
        except Exception as exc:  # never let one connection take the proxy down
            state.allowed = False
            state.rule = state.rule or "error"
            state.reason = f"internal error: {type(exc).__name__}: {exc}"
            _warn("ringfence proxy: unexpected error: %s", state.reason)
        finally:
            self.open_connections -= 1
            for s in (conn, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            listener.records.add(state.record())

    def _handshake(self, conn: _socket.socket, listener: Listener, state: _State) -> Gen:
        """Read the request, decide, connect. (upstream socket, bytes to forward, reply)."""
        first = yield from _loop.recv(conn, 1)
        if not first:
            raise _BadInput("the client closed without sending a request")
        if first == b"\x05":
            state.protocol = "socks5"
            return (yield from self._socks(conn, listener, state))
        state.protocol = "http"
        return (yield from self._http(conn, first, listener, state))

    def _http(self, conn: _socket.socket, buf: bytes, listener: Listener, state: _State) -> Gen:
        data = bytearray(buf)
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEADER:
                raise _BadInput(f"request head too large (over {MAX_HEADER} bytes)", _TOO_LARGE)
            chunk = yield from _loop.recv(conn, 8192)
            if not chunk:
                raise _BadInput("the client closed in the middle of the request head")
            data += chunk
        end = data.index(b"\r\n\r\n") + 4
        if end > MAX_HEADER:
            raise _BadInput(f"request head too large (over {MAX_HEADER} bytes)", _TOO_LARGE)
        head, rest = bytes(data[:end]), bytes(data[end:])
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise _BadInput("malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise _BadInput(f"unsupported protocol {version[:20]!r}")
        if method == "CONNECT":
            host, port = _split_hostport(target, None)
            request, reply = rest, b"HTTP/1.1 200 Connection established\r\n\r\n"
        else:
            if not target.lower().startswith("http://"):
                if target.lower().startswith("https://"):
                    raise _BadInput("https:// in absolute form needs CONNECT")
                raise _BadInput("not a proxy request (expected CONNECT or an absolute "
                                "http:// URL)")
            authority, slash, path = target[7:].partition("/")
            host, port = _split_hostport(authority.rpartition("@")[2], 80)
            out = [f"{method} /{path if slash else ''} {version}"]
            for line in lines[1:]:
                name = line.partition(":")[0].strip().lower()
                if line and name not in ("proxy-connection", "proxy-authorization",
                                         "connection", "keep-alive"):
                    out.append(line)
            # the server is asked to close after its answer, so the client opens a new
            # connection (decided again) for its next request. The rest of this connection
            # (a body of any kind, and whatever a client sends after its request, say to a
            # server that kept the connection open anyway) is relayed as it is to this same
            # host and port, already decided: whatever host a later request names, it
            # reaches only this one
            out.append("Connection: close")
            request = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest
            state.plain = True
            reply = b""
        state.host, state.port = shown(host), port
        try:
            upstream = yield from self._connect(conn, listener, host, port, state)
        except _Refused as refused:
            yield from _quiet_send(conn, _forbidden(state.host, port, refused.decision))
            raise
        except _Unreachable as exc:
            status = "504 Gateway Timeout" if exc.timeout else "502 Bad Gateway"
            yield from _quiet_send(conn, _http_response(status, f"{exc}\n"))
            raise
        return upstream, request, reply

    def _socks(self, conn: _socket.socket, listener: Listener, state: _State) -> Gen:
        n = (yield from _recv_exact(conn, 1))[0]
        methods = (yield from _recv_exact(conn, n)) if n else b""
        if 0 not in methods:
            yield from _quiet_send(conn, b"\x05\xff")
            raise _BadInput("SOCKS5 client offers no method without authentication")
        yield from _loop.sendall(conn, b"\x05\x00")
        ver, cmd, _, atyp = yield from _recv_exact(conn, 4)
        if ver != 5:
            raise _BadInput(f"SOCKS5 request with version {ver}")
        if atyp == 1:
            host = _socket.inet_ntop(_socket.AF_INET, (yield from _recv_exact(conn, 4)))
        elif atyp == 4:
            host = _socket.inet_ntop(_socket.AF_INET6, (yield from _recv_exact(conn, 16)))
        elif atyp == 3:
            length = (yield from _recv_exact(conn, 1))[0]
            host = (yield from _recv_exact(conn, length)).decode("latin-1")
        else:
            yield from _quiet_send(conn, _socks_reply(8))
            raise _BadInput(f"SOCKS5 address type {atyp} is unknown")
        raw_port = yield from _recv_exact(conn, 2)
        state.host, state.port = shown(host), raw_port[0] << 8 | raw_port[1]
        if cmd != 1:
            yield from _quiet_send(conn, _socks_reply(7))
            what = {2: "BIND", 3: "UDP ASSOCIATE"}.get(cmd, f"command {cmd}")
            raise _Refused(Decision(allowed=False, rule="socks-command",
                                    reason=f"SOCKS5 {what} is not supported"))
        try:
            upstream = yield from self._connect(conn, listener, host, state.port, state)
        except _Refused:
            yield from _quiet_send(conn, _socks_reply(2))  # connection not allowed by ruleset
            raise
        except _Unreachable as exc:
            yield from _quiet_send(conn, _socks_reply(6 if exc.timeout else 5))
            raise
        return upstream, b"", _socks_reply(0)

    def _connect(self, conn: _socket.socket, listener: Listener, host: str, port: int,
                 state: _State) -> Gen:
        rules = listener.rules
        decision = decide(rules, host, port)
        state.rule, state.reason = decision.rule, decision.reason
        if not decision.allowed:
            raise _Refused(decision)
        # a client that has closed its end is gone, unless its (plain http) request is whole
        # and it only half-closed, as some do, to wait for the answer
        watch = None if state.plain else conn
        addresses = yield from self._resolve(normalise_host(host) or host, port, watch, listener)
        if not addresses:
            raise _Refused(Decision(allowed=False, rule="resolve",
                                    reason=f"{state.host} does not resolve"))
        refusal: Decision | None = None
        last_error: _Unreachable | None = None
        for address in addresses:
            check = check_address(rules, address, self._own or ())
            if not check.allowed:
                refusal = refusal or check
                continue
            state.allowed, state.address = True, address
            family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                yield ("deadline", self.connect_timeout)
                yield from _loop.connect(sock, (address, port))
            except TimeoutError:
                sock.close()
                last_error = _Unreachable(f"{state.host}:{port} ({address}) did not answer within "
                                          f"{self.connect_timeout:g} s", True)
            except OSError as exc:
                sock.close()
                last_error = _Unreachable(f"cannot connect to {state.host}:{port} ({address}): "
                                          f"{exc.strerror or exc}", False)
            else:
                yield ("deadline", self.header_timeout)  # for the rest of the handshake
                return sock
            yield ("deadline", self.header_timeout)
        if last_error is None and refusal is not None:
            raise _Refused(refusal)
        raise last_error or _Unreachable(f"{state.host}: no address to connect to", False)

    def _resolve(self, host: str, port: int, watch: _socket.socket | None,
                 listener: Listener) -> Gen:
        """The addresses of ``host``, looked up on a worker thread (in ``listener``'s queue),
        which also reads this host's addresses again when they are stale. Connections of one
        run to the same host and port share a lookup in flight; it is not run if every client
        waiting for it (``watch``) has gone by then, and it is dropped when they all stop
        waiting (timed out, cancelled)."""
        from .rules import ip_literal

        literal = ip_literal(host)
        if literal is not None and not self._own_stale():
            return [literal]
        key = (host, port)
        lookup = listener.lookups.get(key)
        if lookup is None:
            lookup = listener.lookups[key] = _Lookup()
            assert self.loop is not None
            lookup.task = self.loop.spawn(self._lookup(host, port, literal, listener, lookup))
        lookup.waiters.append(watch)
        try:
            yield ("wait", lookup.done)
        finally:
            lookup.waiters.remove(watch)
            if not lookup.waiters and not lookup.done.is_set:  # nobody waits: drop it
                if listener.lookups.get(key) is lookup:
                    del listener.lookups[key]
                if lookup.task is not None:
                    lookup.task.cancel()
        if isinstance(lookup.error, _Abandoned):
            raise _Abandoned(str(lookup.error))
        if lookup.error is not None:
            raise RuntimeError(f"name lookup failed: {lookup.error}")
        return lookup.found

    def _lookup(self, host: str, port: int, literal: str | None, listener: Listener,
                lookup: _Lookup) -> Gen:
        """The task that runs one shared lookup (see ``_resolve``)."""
        resolver = self.resolver

        def work() -> list[str]:
            waiters = list(lookup.waiters)
            if None not in waiters and all(_client_gone(s) for s in waiters if s is not None):
                raise _Abandoned("the client closed before its host name was looked up")
            if literal is not None:
                found = [literal]
            elif resolver is not None:  # the test hook: on the same threads as real lookups
                found = list(resolver(host, port))
            else:
                try:
                    infos = _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
                except OSError:
                    infos = []
                found = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if self._own_stale():
                self._read_own()
            return found

        try:
            lookup.found = yield ("thread", work, listener)
        except _loop.Cancelled:
            return  # nobody waits for it any more
        except Exception as exc:  # _Abandoned, or no thread could be started
            lookup.error = exc
        if listener.lookups.get((host, port)) is lookup:
            del listener.lookups[(host, port)]
        lookup.done.set()

    def _relay(self, client: _socket.socket, upstream: _socket.socket, first: bytes,
               state: _State) -> Gen:
        if first:  # bytes that came with the request head go first
            state.sent += len(first)
            yield from _loop.sendall(upstream, first)
        for s in (client, upstream):
            if s.family in (_socket.AF_INET, _socket.AF_INET6):
                s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        assert self.loop is not None
        loop = self.loop
        done = _loop.Event()
        left = [2]

        def sent(n: int) -> None:
            state.sent += n

        def received(n: int) -> None:
            state.received += n

        def finished(exc: BaseException | None) -> None:
            left[0] -= 1
            if exc is not None or left[0] == 0:
                done.set()

        pumps = (_Pump(loop, client, upstream, sent, finished),
                 _Pump(loop, upstream, client, received, finished))
        for pump in pumps:
            pump.start()
        try:
            yield ("wait", done)
        finally:
            for pump in pumps:
                pump.stop()


# ---------------------------------------------------------------------------------------------
# The relay: socket -> pipe -> socket with splice(2) on Linux (the bytes never enter Python; each
# direction's pipe is made on its first byte, so an idle tunnel holds none), recv/send elsewhere;
# driven by the loop's readiness callbacks.

_splice: Any = getattr(os, "splice", None)  # Linux only (getattr: the other platforms' checks)
_pipe2: Any = getattr(os, "pipe2", None)
_SPLICE = _splice is not None and _pipe2 is not None
_SPLICE_FLAGS = 0x1 | 0x2  # SPLICE_F_MOVE | SPLICE_F_NONBLOCK
_CHUNK = 1 << 20
# Pipes enlarged to _CHUNK at once, over all of a loop's tunnels. A tunnel whose receiver stops
# reading keeps its pipe full: kernel memory that no limit of the command counts (and as root
# not even the per-user pipe budget), so only this many get 1 MiB; the others keep the default
# 64 KiB (a bulk transfer through one of them is slower; none fails).
_BIG_PIPES = 16


class _Pump:
    """One direction of a tunnel: ``src`` to ``dst``."""

    def __init__(self, loop: Loop, src: _socket.socket, dst: _socket.socket,
                 count: Callable[[int], None], finished: Callable[[BaseException | None], None]
                 ) -> None:
        self.loop = loop
        self.src, self.dst = src.fileno(), dst.fileno()
        self.src_sock, self.dst_sock = src, dst
        self.count = count
        self.finished = finished
        self.pipe: tuple[int, int] | None = None
        self.big = False  # the pipe counts against _BIG_PIPES
        self.buffer = b""  # without splice: what is read and not yet written
        self.pending = 0
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    def start(self) -> None:
        self._read_on()

    def _read_on(self) -> None:
        if not self.reading and not self.eof and not self.done:
            self.loop.add_reader(self.src, self._readable)
            self.reading = True

    def _read_off(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.src)
            self.reading = False

    def _readable(self) -> None:
        try:
            if _SPLICE:
                if self.pipe is None:
                    self.pipe = self._make_pipe()
                n = _splice(self.src, self.pipe[1], _CHUNK, flags=_SPLICE_FLAGS)
            else:
                data = self.src_sock.recv(_CHUNK)
                self.buffer += data
                n = len(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(exc)
            return
        if n == 0:
            self.eof = True
            self._read_off()
        else:
            self.count(n)
            self.pending += n
        self._drain()

    def _make_pipe(self) -> tuple[int, int]:
        pipe: tuple[int, int] = _pipe2(0o4000 | 0o2000000)  # O_NONBLOCK | O_CLOEXEC (Linux)
        if sys.platform == "win32" or self.loop.big_pipes >= _BIG_PIPES:
            return pipe
        try:  # a bigger pipe moves more per system call (bounded by fs.pipe-max-size)
            import fcntl

            fcntl.fcntl(pipe[1], 1031, _CHUNK)  # F_SETPIPE_SZ
        except OSError:
            return pipe  # over the user's pipe budget: the default 64 KiB still works
        self.big = True
        self.loop.big_pipes += 1  # (the loop's thread only)
        return pipe

    def _drain(self) -> None:
        while self.pending:
            try:
                if _SPLICE:
                    assert self.pipe is not None
                    n = _splice(self.pipe[0], self.dst, self.pending, flags=_SPLICE_FLAGS)
                else:
                    n = self.dst_sock.send(self.buffer)
                    self.buffer = self.buffer[n:]
            except (BlockingIOError, InterruptedError):
                self._read_off()  # the receiver is slow: stop reading until it catches up
                if not self.writing:
                    self.loop.add_writer(self.dst, self._writable)
                    self.writing = True
                return
            except OSError as exc:
                self._finish(exc)
                return
            self.pending -= n
        if self.eof:
            try:
                self.dst_sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass
            self._finish(None)
        else:
            self._read_on()

    def _writable(self) -> None:
        self.loop.remove_writer(self.dst)
        self.writing = False
        self._drain()

    def _finish(self, exc: BaseException | None) -> None:
        if self.done:
            return
        self.stop()
        self.finished(exc)

    def stop(self) -> None:
        self.done = True
        self._read_off()
        if self.writing:
            self.loop.remove_writer(self.dst)
            self.writing = False
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None
        if self.big:
            self.big = False
            self.loop.big_pipes -= 1


# ---------------------------------------------------------------------------------------------
# Helpers.

_TCP_CONGESTION: int | None = getattr(_socket, "TCP_CONGESTION", None)  # Linux


def _loopback_congestion(sock: _socket.socket) -> None:
    """The command's side of a tunnel (127.0.0.1 in the sandbox's own namespace) never leaves
    the machine, so there is no congestion to control. A pacing algorithm such as BBR (a common
    default) still schedules every send with timers, which on loopback only costs CPU: here a
    bulk transfer on loopback runs ~25% slower with BBR than with Reno. Reno is built into
    every kernel and allowed to every user; the upstream side keeps the system's choice."""
    if _TCP_CONGESTION is None or sock.family not in (_socket.AF_INET, _socket.AF_INET6):
        return
    try:
        host = sock.getsockname()[0]
        if host.startswith(("127.", "::ffff:127.")) or host == "::1":
            sock.setsockopt(_socket.IPPROTO_TCP, _TCP_CONGESTION, b"reno")
    except OSError:
        pass  # an optimisation only

def _warn(message: str, *args: object) -> None:
    """A log line on the ``ringfence.proxy`` logger (``logging`` is imported only when one is
    written: it costs start-up time). Not even then while ``threading`` is not imported:
    ``logging`` imports it, and this (the proxy's) thread would become the process's
    ``threading.main_thread()``; no handler can be set up without ``logging`` either, so the
    line goes where ``logging``'s last resort would put it, on stderr."""
    if "threading" not in sys.modules:
        if sys.stderr is not None:
            try:
                sys.stderr.write(message % args + "\n")
                sys.stderr.flush()
            except Exception:  # as logging's handlers: a log line never ends the proxy
                pass
        return
    import logging

    logging.getLogger("ringfence.proxy").warning(message, *args)


def _client_gone(sock: _socket.socket) -> bool:
    """Whether the client has closed its end (a peek: reads nothing, blocks never; called from
    a lookup thread while the connection's task waits for that lookup)."""
    try:
        return sock.recv(1, _socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _quiet_send(sock: _socket.socket, data: bytes) -> Gen:
    try:
        yield ("deadline", 2.0)
        yield from _loop.sendall(sock, data)
    except (OSError, TimeoutError):
        pass


def _recv_exact(sock: _socket.socket, n: int) -> Gen:
    buf = b""
    while len(buf) < n:
        chunk = yield from _loop.recv(sock, n - len(buf))
        if not chunk:
            raise _BadInput("the client closed in the middle of the SOCKS5 handshake")
        buf += chunk
    return buf


def _socks_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


def _split_hostport(text: str, default: int | None) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = text, ""
    if not port_text:
        if default is None:
            raise _BadInput(f"CONNECT target {text[:80]!r} has no port")
        return host, default
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) \
            or not 0 < int(port_text) < 65536:  # (int() of 4,300+ digits raises)
        raise _BadInput(f"bad port in {text[:80]!r}")
    return host, int(port_text)


def _http_response(status: str, body: str) -> bytes:
    payload = body.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload


def _forbidden(host: str, port: int, decision: Decision) -> bytes:
    body = (f"ringfence: connection to {host}:{port} refused: {decision.reason}.\n"
            f"To allow it: {allow_hint(host, port, decision)}.\n")
    return _http_response("403 Forbidden", body)


def own_addresses() -> tuple[str, ...]:
    """This host's own addresses (refused unless ``allow_local``), from the kernel's tables."""
    found: set[str] = set()
    try:
        with open("/proc/net/fib_trie") as fh:
            lines = fh.read().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == "/32 host LOCAL" and i > 0:
                found.add(lines[i - 1].split()[-1])
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as fh:
            for line in fh:
                raw = line.split()[0]
                found.add(ipv6_text(raw))
    except (OSError, ValueError):
        pass
    try:
        # the name as bytes: a str goes through the "idna" codec, whose import (with `re` and
        # `stringprep`) costs ~4 ms on every run in the allowlist mode
        name = _socket.gethostname()
        host: str | bytes = name.encode("ascii") if name.isascii() else name
        for info in _socket.getaddrinfo(host, None):
            found.add(str(info[4][0]))
    except (OSError, UnicodeError):
        pass
    return tuple(sorted(found))


def _host_addresses() -> tuple[str, ...]:
    return own_addresses()


def ipv6_text(raw: str) -> str:
    """The address in ``/proc/net/if_inet6``'s 32 hex digits, written as ``ipaddress`` writes
    it (RFC 5952: lower case, no leading zeros, the first longest run of two or more zero
    groups as ``::``), without importing ``ipaddress`` (~3 ms, on every run in the allowlist
    mode; the decisions import it when a connection comes)."""
    if len(raw) != 32:
        raise ValueError(f"not an IPv6 address in hex: {raw!r}")
    groups = [format(int(raw[i:i + 4], 16), "x") for i in range(0, 32, 4)]
    best, best_len, run, run_len = -1, 0, -1, 0
    for i, group in enumerate(groups):
        if group == "0":
            if run_len == 0:
                run = i
            run_len += 1
            if run_len > best_len:
                best, best_len = run, run_len
        else:
            run_len = 0
    if best_len < 2:
        return ":".join(groups)
    return ":".join(groups[:best]) + "::" + ":".join(groups[best + best_len:])


def _raise_nofile() -> int:
    """Each proxied connection holds two sockets (and up to two pipes); lift the soft fd
    limit to the hard one. Returns how many connections one run may hold open at once: at
    most MAX_PER_RUN, and few enough that a quarter of the descriptors can serve them, so
    one run cannot use up those of ringfence's process (its other runs, its own files)."""
    if sys.platform == "win32":
        return MAX_PER_RUN
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return MAX_PER_RUN
    return max(16, min(MAX_PER_RUN, soft // 4 // 6))


MAX_PER_RUN = 1024
OWN_MAX_AGE = 5.0
"""Seconds this host's addresses are trusted before a decision reads them again."""


# ---------------------------------------------------------------------------------------------
# The process's shared proxy.

_shared: Proxy | None = None
_users = 0
_lock = _thread.allocate_lock()


def acquire(resolver: Resolver | None = None) -> Proxy:
    """The shared proxy, started on first use; every ``acquire`` needs one ``release``."""
    global _shared, _users
    with _lock:
        if _shared is not None and (_shared.thread is None or not _shared.thread.is_alive()):
            _shared = None  # its loop ended (it never should): start a fresh one
        if _shared is None:
            _shared = Proxy(resolver=resolver or _hosts_file_resolver()).start()
        _users += 1
        return _shared


def release() -> None:
    global _shared, _users
    with _lock:
        _users -= 1
        if _users <= 0 and _shared is not None:
            _shared.stop()
            _shared = None
            _users = 0


def _hosts_file_resolver() -> Resolver | None:
    """The test hook: ``RINGFENCE_PROXY_HOSTS`` in *ringfence's own* environment names a file of
    ``name address`` lines the proxy resolves from instead of DNS. The sandboxed command cannot
    set it: the proxy runs in ringfence's process, before and outside the sandbox."""
    path = os.environ.get("RINGFENCE_PROXY_HOSTS")
    if not path:
        return None
    table: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                table.setdefault(parts[0].lower(), []).append(parts[1])

    def resolve(host: str, port: int) -> list[str]:
        return table.get(host.lower().removesuffix("."), [])

    return resolve
