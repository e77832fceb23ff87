"""Attack: reach other processes of the same user (see, signal, read, trace, type into them).

Every target is a ``sleep 300`` the test starts on the host itself, with a marker in its
environment; nothing else on the machine is touched. Each attack is tried in the sandbox (it must
fail and the target must be unharmed) and, where it is safe, again with the guard removed
(``--profile full-access``), where it must succeed: so a test fails if the guard goes away.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import termios
import time
import tty
import uuid
from collections.abc import Iterator

import pytest
from tests.conftest import IS_ROOT, World

# The interpreter itself, not a venv link: a venv under the host's /tmp is hidden in the sandbox.
PY = os.path.realpath(sys.executable)


def py(world: World, code: str, *options: str, **kw: object
       ) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` through ``ringfence run OPTIONS``."""
    return world.run("run", *options, "--", PY, "-c", code, **kw)  # type: ignore[arg-type]


class Victim:
    """A process of the same user that the test started on the host."""

    def __init__(self) -> None:
        self.marker = "RF_VICTIM_" + uuid.uuid4().hex
        env = {"PATH": os.environ.get("PATH", os.defpath), "RF_VICTIM_SECRET": self.marker}
        self.proc = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self, field: str) -> str:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
        raise KeyError(field)


@pytest.fixture
def victim() -> Iterator[Victim]:
    v = Victim()
    try:
        yield v
    finally:
        if v.alive():
            v.proc.kill()
        v.proc.wait(timeout=5)


def status_of(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
                                                 text.splitlines()) if k}


def test_host_process_not_visible(world: World, victim: Victim) -> None:
    """The command lists the machine's processes (``ps``, ``ls /proc``) to find the user's
    shell, editor or agent to attack: the host's processes are not there (pid namespace)."""
    script = (f"test -e /proc/{victim.pid} && echo VISIBLE; ls /proc; echo ---; "
              "ps -eo pid=,comm=")
    result = world.sandbox(script)
    assert result.returncode == 0, result.stderr
    assert "VISIBLE" not in result.stdout
    listed = result.stdout.split()
    assert str(victim.pid) not in listed
    assert "sleep" not in listed  # no `sleep 300` in the ps listing
    control = world.unsandboxed(f"test -e /proc/{victim.pid} && echo VISIBLE")
    assert "VISIBLE" in control.stdout


def test_kill_host_process(world: World, victim: Victim) -> None:
    """The command sends SIGKILL to a process of the same user outside the sandbox."""
    result = world.sandbox(f"kill -9 {victim.pid}")
    assert result.returncode != 0
    time.sleep(0.1)
    assert victim.alive()
    control = world.unsandboxed(f"kill -9 {victim.pid}")
    assert control.returncode == 0, control.stderr
    assert victim.proc.wait(timeout=5) == -9


def test_read_host_process_environ(world: World, victim: Victim) -> None:
    """The command reads another process's environment (``/proc/PID/environ``): where agents,
    editors and shells keep API tokens."""
    script = f"cat /proc/{victim.pid}/environ | tr '\\0' '\\n'"
    result = world.sandbox(script)
    assert victim.marker not in result.stdout
    assert victim.marker not in result.stderr
    control = world.unsandboxed(script)
    assert victim.marker in control.stdout


PTRACE_SEIZE = 0x4206  # attaches without stopping the tracee; it detaches when the tracer exits

PTRACE_CODE = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
r = libc.ptrace(ctypes.c_long({PTRACE_SEIZE}), ctypes.c_long(int(sys.argv[1])), None, None)
print("ATTACHED" if r == 0 else "FAILED errno=%d" % ctypes.get_errno())
"""


def test_ptrace_attach_host_process(world: World, victim: Victim) -> None:
    """The command attaches to another process with ptrace to read its memory or inject code."""
    argv = ["run", "--", PY, "-c", PTRACE_CODE, str(victim.pid)]
    result = world.run(*argv)
    assert "ATTACHED" not in result.stdout
    assert "FAILED" in result.stdout, result.stderr
    assert victim.alive()
    assert victim.status("TracerPid") == "0"
    control = world.run("run", "--profile", "full-access", *argv[1:])
    assert "ATTACHED" in control.stdout, control.stdout + control.stderr
    assert victim.alive()  # the tracer exited: the victim is detached again


def test_ptrace_is_refused_even_for_own_child(world: World) -> None:
    """ptrace is refused outright (seccomp), not only across the pid namespace: the command
    cannot even trace its own child, so no debugger-style injection works inside."""
    code = f"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
pid = os.fork()
if pid == 0:
    time.sleep(5)
    os._exit(0)
r = libc.ptrace(ctypes.c_long({PTRACE_SEIZE}), ctypes.c_long(pid), None, None)
print("ATTACHED" if r == 0 else "errno=%d" % ctypes.get_errno())
os.kill(pid, 9)
os.waitpid(pid, 0)
"""
    result = py(world, code)
    assert result.stdout.strip() == f"errno={errno.EPERM}", result.stdout + result.stderr
    control = py(world, code, "--profile", "full-access")
    assert control.stdout.strip() == "ATTACHED", control.stdout + control.stderr


