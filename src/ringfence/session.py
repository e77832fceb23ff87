"""Sessions: one sandbox that stays open and runs many commands.

A session is the sandbox a one-shot run gets (the same plan: mounts, seccomp, limits,
placeholders held for the session's life), with a small server inside
(``_session_server.py``) that fork+execs each command it is sent. Commands share the private
``/tmp`` and the environment, may run concurrently, and each has its own timeout and output cap::

    with ringfence.Session(workspace="/src/app") as s:
        r = s.run(["pytest", "-q"], timeout=600)
        for stream, chunk in s.stream("make 2>&1"):
            print(chunk.decode(), end="")
        cmd = s.start(["python3", "-i"], stdin=True, pty=True)
        cmd.write(b"print(6 * 7)\\n"); cmd.close_stdin(); print(cmd.wait().stdout)

    async with ringfence.AsyncSession(policy) as s:      # blocks only for the audit sync
        r = await s.run("ls -l")
        async for stream, chunk in s.stream(["make"]): ...

How it works: the host keeps one end of a SOCK_SEQPACKET socketpair; each command's stdin,
stdout and stderr (three pipes, or one pseudo-terminal) are created here and passed to the
server with the request (SCM_RIGHTS), so output flows straight to this process. One I/O thread
per session reads the server's replies and every command's output, feeds stdin, enforces
timeouts and output caps, and hands results to the caller (a thread-safe queue, or the event
loop). That thread also starts bubblewrap: ``--die-with-parent`` ties the sandbox to the thread
that started it, so the sandbox lives exactly as long as the session.

Ending: ``close()`` (or leaving the ``with`` block) ends the server, bubblewrap's init, and with
it every process in the sandbox's PID namespace; if this process dies, even by SIGKILL, the
kernel kills bubblewrap (die-with-parent) and so the namespace. When a command ends, whatever is
left in its process group is killed; a process that made a session of its own (``setsid``) lives
on until the session closes.

A live sandbox cannot gain a writable root or the network: its mount and network namespaces are
fixed when it starts. ``widen()`` therefore says so and restarts the session on the wider policy
(the old ``/tmp`` and background processes are gone); it refuses while commands are running.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, cast  # not on `ringfence run`'s path: sessions are imported on use

from .errors import PolicyError, SessionError
from .policy.model import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Iterator, Sequence

    from .policy.model import Policy
    from .runner import Result

def _new_engine(policy: Policy) -> Any:
    """The engine for this OS (Linux: ``backends._linux_session``)."""
    if sys.platform == "linux":
        from .backends import _linux_session

        return _linux_session._Engine(policy)
    from .runner import no_backend

    raise no_backend()


class Widened(Frozen):
    """What ``Session.widen`` did: the sandbox was restarted on ``policy``; ``notice`` says why
    and what was lost."""

    __slots__ = ("restarted", "notice", "policy")
    restarted: bool
    notice: str
    policy: Policy


def _command_argv(command: Sequence[str] | str) -> list[str]:
    if isinstance(command, str):
        if "\0" in command:
            raise PolicyError("the command contains a NUL byte, which no program can receive; "
                              "remove it")
        return ["/bin/sh", "-c", command]
    argv = list(command)
    if not argv:
        raise PolicyError("no command given; pass an argv list or a shell string")
    for arg in argv:
        if not isinstance(arg, str):
            raise PolicyError(f"command argument {arg!r} is not a string; pass strings")
        if "\0" in arg:
            raise PolicyError(f"command argument {arg[:40]!r} contains a NUL byte, which no "
                              "program can receive; remove it")
    from .approval.gate import check_words

    check_words(argv, None)  # a lone surrogate: refused before the decision is recorded
    return argv


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# ---------------------------------------------------------------------------------------------
# The plain API.

def _timeout(value: float | None, ceiling: float | None) -> float | None:
    """A command's timeout: the caller's, at most the policy's (``ceiling``); None or 0 means
    the policy's. In MCP the caller is the model, which must not lift the user's limit (a
    timeout of 0 once meant none at all). More than a year is refused: the I/O thread's
    deadline arithmetic overflows (a timeout of 1e18 killed the whole session)."""
    import math

    from .policy.load import MAX_SECONDS

    if value is None:
        return ceiling
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise PolicyError(f"timeout {value!r} is not a number of seconds; pass one (0: the "
                          "policy's)")
    if value > MAX_SECONDS:
        raise PolicyError(f"timeout {value!r} is more than a year; pass at most "
                          f"{int(MAX_SECONDS)} seconds (0: the policy's)")
    if not value:
        return ceiling
    return min(value, ceiling) if ceiling else value


def _open_gate(policy: Policy, command: Sequence[str] | str, cwd: str) -> Any:
    """The approval decision for one session command, recorded (durably) in the audit log
    before it starts, as for a one-shot run. A command the rules forbid, or that asks when
    there is no one to ask, raises ApprovalError (exit 122) and never reaches the sandbox."""
    from .approval.gate import PROCESS_SESSION, open_gate

    return open_gate(policy, command if isinstance(command, str) else list(command), cwd=cwd,
                     session=PROCESS_SESSION)


def _recording(sink: Any, gate: Any) -> Any:
    """``sink`` that also writes the run record when the command's result arrives."""
    def put(item: object) -> None:
        kind, value = cast("tuple[str, Any]", item)
        if kind == "done" and gate is not None:
            try:
                gate.record_result(value)
            except Exception as exc:  # the log could not be written: the caller must know
                item = ("error", exc)
        sink(item)

    return put


