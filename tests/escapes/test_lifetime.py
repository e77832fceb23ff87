"""Attack: outlive the run (a daemon left behind keeps working after the user thinks it ended).

Every process the tests look for carries a unique marker in its argv (``sleep 300.<digits>``),
found on the host through ``/proc/*/cmdline``; the tests kill only what they started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from tests.conftest import World

import ringfence

PY = os.path.realpath(sys.executable)


def marker(seconds: int = 300) -> str:
    """A ``sleep`` argument no other process on the machine has."""
    return f"{seconds}.{uuid.uuid4().int % 10**12:012d}"


def _living() -> Iterator[tuple[int, bytes]]:
    """(pid, raw command line) of every process on the host that is not a zombie."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                line = fh.read()
            with open(f"/proc/{name}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            yield int(name), line


def find(mark: str) -> list[int]:
    """Host pids of the processes with ``mark`` as one of their arguments."""
    return [pid for pid, line in _living() if mark.encode() in line.split(b"\0")]


def left_with(mark: str, within: float) -> list[str]:
    """Processes whose command line contains ``mark`` anywhere (a bubblewrap whose argv holds
    the script, not only the ``sleep`` itself) still there after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = [f"{pid}: " + line.replace(b"\0", b" ").decode(errors="replace")
                 for pid, line in _living() if mark.encode() in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def gone(mark: str, within: float = 10.0) -> bool:
    """Whether every process with ``mark`` is gone within ``within`` seconds (generous: on a
    loaded machine the kernel takes a while to tear a pid namespace down)."""
    deadline = time.monotonic() + within
    while find(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def appears(mark: str, within: float = 10.0) -> bool:
    """Whether a process with ``mark`` runs within ``within`` seconds (the shell writes its
    pidfile a moment before it starts ``sleep``)."""
    deadline = time.monotonic() + within
    while not find(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for_file(path: os.PathLike[str] | str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def wait_for(path: os.PathLike[str] | str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


@pytest.fixture
def marks() -> Iterator[list[str]]:
    """Markers handed out to a test; whatever still carries one is killed afterwards."""
    given: list[str] = []
    yield given
    for mark in given:
        for pid in find(mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def popen_ringfence(world: World, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ringfence", *args], cwd=world.workspace,
                            env=world.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_setsid_daemon_dies_with_the_command(world: World, marks: list[str]) -> None:
    """The command leaves a daemon behind (``setsid sleep &``, detached from its session and
    its output) and exits: the daemon must not survive the run."""
    mark = marker()
    marks.append(mark)
    script = (f"setsid sleep {mark} </dev/null >/dev/null 2>&1 & echo $! > daemon.pid; "
              "sleep 0.2; kill -0 $(cat daemon.pid) && echo alive")
    result = world.sandbox(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alive"
    assert gone(mark)
    control = world.unsandboxed(script)  # without the pid namespace, the daemon stays
    assert control.stdout.strip() == "alive"
    time.sleep(0.3)
    assert find(mark)


DOUBLE_FORK = """
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fd = os.open("/dev/null", os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(fd, n)
        with open("daemon.pid", "w") as fh:
            fh.write(str(os.getpid()))
        os.execvp("sleep", ["sleep", sys.argv[1]])
    os._exit(0)
os.wait()
import time
while not os.path.exists("daemon.pid") or not open("daemon.pid").read():
    time.sleep(0.01)
print("daemon", open("daemon.pid").read())
"""


def test_double_fork_daemon_dies_with_the_command(world: World, marks: list[str]) -> None:
    """The classic daemon: fork, setsid, fork again (reparented away from the command), write a
    pid file into the workspace, exec a long-running program; then the command exits."""
    mark = marker()
    marks.append(mark)
    result = world.run("run", "--", PY, "-c", DOUBLE_FORK, mark)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("daemon ")
    assert (world.workspace / "daemon.pid").read_text()  # it did start, inside
    assert gone(mark)
    (world.workspace / "daemon.pid").unlink()
    control = world.run("run", "--profile", "full-access", "--", PY, "-c", DOUBLE_FORK, mark)
    assert control.returncode == 0, control.stderr
    time.sleep(0.3)
    assert find(mark)


def test_timeout_kills_the_tree(world: World, marks: list[str]) -> None:
    """A command that would run far longer than allowed, with a child of its own: ``--timeout
    1`` ends the run in about a second with 137 (SIGKILL), says so in ``--json``, and leaves
    no process behind."""
    mark = marker(60)
    marks.append(mark)
    start = time.monotonic()
    result = world.run("run", "--timeout", "1", "--json", "--", "/bin/sh", "-c",
                       f"sleep {mark} & sleep {mark}; wait")
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 5, elapsed
    assert result.returncode == 137, result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == 137
    assert "timeout" in report["limits_hit"]
    assert 0.9 <= report["duration"] < 5
    assert gone(mark)
    # control: without --timeout the same command is still running after the same time
    proc = popen_ringfence(world, "run", "--", "/bin/sh", "-c", f"sleep {mark} & sleep {mark}")
    try:
        time.sleep(1.5)
        assert proc.poll() is None
        assert len(find(mark)) == 2
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert gone(mark)


def test_timeout_kills_the_tree_in_full_access(world: World, marks: list[str]) -> None:
    """``--timeout`` promises the whole tree is killed; full-access has no pid namespace, but
    it does put the command in a new session that can be killed as a group."""
    mark = marker(60)
    marks.append(mark)
    quiet = f"sleep {mark} </dev/null >/dev/null 2>&1"  # so the run cannot wait on its pipes
    result = world.run("run", "--profile", "full-access", "--timeout", "1", "--", "/bin/sh",
                       "-c", f"{quiet} & {quiet}; wait", timeout=20)
    assert result.returncode == 137
    assert gone(mark)


def test_sigkill_of_ringfence_kills_the_sandbox(world: World, marks: list[str]) -> None:
    """ringfence itself is killed with SIGKILL (no handler runs): the sandboxed tree must not
    be left running without anyone watching it."""
    mark = marker()
    marks.append(mark)
    pidfile = world.workspace / "pidfile"
    proc = popen_ringfence(world, "run", "--", "/bin/sh", "-c",
                           f"echo $$ > pidfile; sleep {mark}")
    try:
        wait_for(pidfile)
        assert appears(mark)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert gone(mark)


_DIES_IN_THE_WINDOW = """
import os, signal, sys, time

from ringfence.backends import linux

where, command = sys.argv[1], sys.argv[2:]
seen = {}
real_sandbox_pid = linux._sandbox_pid


def sandbox_pid(fd):
    seen["child"] = real_sandbox_pid(fd)
    return seen["child"]


linux._sandbox_pid = sandbox_pid


def die():
    os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup: as an OOM kill or kill -9


def at_the_block(child):
    # until the sandbox waits on the block fd: past bubblewrap's own start-up handshake, whose
    # own window (bubblewrap killed with us there strands its sandbox) is not what is tested
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/wchan") as fh:
                if "pipe" in fh.read():
                    return
        except OSError:
            return
        time.sleep(0.001)


if where == "rlimits":  # the sandbox's first process is known; its limits are not set yet
    def set_rlimits(pid, rlimits):
        at_the_block(pid)
        die()
    linux._set_rlimits = set_rlimits
elif where == "decision":  # the audit record's sync, while bubblewrap builds the sandbox
    from ringfence.approval.gate import Gate

    def durable(self):
        at_the_block(seen["child"])
        die()
    Gate.durable = durable
elif where == "release":  # just after the release, before the sandbox asked to die with us
    real_send = linux.Prepared._send_seccomp

    def send(self):
        child = seen["child"]
        at_the_block(child)
        os.kill(child, signal.SIGSTOP)  # so it cannot get as far as its parent-death signal
        with open(os.environ["BWRAP_PIDFILE"], "w") as fh:
            fh.write(str(child))
        real_send(self)
        die()
    linux.Prepared._send_seccomp = send
elif where == "spawn":  # bubblewrap just started, stopped before it reports its sandbox
    def started(self, pid, rlimits=()):
        os.kill(pid, signal.SIGSTOP)
        with open(os.environ["BWRAP_PIDFILE"], "w") as fh:
            fh.write(str(pid))
        die()
    linux.Prepared.started = started
if os.environ.get("VIA_CLI"):
    from ringfence.cli import main
    main(["run", "--", *command])
else:
    import ringfence
    ringfence.run(command, workspace=os.getcwd())
"""


@pytest.mark.parametrize("via_cli", [False, True], ids=["library", "cli"])
@pytest.mark.parametrize("where", ["spawn", "decision", "rlimits", "release"])
def test_killed_before_the_release_the_command_never_runs(
        world: World, marks: list[str], where: str, via_cli: bool) -> None:
    """Attack on the lifetime and the limits: the process running ringfence is killed
    (SIGKILL) while the sandbox waits on the block fd, before its limits are set and before it
    is released. bubblewrap's sandbox has no parent-death signal yet at that point, and it
    goes on when the block fd reaches end of file: it would run the command with no limits,
    no parent and no one to end it.
    So the seccomp program, read right after the block fd, is sent only at the release: an
    empty one is refused and bubblewrap exits. (Killed in the audit record's sync, or while
    setting the limits, once the sandbox waits at the block fd.) Killed even before bubblewrap
    has reported its sandbox ("spawn": bubblewrap is stopped first and continued once its
    parent is dead), bubblewrap must not die of SIGPIPE writing that report, which would leave
    its sandbox waiting for good, holding the run's descriptors: its report pipes have a
    reader of their own.
    Killed just after the release ("release": the sandbox's first process is stopped at the
    block fd, released, and continued once ringfence is dead), the sandbox's first process
    asks to die with bubblewrap too late, bubblewrap being gone already: the command would
    run on with no timeout and no one to end it. It waits at the start gate instead, whose
    word never comes, and the sandbox ends."""
    mark = marker()
    marks.append(mark)
    ran = world.workspace / "ran"
    pidfile = world.base / "bwrap.pid"
    env = {**os.environ, **world.env, **({"VIA_CLI": "1"} if via_cli else {}),
           "BWRAP_PIDFILE": str(pidfile)}
    command = ["/bin/sh", "-c", f"touch ran; exec sleep {mark}"]
    err = world.base / "stderr"
    with open(err, "wb") as fh:  # a file: the run's descriptors are not waited on
        code = subprocess.call([sys.executable, "-c", _DIES_IN_THE_WINDOW, where, *command],
                               cwd=world.workspace, env=env, stdout=subprocess.DEVNULL,
                               stderr=fh, timeout=60)
    assert code == -signal.SIGKILL, err.read_text()
    if where in ("spawn", "release"):  # it goes on only now, ringfence gone
        os.kill(int(pidfile.read_text()), signal.SIGCONT)
    time.sleep(1.0)  # what would have run has had its chance
    assert not ran.exists()
    assert gone(mark)  # the command
    assert not left_with(mark, within=10.0)  # nor a bubblewrap (its argv holds the script)
    # control: the same script, killed nowhere, runs the command
    control = subprocess.Popen(
        [sys.executable, "-c", _DIES_IN_THE_WINDOW, "nowhere", *command],
        cwd=world.workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_file(ran)
    finally:
        control.kill()
        control.wait(timeout=10)
    assert gone(mark)


def test_output_callback_that_raises_ends_the_sandbox(
        in_world: World, marks: list[str]) -> None:
    """An ``on_output`` callback that raises ends the library call: the sandbox must end with
    it, not run on with no one reading its output or waiting for it."""
    mark = marker()
    marks.append(mark)

    def explode(stream: str, chunk: bytes) -> None:
        raise RuntimeError("the caller's callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        ringfence.run(["/bin/sh", "-c", f"echo hi; exec sleep {mark}"], on_output=explode,
                      workspace=str(in_world.workspace))
    assert gone(mark)


def sigkill_mid_run(world: World, mark: str,
                    while_running: Callable[[subprocess.Popen[bytes]], None] | None = None) -> None:
    """Start ``ringfence run`` of a script that sleeps ``mark`` seconds, wait until it runs,
    call ``while_running`` with ringfence's process, then kill ringfence with SIGKILL."""
    proc = popen_ringfence(world, "run", "--", "/bin/sh", "-c",
                           f"echo $$ > pidfile; sleep {mark}")
    try:
        wait_for(world.workspace / "pidfile")
        if while_running is not None:
            while_running(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_next_run_after_sigkill_works(world: World, marks: list[str]) -> None:
    """After ringfence was killed with SIGKILL, the next run in the same workspace works and
    the workspace holds no leftover placeholder files."""
    mark = marker()
    marks.append(mark)
    before = sorted(os.listdir(world.workspace))
    sigkill_mid_run(world, mark)
    assert gone(mark)
    result = world.sandbox("echo second")
    assert (result.returncode, result.stdout) == (0, "second\n"), result.stderr
    assert sorted(os.listdir(world.workspace)) == sorted([*before, "pidfile"])


@pytest.mark.skipif(os.geteuid() != 0, reason="the pids cgroup is root's process limit")
def test_cgroup_of_a_killed_run_is_removed_by_the_next(world: World, marks: list[str]) -> None:
    """ringfence, as root, puts each run in a pids cgroup of its own and removes it when the run
    ends; killed with SIGKILL it cannot, and the empty cgroup stayed for good (a shared machine
    had thousands of them). The next run removes what runs whose ringfence is gone left."""
    from ringfence.backends import linux

    base = linux._pids_cgroup()
    if not base:
        pytest.skip("no writable pids cgroup here")
    mark = marker()
    marks.append(mark)
    left: list[str] = []

    def while_running(proc: subprocess.Popen[bytes]) -> None:
        left.extend(n for n in os.listdir(base) if n.startswith(f"ringfence-{proc.pid}-"))
        assert len(left) == 1, left  # the run's cgroup, while it runs

    sigkill_mid_run(world, mark, while_running)
    assert gone(mark)
    cgroup = os.path.join(base, left[0])
    deadline = time.monotonic() + 10
    while open(os.path.join(cgroup, "cgroup.procs")).read().strip():  # noqa: SIM115
        assert time.monotonic() < deadline, "the killed run's sandbox is still in its cgroup"
        time.sleep(0.02)
    assert os.path.isdir(cgroup)  # left behind by the killed run
    result = world.sandbox("echo second")
    assert (result.returncode, result.stdout) == (0, "second\n"), result.stderr
    assert not os.path.exists(cgroup)


def _sigterm_run(world: World, mark: str) -> int:
    proc = popen_ringfence(world, "run", "--", "/bin/sh", "-c",
                           f"echo $$ > pidfile; sleep {mark}")
    try:
        wait_for(world.workspace / "pidfile")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    return code


def test_sigterm_of_ringfence_kills_the_tree(world: World, marks: list[str]) -> None:
    """ringfence is asked to stop (SIGTERM, as a supervisor or an agent's harness would): it
    exits promptly and the sandboxed tree goes with it."""
    mark = marker()
    marks.append(mark)
    start = time.monotonic()
    code = _sigterm_run(world, mark)
    assert time.monotonic() - start < 8
    assert code in (137, 143), code  # killed, reported as 128+N
    assert gone(mark)


def test_sigterm_of_ringfence_exits_143(world: World, marks: list[str]) -> None:
    """A program stopped by SIGTERM exits 128+15 so its caller can tell why."""
    mark = marker()
    marks.append(mark)
    assert _sigterm_run(world, mark) == 143


def test_command_never_runs_when_setup_fails_after_the_sandbox_exists(
        in_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack on fail-closed: bubblewrap's sandbox waits on its block fd while ringfence sets
    its limits (and attaches the proxy). If that step fails and ringfence only kills bubblewrap
    and closes the fd, the waiting process reads EOF and goes on to exec the command -- with no
    limits and no parent to die with. The sandbox's own first process must be killed first."""
    from ringfence.backends import linux
    from ringfence.errors import SandboxError

    flag = in_world.workspace / "ran"

    def refuse(pid: int, rlimits: object) -> None:
        time.sleep(0.3)  # bubblewrap's outer process has released its side by now
        raise SandboxError("injected: cannot set the sandbox's limits")

    monkeypatch.setattr(linux, "_set_rlimits", refuse)
    code = f"import time; time.sleep(0.3); open({str(flag)!r}, 'w').close()"
    with pytest.raises(SandboxError, match="injected"):
        ringfence.run([PY, "-c", code], workspace=str(in_world.workspace))
    time.sleep(1.5)
    assert not flag.exists(), "the command ran although the sandbox's setup failed"