def test_no_capabilities_and_no_new_privs(world: World) -> None:
    """The command uses capabilities it inherited (root's, or those a user namespace grants)
    or gains privileges through a setuid program: inside, every capability set is empty and
    no_new_privs is set; as root too (the suite runs as root and as an ordinary user)."""
    result = world.sandbox("cat /proc/self/status")
    assert result.returncode == 0, result.stderr
    status = status_of(result.stdout)
    for field in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[field], 16) == 0, (field, status[field])
    assert status["NoNewPrivs"] == "1"
    control = status_of(world.unsandboxed("cat /proc/self/status").stdout)
    with open("/proc/self/status") as fh:
        host = status_of(fh.read())
    if host["NoNewPrivs"] == "0":
        assert control["NoNewPrivs"] == "0"
    if IS_ROOT:
        assert int(control["CapEff"], 16) != 0


def _sandboxed_pid(marker: str, timeout: float = 10) -> int:
    """The host pid of the process whose argv contains ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    args = fh.read().split(b"\0")
            except OSError:
                continue
            if marker.encode() in args:
                return int(name)
        time.sleep(0.02)
    raise AssertionError(f"no process with {marker} appeared")


def _controlling_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)  # keystrokes are readable at once, without a newline
    return master, slave


def _make_ctty(slave: int) -> None:
    """preexec: a new session whose controlling terminal is the pty (a user's terminal)."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


def _pending_input(slave: int) -> bytes:
    """What is waiting in the terminal's input queue (what the user's shell would read)."""
    os.set_blocking(slave, False)
    try:
        return os.read(slave, 1024)
    except BlockingIOError:
        return b""
    finally:
        os.set_blocking(slave, True)


TIOCSTI_CODE = """
import fcntl, termios
try:
    for ch in b"id\\n":
        fcntl.ioctl(0, termios.TIOCSTI, bytes([ch]))
    print("INJECTED")
except OSError as exc:
    print("errno=%d" % exc.errno)
"""


def test_new_session_and_no_tiocsti(world: World) -> None:
    """The command pushes keystrokes into the terminal it inherited (TIOCSTI,
    CVE-2017-5226): the user's shell would run them after ringfence exits. ringfence runs in
    a terminal (a pty the test made its controlling terminal); inside, the command is in a
    new session with no controlling terminal, and TIOCSTI on stdin fails."""
    master, slave = _controlling_pty()
    marker = f"300.{uuid.uuid4().int % 10**12:012d}"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ringfence", "run", "--", "/bin/sh", "-c",
             f'{PY} -c "$1"; exec sleep {marker}', "sh", TIOCSTI_CODE],
            cwd=world.workspace, env=world.env, stdin=slave, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=lambda: _make_ctty(slave),
        )
        try:
            inner = _sandboxed_pid(marker)
            with open(f"/proc/{inner}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            session, tty_nr = int(fields[3]), int(fields[4])
            assert session != os.getsid(proc.pid)  # its own session, not ringfence's
            assert tty_nr == 0  # and no controlling terminal
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=10)
        assert b"INJECTED" not in out
        assert f"errno={errno.EPERM}".encode() in out, out + err
        assert _pending_input(slave) == b""
    finally:
        os.close(master)
        os.close(slave)

    # Control: the same code run by a process that has the terminal as its controlling
    # terminal, as a command started without ringfence would.
    master, slave = _controlling_pty()
    try:
        control = subprocess.run([PY, "-c", TIOCSTI_CODE], stdin=slave, capture_output=True,
                                 preexec_fn=lambda: _make_ctty(slave), timeout=30)
        if control.stdout.strip() == f"errno={errno.EIO}".encode() and _legacy_tiocsti_off():
            pytest.skip("this kernel refuses TIOCSTI to everyone (dev.tty.legacy_tiocsti=0)")
        assert control.stdout.strip() == b"INJECTED", control
        assert _pending_input(slave) == b"id\n"
    finally:
        os.close(master)
        os.close(slave)


def _legacy_tiocsti_off() -> bool:
    try:
        with open("/proc/sys/dev/tty/legacy_tiocsti") as fh:
            return fh.read().strip() == "0"
    except OSError:
        return False
