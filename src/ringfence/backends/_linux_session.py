"""The host side of a session on Linux: bubblewrap, the socketpair, the I/O thread.

``ringfence.session`` is the public API; this module is the engine it drives (see that
module's docstring for how a session works). The server inside is ``_session_server.py``.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from ..errors import CommandError, PolicyError, SandboxError, SessionError

assert sys.platform == "linux"  # for type checkers run with --platform darwin|win32

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..plan import Plan
    from ..policy.model import Policy
    from ..runner import Result

# The server's records (see _session_server.py).
_READY, _STARTED, _FAILED, _EXIT = 0, 1, 2, 3
_MAX_REQUEST = 128 * 1024  # argv + cwd of one command, as sent over the socketpair
_EXIT_GRACE = 0.2  # after the command exits, how long to wait for output its leftovers hold
_START_TIMEOUT = 30.0
# after the server is told to kill a command, how long its exit may take to be reported before
# the server is taken to be stopped or subverted (a command can SIGSTOP it: it runs with the
# commands' uid) and the whole sandbox is killed instead, so a timeout always ends the wait
_KILL_GRACE = 5.0




def _rlimit_arg(rlimits: tuple[tuple[str, int], ...]) -> str:
    import resource

    out = []
    for name, value in rlimits:
        res = getattr(resource, name)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU at the soft limit
        out.append(f"{res}={value}:{hard}")
    return ",".join(out)


class _Pending:
    """One command, as the I/O thread sees it."""

    __slots__ = ("ident", "argv", "fds", "stdin_fd", "stdin_buf", "stdin_close", "out_fds",
                 "buffers", "limit", "truncated", "deadline", "timed_out", "pid", "status",
                 "failure", "exited_at", "start", "sink", "stream", "done", "result",
                 "error", "pty", "cwd", "last_byte", "hold", "net_mark", "kill_at")

    def __init__(self, ident: int, argv: list[str], sink: Callable[[object], None],
                 stream: bool) -> None:
        self.ident = ident
        self.argv = argv
        self.fds: list[int] = []  # the ends the sandbox gets (closed once sent)
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_close = False
        self.out_fds: dict[int, str] = {}
        self.buffers = {"stdout": bytearray(), "stderr": bytearray()}
        self.limit: int | None = None
        self.truncated = False
        self.deadline: float | None = None
        self.timed_out = False
        self.pid = 0
        self.status: int | None = None
        self.failure: tuple[int, str] | None = None
        self.exited_at = 0.0
        self.start = 0.0
        self.net_mark: Any = None  # the proxy's records window of this command (a mark)
        self.sink = sink
        self.stream = stream
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.pty = False
        self.cwd = ""
        self.last_byte = b""
        self.hold = -1
        self.kill_at = 0.0  # when the server was first told to kill it (0: not yet)


class _Engine:
    """The host side of one sandbox: the bubblewrap process, the socketpair, the I/O thread."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.lock = threading.Lock()
        self.pending: dict[int, _Pending] = {}
        self.next_id = 1
        self.closed = False
        self.dead_reason = ""
        self.adds: list[_Pending] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sock: Any = None
        self.proc: Any = None
        self.prep: Any = None
        self.plan: Plan | None = None
        self.git_states: list[Any] | None = None  # _gitguard.IndexState, as last looked at
        self.git_warnings: list[str] = []  # what the last look, at the close, found
        self.ready = threading.Event()
        self.start_error: BaseException | None = None
        self.thread = threading.Thread(target=self._thread_main, name="ringfence-session",
                                       daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.start_error is not None:
            self.thread.join()
            self._close_wake()
            raise self.start_error

    # -- start-up (runs in the I/O thread: die-with-parent follows the thread) --------------

    def _start(self) -> None:
        if sys.platform != "linux":
            from ..runner import no_backend

            raise no_backend()
        import socket
        import subprocess

        from .. import _dirs
        from ..runner import make_plan, start_checks
        from . import linux

        if self.policy.profile == "full-access":
            raise PolicyError("sessions need a sandbox; the full-access profile has none, so "
                              "use ringfence.run for it or pick another profile")
        server = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "_session_server.py")
        plan = make_plan(self.policy, [sys.executable, "-I", "-S", server, "{session-fd}",
                                       "{rlimits}"])
        if plan.mode != "bwrap":
            raise SandboxError(f"sessions need the bubblewrap sandbox; this host gives the "
                               f"{plan.mode} mode (see ringfence doctor)")
        for hidden in ("/tmp/", "/var/tmp/", "/run/"):
            if server.startswith(hidden):
                raise SandboxError(f"ringfence is installed under {hidden}, which the sandbox "
                                   "replaces with its own, so the session server cannot start "
                                   "there; install it elsewhere")
        start_checks(plan)
        self.plan = plan
        prep = linux.prepare(plan, _dirs.state_dir())
        self.prep = prep
        host, inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            tokens = {"{session-fd}": str(inside.fileno()),
                      "{rlimits}": _rlimit_arg(plan.rlimits)}
            argv = [tokens.get(a, a) for a in prep.argv]
            # no preexec_fn: the sandbox joins the pids cgroup in ``started`` (the server
            # sets each command's own rlimits; the server itself has none)
            try:
                self.proc = subprocess.Popen(
                    argv, env=linux.helper_environ(plan), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    pass_fds=(*prep.fds, inside.fileno()), close_fds=True)
            except OSError as exc:
                raise SandboxError(f"cannot start {argv[0]}: {exc.strerror}") from None
        finally:
            inside.close()
            for fd in prep.fds:
                os.close(fd)
            prep.fds = []
        prep.started(self.proc.pid)  # cgroup, allowlist proxy; then the server starts
        self.sock = host
        import select

        poller = select.poll()
        poller.register(host.fileno(), select.POLLIN)
        if not poller.poll(_START_TIMEOUT * 1000):
            raise SandboxError("the session's sandbox did not start within "
                               f"{_START_TIMEOUT:.0f} s; run ringfence doctor")
        record = self._recv()
        if record is None or record[0] != _READY:
            err = b""
            try:
                self.proc.wait(5)
                err = self.proc.stderr.read() if self.proc.stderr else b""
            except subprocess.TimeoutExpired:
                pass
            msg = err.decode(errors="replace").strip() or "the session server did not start"
            raise SandboxError(f"bubblewrap could not create the session's sandbox: {msg}; "
                               "run ringfence doctor")
        if self.proc.stderr is not None:
            self.proc.stderr.close()  # bwrap says nothing more once the command runs

    def _recv(self) -> tuple[int, int, int, str] | None:
        """One record from the server, or None at end of stream. Never trusts the content."""
        import struct

        try:
            data = self.sock.recv(8192)
        except (BlockingIOError, InterruptedError):
            return (-1, 0, 0, "")
        except OSError:
            return None
        if len(data) < 13:
            return None  # EOF, or not a record we sent: treat the session as ended
        kind, ident, value = struct.unpack("<BIq", data[:13])
        return kind, ident, value, data[13:].decode("utf-8", "replace")

    def _thread_main(self) -> None:
        try:
            self._start()
        except BaseException as exc:
            self.start_error = exc
            self._teardown()
            self.ready.set()
            return
        self.ready.set()
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug here must not hang callers
            self.dead_reason = f"the session's I/O thread failed: {exc!r}"
        finally:
            self._teardown()

    # -- the I/O loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        import select

        poller = select.poll()
        sock_fd = self.sock.fileno()
        self.sock.setblocking(False)
        poller.register(sock_fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        by_fd: dict[int, _Pending] = {}
        stdin_of: dict[int, _Pending] = {}
        while True:
            now = time.monotonic()
            timeout: float | None = None
            for p in list(self.pending.values()):
                if p.deadline is not None and p.status is None:
                    if now >= p.deadline:
                        if not p.timed_out:
                            p.timed_out = True
                            self._kill(p)
                    else:
                        timeout = min(timeout or 1e9, p.deadline - now)
                if p.status is None and p.kill_at:
                    left = p.kill_at + _KILL_GRACE - now
                    if left <= 0:
                        self.dead_reason = (
                            f"the session's server did not end {p.argv[0]} within "
                            f"{_KILL_GRACE:.0f} s of being told to (a command stopped or "
                            "replaced it?), so the whole session was killed")
                        return
                    timeout = min(timeout or 1e9, left)
                if p.status is not None and p.out_fds:
                    left = p.exited_at + _EXIT_GRACE - now
                    if left <= 0:
                        for fd in list(p.out_fds):
                            poller.unregister(fd)
                            by_fd.pop(fd, None)
                            os.close(fd)
                        p.out_fds.clear()
                        self._maybe_finish(p)
                    else:
                        timeout = min(timeout or 1e9, left)
            try:
                events = poller.poll(None if timeout is None else max(1, int(timeout * 1000)
                                                                      + 1))
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    with self.lock:
                        adds, self.adds = self.adds, []
                        closing = self.closed
                    for p in adds:
                        for out in p.out_fds:
                            by_fd[out] = p
                            poller.register(out, select.POLLIN)
                        if p.stdin_fd >= 0 and p.stdin_fd not in stdin_of:
                            stdin_of[p.stdin_fd] = p
                            poller.register(p.stdin_fd, select.POLLOUT)
                    for sfd, p in list(stdin_of.items()):
                        if p.stdin_buf or p.stdin_close:
                            poller.modify(sfd, select.POLLOUT)
                    if closing:
                        return
                elif fd == sock_fd:
                    while True:
                        record = self._recv()
                        if record is None:
                            self.dead_reason = ("the session's sandbox ended unexpectedly "
                                                "(its server was killed?)")
                            return
                        if record[0] == -1:
                            break
                        self._on_record(*record)
                elif fd in stdin_of:
                    p = stdin_of[fd]
                    if self._feed(p):
                        poller.unregister(fd)
                        del stdin_of[fd]
                    elif not p.stdin_buf:
                        poller.modify(fd, 0)  # nothing to write until write() or close_stdin()
                elif fd in by_fd:
                    p = by_fd[fd]
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""  # EIO: a pseudo-terminal whose other side is closed
                    if chunk:
                        self._on_output(p, p.out_fds[fd], chunk)
                    else:
                        poller.unregister(fd)
                        del by_fd[fd]
                        del p.out_fds[fd]
                        if p.pty and p.status is None:
                            # closing a terminal's master hangs it up: SIGHUP for a command
                            # that is still exiting. Kept open until its exit is reported.
                            p.hold = fd
                        else:
                            os.close(fd)
                        self._maybe_finish(p)
            # a finished command's stdin goes away with it
            for sfd, p in list(stdin_of.items()):
                if p.done:
                    poller.unregister(sfd)
                    del stdin_of[sfd]
                    os.close(sfd)
                    p.stdin_fd = -1

    def _feed(self, p: _Pending) -> bool:
        """Write what stdin has buffered; True when stdin is finished (closed here)."""
        try:
            if p.stdin_buf:
                n = os.write(p.stdin_fd, p.stdin_buf[:65536])
                if n:
                    p.last_byte = bytes(p.stdin_buf[n - 1:n])
                del p.stdin_buf[:n]
        except BlockingIOError:
            return False
        except OSError:  # the command closed its stdin (EPIPE): drop the rest
            p.stdin_buf.clear()
            p.stdin_close = True
        if p.stdin_close and not p.stdin_buf:
            if p.pty:
                # end of input on a terminal is Ctrl-D at the start of a line; after other
                # input on the line, the first one only ends the line
                eof = b"\x04" if p.last_byte in (b"", b"\n") else b"\x04\x04"
                try:
                    os.write(p.stdin_fd, eof)
                except OSError:
                    pass
            os.close(p.stdin_fd)
            p.stdin_fd = -1
            return True
        return False

    def _on_output(self, p: _Pending, name: str, chunk: bytes) -> None:
        buf = p.buffers[name]
        if p.limit is not None and len(buf) + len(chunk) > p.limit:
            room = max(0, p.limit - len(buf))
            buf += chunk[:room]
            if p.stream and room:
                p.sink((name, chunk[:room]))
            if not p.truncated:
                p.truncated = True
                self._kill(p)  # past the cap: the command is stopped, not left to spin
            return
        buf += chunk
        if p.stream:
            p.sink((name, chunk))

    def _on_record(self, kind: int, ident: int, value: int, text: str) -> None:
        p = self.pending.get(ident)
        if p is None:
            return
        if kind == _STARTED:
            p.pid = value
            if p.timed_out or p.truncated:
                self._kill(p)
        elif kind == _EXIT:
            p.status = value & 0xFFFF
            p.exited_at = time.monotonic()
            self._maybe_finish(p)
        elif kind == _FAILED:
            p.failure = (value, text)
            p.status = -1
            p.exited_at = time.monotonic()
            self._maybe_finish(p)

    def _kill(self, p: _Pending) -> None:
        if p.status is None:
            self._send(("kill", p.ident, 9), [])
            p.kill_at = p.kill_at or time.monotonic()

    def _maybe_finish(self, p: _Pending) -> None:
        if p.done or p.status is None or p.out_fds:
            return
        p.done = True
        if p.hold >= 0:
            os.close(p.hold)
            p.hold = -1
        with self.lock:
            self.pending.pop(p.ident, None)
        if p.failure is not None:
            err, stage = p.failure
            name = p.argv[0]
            if stage == "exec" and err != 2 and self.plan is not None:
                # execvp reports EACCES when a PATH entry cannot be searched (a /root/bin of
                # another user) although the program is nowhere: look as a shell would
                from .linux import resolve_command

                try:
                    resolve_command(name, self.plan.env, p.cwd)
                except CommandError as exc:
                    err = 2 if exc.exit_code == 127 else err
            if stage == "exec" and err == 2:
                error: BaseException = CommandError(f"ringfence: {name}: command not found", 127)
            elif stage == "exec":
                error = CommandError(f"ringfence: {name}: cannot execute: {os.strerror(err)}",
                                     126)
            else:
                error = SandboxError(f"cannot start {name} in the session: {os.strerror(err)}")
            p.error = error
            self._net_release(p.net_mark)
            p.sink(("error", error))
            return
        p.result = self._result(p)
        p.sink(("done", p.result))

    def _net_log(self) -> Any:
        """The allowlist proxy's connection records (the session's one proxy, a bounded
        ``ConnectionLog``), or None. A command's result gets those made while it ran: with
        commands running at once, each also gets the others' connections of that time."""
        net = getattr(self.prep, "net", None) if self.prep is not None else None
        return net.records if net is not None else None

    def _net_since(self, mark: Any) -> tuple[Any, ...]:
        log = self._net_log()
        return tuple(log.since(mark)) if log is not None and mark is not None else ()

    def _net_release(self, mark: Any) -> None:
        """Close a command's records window that no result will read."""
        log = self._net_log()
        if log is not None and mark is not None:
            log.release(mark)

    def _result(self, p: _Pending) -> Result:
        from ..runner import Result

        status = p.status or 0
        signalled = os.WIFSIGNALED(status)
        code = 128 + os.WTERMSIG(status) if signalled else os.WEXITSTATUS(status)
        limits: list[str] = []
        if code in (128 + 24, 128 + 25):
            limits.append("cpu" if code == 128 + 24 else "file_size")
        if code and self.prep is not None and self.prep.pids_hit():  # a failure only
            limits.append("max_processes")
        if p.timed_out:
            limits.append("timeout")
        if p.truncated:
            limits.append("output")
        assert self.plan is not None
        result = Result(
            exit_code=code, duration=time.monotonic() - p.start, limits_hit=tuple(limits),
            mode=self.plan.mode, stdout=bytes(p.buffers["stdout"]),
            stderr=bytes(p.buffers["stderr"]), command=tuple(p.argv),
            env_removed=self.plan.env_removed, weaker=self.plan.weaker,
            layers=self.plan.layers, network=self._net_since(p.net_mark),
        )
        refused = any(not c.allowed for c in result.network)
        if code != 0 or limits or refused:
            from ..denials import attach

            result = attach(result, self.policy, cwd=p.cwd)
        warnings = self._check_git()
        if warnings:
            result = result.replace(git_warnings=tuple(warnings))
        return result

    def _check_git(self) -> list[str]:
        """What commands left in a git index since the last look (see ``_gitguard``); each
        command's result, and the close, take their turn. (With commands running at once, a
        result may carry another's.)"""
        if self.plan is None or not self.plan.git_indexes:
            return []
        from .._gitguard import after

        if self.git_states is None:
            self.git_states = list(self.plan.git_indexes)
        warnings: list[str] = []
        for i, state in enumerate(self.git_states):
            found, self.git_states[i] = after(state)
            warnings += found
        return warnings

    def _send(self, request: tuple[Any, ...], fds: list[int]) -> None:
        import marshal
        import socket

        data = marshal.dumps(request)
        if len(data) > _MAX_REQUEST:
            raise PolicyError(f"the command is {len(data)} bytes long; a session takes at most "
                              f"{_MAX_REQUEST // 1024} KiB per command: put long input in a "
                              "file in the workspace, or feed it on stdin")
        anc = []
        if fds:
            import array

            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        try:
            while True:
                try:
                    self.sock.sendmsg([data], anc)
                    return
                except BlockingIOError:
                    import select

                    select.select([], [self.sock], [], 1.0)
        except OSError as exc:
            raise SessionError(f"the session's sandbox is gone ({exc.strerror}); start a new "
                               "session") from None

    # -- requests from callers (any thread) ----------------------------------------------

    def submit(self, argv: list[str], cwd: str, *, timeout: float | None,
               output_limit: int | None, stdin: bytes | bool | None, pty: bool,
               stream: bool, sink: Callable[[object], None]) -> _Pending:
        with self.lock:
            if self.closed or self.dead_reason:
                raise SessionError(self.dead_reason or "the session is closed; start a new one")
            ident = self.next_id
            self.next_id = (self.next_id + 1) & 0x7FFFFFFF or 1
        p = _Pending(ident, argv, sink, stream)
        p.limit = output_limit
        p.pty = pty
        p.cwd = cwd
        mine: list[int] = []
        theirs: list[int] = []
        try:
            if pty:
                master, slave = os.openpty()
                mine.append(master)
                theirs.append(slave)
                os.set_blocking(master, False)
                p.out_fds[master] = "stdout"
                p.stdin_fd = os.dup(master)  # its own fd: polled for writing on its own
                mine.append(p.stdin_fd)
                if stdin is None:
                    p.stdin_close = True  # Ctrl-D at once: a terminal has no "/dev/null"
            else:
                if stdin is None:
                    theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                else:
                    r, w = os.pipe()
                    mine.append(w)
                    theirs.append(r)
                    os.set_blocking(w, False)
                    p.stdin_fd = w
                for name in ("stdout", "stderr"):
                    r, w = os.pipe()
                    mine.append(r)
                    theirs.append(w)
                    os.set_blocking(r, False)
                    p.out_fds[r] = name
            if isinstance(stdin, bytes | bytearray | memoryview):
                p.stdin_buf += stdin
                p.stdin_close = True
            if timeout:
                p.deadline = time.monotonic() + timeout
            p.start = time.monotonic()
            log = self._net_log()
            p.net_mark = log.mark() if log is not None else None
            with self.lock:
                self.pending[ident] = p
            try:
                self._send(("run", ident, [a.encode(errors="surrogateescape") for a in argv],
                            cwd.encode(errors="surrogateescape"), pty), theirs)
            except BaseException:
                with self.lock:
                    self.pending.pop(ident, None)
                self._net_release(p.net_mark)
                raise
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        with self.lock:
            self.adds.append(p)
        self._wake()
        return p

    def write(self, p: _Pending, data: bytes, close: bool = False) -> None:
        with self.lock:
            if p.stdin_fd < 0 and not p.done and not close:
                raise SessionError("this command's stdin is closed (or was not opened: start "
                                   "it with stdin=True)")
            p.stdin_buf += data
            if close:
                p.stdin_close = True
        self._wake()

    def kill(self, p: _Pending) -> None:
        if not p.done:
            self._send(("kill", p.ident, 9), [])
            p.kill_at = p.kill_at or time.monotonic()
            self._wake()  # the I/O thread now also waits for the kill to be reported

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass  # already awake
        except OSError:
            pass

    # -- ending ---------------------------------------------------------------------------

    def running(self) -> int:
        with self.lock:
            return len(self.pending)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self._wake()
        if threading.current_thread() is not self.thread:
            self.thread.join()
        self._close_wake()

    def _close_wake(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.wake_r = self.wake_w = -1

    def _teardown(self) -> None:
        """Kill the sandbox (the whole PID namespace goes with bwrap) and release everything."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.kill()
            except OSError:
                pass
            self.proc.wait()
            if self.proc.stderr is not None and not self.proc.stderr.closed:
                self.proc.stderr.close()
        if self.prep is not None:
            self.prep.close()
            self.prep = None
        # the sandbox is gone: a last look at the git indexes, for what a command still running
        # at the close did (kept on the session: Session.git_warnings)
        self.git_warnings += self._check_git()
        reason = self.dead_reason or "the session was closed"
        with self.lock:
            self.closed = True
            left = list(self.pending.values())
            self.pending.clear()
            adds, self.adds = self.adds, []
        for p in {id(x): x for x in [*left, *adds]}.values():
            fds = set(p.out_fds)
            if p.stdin_fd >= 0:
                fds.add(p.stdin_fd)
            if p.hold >= 0:
                fds.add(p.hold)
                p.hold = -1
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            p.out_fds.clear()
            p.stdin_fd = -1
            if not p.done:
                p.done = True
                p.error = SessionError(f"{reason} while {p.argv[0]} was running; its "
                                       "processes were killed")
                p.sink(("error", p.error))