class _Running:
    """What the plain and asyncio commands share: the engine's handle on one command."""

    def __init__(self, engine: Any, argv: list[str], cwd: str, sink: Any, *,
                 gate: Any = None, **kw: Any) -> None:
        self._engine = engine
        self._p = engine.submit(argv, cwd, sink=_recording(sink, gate), **kw)
        self._result: Result | None = None
        self._error: BaseException | None = None

    @property
    def pid(self) -> int:
        """The command's pid inside the sandbox (0 until it has started)."""
        return int(self._p.pid)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the command's stdin (start it with ``stdin=True``); never blocks:
        the session's I/O thread writes it."""
        self._engine.write(self._p, bytes(data))

    def close_stdin(self) -> None:
        self._engine.write(self._p, b"", close=True)

    def kill(self) -> None:
        """SIGKILL the command's process group."""
        self._engine.kill(self._p)

    def _take(self, item: object) -> bool:
        """Record the end (``done`` or ``error``); True for an output item to hand on."""
        kind, value = cast("tuple[str, Any]", item)
        if kind == "done":
            self._result = value
            return False
        if kind == "error":
            self._error = value
            return False
        return True


class Command(_Running):
    """A command running in a session: feed ``write``, read by iterating, ``wait`` for the
    ``Result``. Thread-safe; created by ``Session.start``."""

    def __init__(self, engine: Any, argv: list[str], cwd: str, **kw: Any) -> None:
        import queue

        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        super().__init__(engine, argv, cwd, self._queue.put, **kw)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        """``(stream, chunk)`` as output comes (``stream`` is ``stdout`` or ``stderr``; on a
        pseudo-terminal everything is ``stdout``). Needs ``stream=True`` at start."""
        if not self._p.stream:
            raise PolicyError("this command was started without stream=True; use wait() "
                              "for its captured output, or Session.stream()")
        while self._result is None and self._error is None:
            item = self._queue.get()
            if self._take(item):
                yield item  # type: ignore[misc]

    def wait(self, timeout: float | None = None) -> Result:
        """The ``Result`` once the command has ended (raises ``CommandError`` when it could not
        be started, ``SessionError`` when the session ended under it)."""
        import queue

        deadline = None if timeout is None else time.monotonic() + timeout
        while self._result is None and self._error is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the command is still running")
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("the command is still running") from None
            self._take(item)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class Session:
    """A sandbox that runs many commands (see the module's docstring).

    ``Session(policy)`` or ``Session(workspace=DIR)`` (the layered policy for DIR). Starting one
    costs what a one-shot run costs; each command after that about three milliseconds.
    """

    def __init__(self, policy: Policy | None = None, *, workspace: str | None = None) -> None:
        if policy is None:
            from .policy.load import Options, resolve

            policy = resolve(Options(workspace=workspace))
        self.policy = policy
        self._engine = _new_engine(policy)
        self._closed_warnings: list[str] = []
        self.restarts = 0

    # -- commands -------------------------------------------------------------------------

    def _cwd(self, cwd: str | None) -> str:
        ws = self.policy.workspace
        if cwd is None:
            return ws
        if "\0" in cwd:
            raise PolicyError("the working directory contains a NUL byte; remove it")
        from .approval.gate import check_words

        check_words((), cwd)
        path = os.path.realpath(os.path.join(ws, cwd))
        if not _inside(path, os.path.realpath(ws)):
            raise PolicyError(f"working directory {cwd!r} is outside the workspace {ws}; use "
                              "a directory inside it (relative paths start at the workspace)")
        if not os.path.isdir(path):
            raise PolicyError(f"working directory {cwd!r} does not exist in the workspace; "
                              "create it first or pick another")
        return path

    def start(self, command: Sequence[str] | str, *, cwd: str | None = None,
              timeout: float | None = None, stdin: bytes | bool | None = None,
              pty: bool = False, output_limit: int | None = None,
              stream: bool = False) -> Command:
        """Start ``command`` (argv list, or a string for ``/bin/sh -c``) and return at once.

        ``cwd``: inside the workspace (relative to it, or absolute). ``timeout`` (seconds): at
        most the policy's timeout (None or 0: the policy's). ``output_limit`` (bytes per
        stream) defaults to the policy's; past the output limit the
        command is killed and ``limits_hit`` says ``output``. ``stdin``: bytes to feed, ``True``
        for a pipe fed by ``Command.write``, or None (``/dev/null``). ``pty``: run on a new
        pseudo-terminal (stdout and stderr then arrive together as ``stdout``). ``stream``:
        iterate the ``Command`` for output as it comes.
        """
        argv = _command_argv(command)
        where = self._cwd(cwd)
        limits = self.policy.limits
        seconds = _timeout(timeout, limits.timeout)
        gate = _open_gate(self.policy, command, where)
        return Command(
            self._engine, argv, where, gate=gate,
            timeout=seconds,
            output_limit=limits.output if output_limit is None else output_limit,
            stdin=stdin, pty=pty, stream=stream)

    def run(self, command: Sequence[str] | str, **kw: Any) -> Result:
        """Run ``command`` to the end; ``Result`` with captured output and any ``denials``.
        Takes ``start``'s options (not ``stream``)."""
        return self.start(command, **kw).wait()

    def stream(self, command: Sequence[str] | str, **kw: Any) -> Iterator[tuple[str, bytes]]:
        """Run ``command``, yielding ``(stream, chunk)`` as output comes."""
        return iter(self.start(command, stream=True, **kw))

    # -- widening and ending --------------------------------------------------------------

    def widen(self, *, writable: Sequence[str] = (), network: str | None = None,
              allow_hosts: Sequence[str] = (), force: bool = False) -> Widened:
        """Give the session more: extra writable roots, the network, hosts on the allow list
        (``allow_hosts``: from network ``off``, an allow list of just them).

        A live sandbox cannot gain either (mount and network namespaces are fixed at start), so
        the session is restarted on the wider policy; its ``/tmp`` and background processes
        are lost, and the returned ``notice`` says so. Refuses while commands are running
        unless ``force`` (which kills them).
        """
        new = _widened_policy(self.policy, writable, network, allow_hosts)
        if new == self.policy:
            return Widened(restarted=False, notice="the session already allows this",
                           policy=self.policy)
        busy = self._engine.running()
        if busy and not force:
            raise PolicyError(f"{busy} command(s) are still running in the session; a live "
                              "sandbox cannot be widened, only restarted: wait for them, or "
                              "pass force=True to kill them")
        engine = _new_engine(new)  # the new one first: if it cannot start, the old one stays
        old, self._engine = self._engine, engine
        old.close()
        self._closed_warnings += getattr(old, "git_warnings", [])
        self.policy = new
        self.restarts += 1
        return Widened(restarted=True, notice=_RESTART_NOTICE, policy=new)

    def close(self) -> None:
        """End every process in the session and release the sandbox. Idempotent."""
        self._engine.close()

    @property
    def closed(self) -> bool:
        return bool(self._engine.closed)

    @property
    def git_warnings(self) -> tuple[str, ...]:
        """What the sandbox's last look at the git indexes, when it closed, found that no
        command's result reported (``Result.git_warnings``): the work of a command still
        running at the close."""
        return (*self._closed_warnings, *getattr(self._engine, "git_warnings", ()))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


