"""Start a command as the leader of its own session and process group, with rlimits, and make the
group die with the run. Plain POSIX (no sandboxing of its own): the macOS backend runs
``sandbox-exec`` through it; the tests run it on Linux, so the watchdog, the limits and the exit
codes are proven there too.

- ``exec_group``: the command line's path. ``fork`` + ``execve`` (no ``subprocess`` import);
  stdin, stdout, stderr and the terminal pass through.
- ``run_group``: the library's path, on ``subprocess``: output captured (capped) and/or streamed.

In both, the whole process group is sent SIGKILL when the command (the group's leader) exits,
when the timeout passes, and when ringfence is told to stop (SIGTERM, SIGHUP, Ctrl-C is passed
on). What leaves the group (``setsid``) is out of its reach: the caller says so in the plan.
"""

from __future__ import annotations

import os
import sys
import time

from . import Outcome, collect_again

# POSIX only: this tells type checkers run with --platform win32 to skip the module.
assert sys.platform != "win32"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

SIGNAL_LIMITS = {24: "cpu", 25: "file_size"}  # SIGXCPU, SIGXFSZ (the same on Linux and Darwin)
# After the leader exits and its group is killed, output still in flight is read for this long;
# a process that left the group and holds the pipes open cannot keep the run going.
DRAIN_SECONDS = 0.5
POLL_SECONDS = 0.05


def child_setup(rlimits: Sequence[tuple[str, int]]) -> Callable[[], None]:
    """What runs in the forked child before exec: the rlimits (RLIMIT_CPU's hard limit one
    second above the soft one, so SIGXCPU, not SIGKILL, says which limit it was; a limit above
    the hard limit is lowered to it, since raising it is not allowed)."""
    import resource

    limits = [(getattr(resource, name), value) for name, value in rlimits]

    def setup() -> None:
        for res, value in limits:
            _, hard = resource.getrlimit(res)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            top = value + 1 if res == resource.RLIMIT_CPU else value
            if hard != resource.RLIM_INFINITY:
                top = min(top, hard)
            resource.setrlimit(res, (value, top))

    return setup


def kill_group(pgid: int) -> None:
    """SIGKILL to the group led by ``pgid``; to the leader itself if it has not made its group
    yet (a timeout that fires between fork and setsid)."""
    try:
        os.killpg(pgid, 9)
    except ProcessLookupError:
        try:
            os.kill(pgid, 9)
        except (ProcessLookupError, PermissionError):
            pass
    except PermissionError:
        pass


def _finish(status: int, outcome: Outcome) -> None:
    if os.WIFSIGNALED(status):
        outcome.exit_code = 128 + os.WTERMSIG(status)
    else:
        outcome.exit_code = os.WEXITSTATUS(status)
    code = outcome.exit_code
    if code > 128 and code - 128 in SIGNAL_LIMITS:
        outcome.limits_hit.append(SIGNAL_LIMITS[code - 128])


def _signal_module() -> Any:
    """The C signal module: ``import signal`` pulls in ``enum`` (~6 ms on every start-up)."""
    try:
        import _signal  # type: ignore[import-not-found]

        return _signal
    except ImportError:  # pragma: no cover - every CPython has it built in
        import signal

        return signal


def exec_group(argv: Sequence[str], env: dict[str, str], cwd: str,
               rlimits: Sequence[tuple[str, int]], timeout: float | None) -> Outcome:
    """Run with the terminal passed through; returns when the command has exited and its
    process group has been killed."""
    signal = _signal_module()
    outcome = Outcome()
    setup = child_setup(rlimits)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            for signum in (13, 25):  # Python ignores SIGPIPE and SIGXFSZ; the command must not
                signal.signal(signum, signal.SIG_DFL)
            os.setsid()  # its own session and group: no controlling terminal to inject into
            # what the caller left inheritable (a host directory, a harness's pipe) stays here
            os.closerange(3, max(65536, os.sysconf("SC_OPEN_MAX")))
            setup()
            os.chdir(cwd)
            os.execve(argv[0], list(argv), env)
        except BaseException as exc:  # the child must never return into our code
            try:
                os.write(2, f"ringfence: cannot start the sandbox: {exc}\n".encode())
            finally:
                os._exit(125)
    collect_again()  # the command has started (see ringfence.__main__)
    timed_out = False
    stopped_by = 0

    def on_interrupt(signum: int, frame: object) -> None:
        try:
            os.killpg(pid, signum)  # the terminal's Ctrl-C only reaches our own group
        except OSError:
            pass

    def on_alarm(signum: int, frame: object) -> None:
        nonlocal timed_out
        timed_out = True
        kill_group(pid)

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopped_by
        stopped_by = signum
        kill_group(pid)

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT,
                                            signal.SIGALRM)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGINT, on_interrupt)
    if timeout:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
        kill_group(pid)  # the tree dies with the run
        for signum, handler in old.items():
            signal.signal(signum, handler)
    outcome.duration = time.monotonic() - start
    _finish(status, outcome)
    if timed_out:
        outcome.limits_hit.append("timeout")
    if stopped_by:
        outcome.exit_code = 128 + stopped_by  # ringfence itself was told to stop
    return outcome


