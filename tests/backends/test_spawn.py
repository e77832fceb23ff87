"""``backends._spawn``: the process-group runner the macOS backend starts sandbox-exec with.

It is plain POSIX, so these tests run it on Linux against the real kernel: the exit codes of the
command-line contract, the watchdog (timeout), the process group dying with the run, rlimits in
the child only, the output cap, streaming and stdin. Each "dies with the run" case has a control
started without ringfence, where the same background process survives.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conftest import TEST_ROOT
from tests.escapes import test_lifetime
from tests.escapes.test_lifetime import find, gone, marker

from ringfence.backends._spawn import (
    DRAIN_SECONDS,
    resolve_command,
    run_group,
)
from ringfence.errors import CommandError

marks = test_lifetime.marks  # the fixture: kills what a test's markers name, afterwards
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

ENV = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
PY = os.path.realpath(sys.executable)


@pytest.fixture
def cwd() -> Path:
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    return TEST_ROOT


def sh(script: str, cwd: Path, **kw: object) -> object:
    return run_group(["/bin/sh", "-c", script], ENV, str(cwd), (), None, **kw)  # type: ignore[arg-type]


def test_exit_codes(cwd: Path) -> None:
    assert run_group(["/bin/sh", "-c", "exit 3"], ENV, str(cwd), (), None).exit_code == 3
    killed = run_group(["/bin/sh", "-c", "kill -TERM $$"], ENV, str(cwd), (), None)
    assert killed.exit_code == 128 + signal.SIGTERM
    out = run_group(["/bin/sh", "-c", "pwd; echo err >&2"], ENV, str(cwd), (), None)
    assert out.stdout == f"{cwd.resolve()}\n".encode() or out.stdout == f"{cwd}\n".encode()
    assert out.stderr == b"err\n"


def test_timeout_kills_the_whole_group(cwd: Path, marks: list[str]) -> None:
    """The command and a background child: both die at the timeout (137, ``timeout``)."""
    mark = marker()
    marks.append(mark)
    start = time.monotonic()
    out = run_group(["/bin/sh", "-c", f"sleep {mark} & sleep 30"], ENV, str(cwd), (), 0.5)
    assert time.monotonic() - start < 10
    assert out.exit_code == 137
    assert out.limits_hit == ["timeout"]
    assert gone(mark)


def test_background_child_dies_when_the_command_exits(cwd: Path, marks: list[str]) -> None:
    """``sleep &`` left behind by the command (holding no pipe) dies when the command ends."""
    mark = marker()
    marks.append(mark)
    script = f"sleep {mark} </dev/null >/dev/null 2>&1 & echo started"
    out = run_group(["/bin/sh", "-c", script], ENV, str(cwd), (), None)
    assert out.exit_code == 0 and out.stdout == b"started\n"
    assert gone(mark)
    # control: the same script started plainly leaves the sleep running
    subprocess.run(["/bin/sh", "-c", script], env=ENV, cwd=cwd, check=True,
                   capture_output=True)
    time.sleep(0.2)
    assert find(mark)


def test_background_child_holding_the_pipes_dies_too(cwd: Path, marks: list[str]) -> None:
    """A background child keeps stdout open: the run still ends when the command exits, and
    the child is killed."""
    mark = marker()
    marks.append(mark)
    start = time.monotonic()
    out = run_group(["/bin/sh", "-c", f"sleep {mark} & echo hi"], ENV, str(cwd), (), None)
    assert time.monotonic() - start < 5
    assert out.stdout == b"hi\n"
    assert gone(mark)


def test_a_process_that_left_the_group_cannot_hold_the_run_open(cwd: Path,
                                                                marks: list[str]) -> None:
    """``setsid`` takes a child out of the group (the limit the macOS plan states): it keeps the
    pipes open, but the library returns shortly after the command exits anyway."""
    mark = marker()
    marks.append(mark)
    start = time.monotonic()
    out = run_group(["/bin/sh", "-c", f"setsid sleep {mark} & sleep 0.2; echo hi"], ENV,
                    str(cwd), (), None)
    assert time.monotonic() - start < 0.2 + DRAIN_SECONDS + 3
    assert out.exit_code == 0 and out.stdout.startswith(b"hi")  # type: ignore[union-attr]


def test_rlimits_bind_the_child_not_the_caller(cwd: Path) -> None:
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    target = cwd / f"big-{os.getpid()}"
    # not Python: it ignores SIGXFSZ for itself
    argv = ["/bin/sh", "-c", f"head -c {2 << 20} /dev/zero > {target}"]
    try:
        out = run_group(argv, ENV, str(cwd), (("RLIMIT_FSIZE", 1 << 20),), None)
        assert out.exit_code == 128 + signal.SIGXFSZ
        assert "file_size" in out.limits_hit
        assert target.stat().st_size <= 1 << 20
        # control: without the limit the write succeeds
        assert run_group(argv, ENV, str(cwd), (), None).exit_code == 0
        assert target.stat().st_size == 2 << 20
    finally:
        target.unlink(missing_ok=True)
    assert resource.getrlimit(resource.RLIMIT_FSIZE) == before


def test_cpu_limit(cwd: Path) -> None:
    out = run_group([PY, "-c", "while True: pass"], ENV, str(cwd), (("RLIMIT_CPU", 1),), 30)
    assert out.exit_code == 128 + signal.SIGXCPU
    assert out.limits_hit == ["cpu"]


def test_limit_above_the_hard_limit_is_lowered_to_it(cwd: Path) -> None:
    """RLIMIT_NPROC on macOS is capped by kern.maxprocperuid: asking more must not fail."""
    code = textwrap.dedent("""
        import resource, sys
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(soft, hard)
    """)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE has no hard limit here")
    out = run_group([PY, "-c", code], ENV, str(cwd), (("RLIMIT_NOFILE", hard + 1000),), None)
    assert out.exit_code == 0, out.stderr
    assert out.stdout.split() == [str(hard).encode(), str(hard).encode()]  # type: ignore[union-attr]


def test_output_cap_streaming_and_stdin(cwd: Path) -> None:
    chunks: list[tuple[str, bytes]] = []
    out = run_group([PY, "-c", "import sys; d = sys.stdin.read(); print(d * 5000)"], ENV,
                    str(cwd), (), None, output_limit=1000, stdin=b"ab",
                    on_output=lambda s, c: chunks.append((s, c)))
    assert out.exit_code == 0
    assert out.stdout == b"ab" * 500
    assert "output" in out.limits_hit
    assert b"".join(c for s, c in chunks if s == "stdout") == b"ab" * 5000 + b"\n"


def test_command_in_its_own_session(cwd: Path) -> None:
    """The command leads a new session (no controlling terminal to inject keystrokes into)."""
    code = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"
    out = run_group([PY, "-c", code], ENV, str(cwd), (), None)
    assert out.stdout == b"True True\n"


# ---------------------------------------------------------------------------------------------
# exec_group: the command line's path (terminal passed through), in a child Python.

RUNNER = """
import os, sys
from ringfence.backends._spawn import exec_group
out = exec_group(sys.argv[2:], dict(os.environ), os.getcwd(), (), float(sys.argv[1]) or None)
print("EXIT", out.exit_code, ",".join(out.limits_hit), file=sys.stderr)
sys.exit(out.exit_code)
"""


def exec_runner(cwd: Path, timeout: float, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(timeout), *argv], cwd=cwd,
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_exec_group_passes_output_through_and_kills_the_group(cwd: Path,
                                                              marks: list[str]) -> None:
    mark = marker()
    marks.append(mark)
    proc = exec_runner(cwd, 0, "/bin/sh", "-c",
                       f"sleep {mark} </dev/null >/dev/null 2>&1 & echo out; exit 7")
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert stdout == b"out\n"
    assert b"EXIT 7" in stderr
    assert gone(mark)


def test_exec_group_timeout(cwd: Path, marks: list[str]) -> None:
    mark = marker()
    marks.append(mark)
    proc = exec_runner(cwd, 0.5, "/bin/sh", "-c", f"sleep {mark}")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert b"EXIT 137 timeout" in stderr
    assert gone(mark)


def test_exec_group_stopped_by_sigterm_kills_the_group(cwd: Path, marks: list[str]) -> None:
    """ringfence itself is told to stop: the command's group dies, the status is 128+15."""
    mark = marker()
    marks.append(mark)
    proc = exec_runner(cwd, 0, "/bin/sh", "-c", f"sleep {mark}")
    deadline = time.monotonic() + 10
    while not find(mark):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert gone(mark)


def test_resolve_command(cwd: Path) -> None:
    assert resolve_command("sh", ENV, str(cwd)).endswith("/sh")
    with pytest.raises(CommandError) as missing:
        resolve_command("no-such-command-ringfence", ENV, str(cwd))
    assert missing.value.exit_code == 127
    with pytest.raises(CommandError) as directory:
        resolve_command(str(cwd), ENV, str(cwd))
    assert directory.value.exit_code == 126


def test_exec_group_does_not_pass_on_leaked_descriptors(cwd: Path) -> None:
    """Attack: the caller left a descriptor inheritable (here a directory); the command must
    not get it (through it, ``/proc/self/fd/N/...`` -- or openat on macOS -- reaches the host
    directory past the sandbox's rules). Only stdin, stdout and stderr arrive."""
    fd = os.open(cwd, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.set_inheritable(fd, True)
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, "0", "/bin/sh", "-c",
                                 f"ls /proc/self/fd/{fd}/ >/dev/null 2>&1 && echo LEAKED"],
                                cwd=cwd, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, close_fds=False)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        os.close(fd)
    assert b"LEAKED" not in stdout, stderr