_RESTART_NOTICE = (
    "restarted: a running sandbox cannot gain writable roots or the network (its mount and "
    "network namespaces are fixed when it starts), so the session was restarted on the wider "
    "policy; its /tmp and any background processes are gone"
)


def _widened_policy(policy: Policy, writable: Sequence[str], network: str | None,
                    allow_hosts: Sequence[str] = ()) -> Policy:
    from .policy.model import NETWORK_MODES

    roots = list(policy.writable)
    for root in [writable] if isinstance(writable, str) else writable:
        if not os.path.isabs(root):
            raise PolicyError(f"writable root {root!r} must be an absolute path")
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise PolicyError(f"writable root {root!r} is not an existing directory; create it "
                              "first")
        if real not in roots and real != policy.workspace:
            roots.append(real)
    net = policy.network
    if network is not None:
        if network not in NETWORK_MODES:
            raise PolicyError(f"network {network!r}: use one of {', '.join(NETWORK_MODES)}")
        if NETWORK_MODES.index(network) > NETWORK_MODES.index(net):
            net = network
    policy = policy.replace(writable=tuple(roots), network=net)
    hosts = [allow_hosts] if isinstance(allow_hosts, str) else list(allow_hosts)
    if hosts and net != "on":
        from .approval.gate import allow_hosts as added

        policy = policy.replace(**added(policy, hosts))
    return policy