class Capture:
    """Output kept for the library: each chunk goes to ``on_output`` and, when capturing, into
    a buffer per stream capped at ``limit`` bytes (``truncated`` once something was cut)."""

    __slots__ = ("buffers", "truncated", "limit", "capture", "on_output")

    def __init__(self, limit: int | None, capture: bool,
                 on_output: Callable[[str, bytes], None] | None) -> None:
        self.buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False
        self.limit = limit
        self.capture = capture
        self.on_output = on_output

    def add(self, name: str, chunk: bytes) -> None:
        if self.on_output is not None:
            self.on_output(name, chunk)
        if self.capture:
            buf = self.buffers[name]
            room = (self.limit - len(buf)) if self.limit else len(chunk)
            if room < len(chunk):
                self.truncated = True
            if room > 0:
                buf += chunk[:room]

    def finish(self, outcome: Outcome) -> None:
        if self.truncated:
            outcome.limits_hit.append("output")
        if self.capture:
            outcome.stdout = bytes(self.buffers["stdout"])
            outcome.stderr = bytes(self.buffers["stderr"])


def watch_output(proc: Any) -> Any:
    """A selector on ``proc``'s stdout and stderr pipes (each key's data: the stream's name)."""
    import selectors

    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    return sel


def read_ready(sel: Any, events: list[tuple[Any, int]], kept: Capture) -> int:
    """Read what ``events`` (from ``sel.select``) say is ready into ``kept``; returns how many
    of the streams reached end of file (unregistered)."""
    ended = 0
    for key, _ in events:
        chunk = os.read(key.fd, 65536)
        if not chunk:
            sel.unregister(key.fileobj)
            ended += 1
            continue
        kept.add(key.data, chunk)
    return ended


def feed_stdin(proc: Any, data: bytes | None) -> None:
    """Write ``data`` to the child's stdin from a thread (a full pipe must not block the
    reading of its output), then close it."""
    if data is None or proc.stdin is None:
        return
    import threading

    def feed() -> None:
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()


def run_group(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: str,
    rlimits: Sequence[tuple[str, int]],
    timeout: float | None,
    *,
    output_limit: int | None = None,
    stdin: bytes | None = None,
    capture: bool = True,
    on_output: Callable[[str, bytes], None] | None = None,
) -> Outcome:
    """Run for the library: output captured (capped at ``output_limit``) and/or handed to
    ``on_output(stream, chunk)`` as it comes; or passed through when neither is asked."""
    import subprocess

    from ..errors import SandboxError

    outcome = Outcome()
    piped = capture or on_output is not None
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else None,
            stderr=subprocess.PIPE if piped else None,
            preexec_fn=child_setup(rlimits), start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start {argv[0]}: {exc.strerror}") from None
    pid = proc.pid
    deadline = start + timeout if timeout else None
    kept = Capture(output_limit, capture, on_output)
    timed_out = False
    status: int | None = None
    feed_stdin(proc, stdin)

    def reap() -> int | None:
        got, st = os.waitpid(pid, os.WNOHANG)
        if not got:
            return None
        proc.returncode = 0  # keep Popen from waiting again; the status is ours
        kill_group(pid)  # the tree dies with the run
        return st

    try:
        if piped:
            sel = watch_output(proc)
            open_streams = 2
            drain_until: float | None = None
            while open_streams:
                now = time.monotonic()
                if deadline is not None and now >= deadline and not timed_out:
                    timed_out = True
                    kill_group(pid)
                if status is None:
                    status = reap()
                    if status is not None:
                        drain_until = time.monotonic() + DRAIN_SECONDS
                if drain_until is not None and now >= drain_until:
                    break  # something that left the group still holds the pipes
                open_streams -= read_ready(sel, sel.select(POLL_SECONDS), kept)
            sel.close()
        while status is None:
            if deadline is not None and time.monotonic() >= deadline and not timed_out:
                timed_out = True
                kill_group(pid)
            status = reap()
            if status is None:
                time.sleep(0.005)
    finally:
        if status is None:  # interrupted (KeyboardInterrupt in on_output, …): nothing survives
            kill_group(pid)
            _, status = os.waitpid(pid, 0)
            proc.returncode = 0
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
    outcome.duration = time.monotonic() - start
    _finish(status, outcome)
    if timed_out:
        outcome.limits_hit.append("timeout")
    kept.finish(outcome)
    return outcome


def resolve_command(argv0: str, env: dict[str, str], cwd: str) -> str:
    """The program ``execvp`` would run for ``argv0``; CommandError 127 / 126 otherwise."""
    from ..errors import CommandError

    def check(path: str) -> str | None:
        if os.path.isdir(path):
            raise CommandError(f"ringfence: {argv0}: is a directory", 126)
        if os.path.exists(path):
            if not os.access(path, os.X_OK):
                raise CommandError(f"ringfence: {argv0}: permission denied (not executable)",
                                   126)
            return path
        return None

    if "/" in argv0:
        path = os.path.join(cwd, argv0)
        if check(path) is None:
            raise CommandError(f"ringfence: {argv0}: no such file", 127)
        return path
    for entry in env.get("PATH", os.defpath).split(":"):
        hit = check(os.path.join(entry or cwd, argv0))
        if hit:
            return hit
    raise CommandError(f"ringfence: {argv0}: command not found", 127)