# ---------------------------------------------------------------------------------------------
# The asyncio API: the same engine; results and output reach the loop through
# call_soon_threadsafe, and starting or closing the sandbox runs in a worker thread.

class AsyncCommand(_Running):
    """A command running in an ``AsyncSession``; ``async for`` its output, ``await wait()``."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop, argv: list[str],
                 cwd: str, **kw: Any) -> None:
        import asyncio

        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._loop = loop

        def sink(item: object) -> None:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        super().__init__(engine, argv, cwd, sink, **kw)

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        if not self._p.stream:
            raise PolicyError("this command was started without stream=True; use wait()")
        while self._result is None and self._error is None:
            item = await self._queue.get()
            if self._take(item):
                yield item  # type: ignore[misc]

    async def wait(self) -> Result:
        try:
            while self._result is None and self._error is None:
                self._take(await self._queue.get())
        except BaseException:
            # cancelled (the caller went away): the command must not outlive its caller
            if self._result is None and self._error is None:
                self.kill()
            raise
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class AsyncSession:
    """``Session`` for asyncio: ``async with AsyncSession(policy) as s: await s.run(...)``."""

    def __init__(self, policy: Policy | None = None, *, workspace: str | None = None) -> None:
        self._policy = policy
        self._workspace = workspace
        self._sync: Session | None = None

    async def __aenter__(self) -> AsyncSession:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        import asyncio

        if self._sync is None:
            self._sync = await asyncio.to_thread(Session, self._policy,
                                                 workspace=self._workspace)

    @property
    def session(self) -> Session:
        if self._sync is None:
            raise SessionError("the session is not open; use async with AsyncSession(...)")
        return self._sync

    @property
    def policy(self) -> Policy:
        return self.session.policy

    def start(self, command: Sequence[str] | str, *, cwd: str | None = None,
              timeout: float | None = None, stdin: bytes | bool | None = None,
              pty: bool = False, output_limit: int | None = None,
              stream: bool = False) -> AsyncCommand:
        """As ``Session.start`` (never blocks the loop)."""
        import asyncio

        s = self.session
        limits = s.policy.limits
        argv, where = _command_argv(command), s._cwd(cwd)
        seconds = _timeout(timeout, limits.timeout)
        gate = _open_gate(s.policy, command, where)
        return AsyncCommand(
            s._engine, asyncio.get_running_loop(), argv, where, gate=gate,
            timeout=seconds,
            output_limit=limits.output if output_limit is None else output_limit,
            stdin=stdin, pty=pty, stream=stream)

    async def run(self, command: Sequence[str] | str, **kw: Any) -> Result:
        return await self.start(command, **kw).wait()

    async def stream(self, command: Sequence[str] | str, **kw: Any
                     ) -> AsyncIterator[tuple[str, bytes]]:
        cmd = self.start(command, stream=True, **kw)
        async for item in cmd:
            yield item

    async def widen(self, *, writable: Sequence[str] = (), network: str | None = None,
                    allow_hosts: Sequence[str] = (), force: bool = False) -> Widened:
        import asyncio

        return await asyncio.to_thread(self.session.widen, writable=writable,
                                       network=network, allow_hosts=allow_hosts, force=force)

    async def close(self) -> None:
        import asyncio

        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)
