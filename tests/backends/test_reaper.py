"""The Landlock fallback's reaper: nothing the command starts outlives the run.

Attack (red-team rt-host, finding 2): without a pid namespace, a command that double-forks and
calls ``setsid`` leaves a daemon behind that outlives ringfence, keeps the user's terminal and
reads what the user types into the shell afterwards (a password, in the red team's run). Now
the launcher stays outside the sandbox as the command's parent and a child subreaper, and ends
every process reparented to it when the command exits, at the timeout, and when ringfence dies
(SIGKILL included). On main before this change, every "gone" assertion below failed: the daemon
was still alive.

Each test has a control: the same run in full-access mode (no sandbox, hence no reaper; the
command's process group is killed at the end, as the fallback's was) leaves the daemon alive,
so the daemon does escape a process-group kill and only the reaper ends it. As in
test_fallback_mode, ringfence is made to believe user namespaces are disabled; everything else
runs on the real kernel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.backends.test_landlock import Box
from tests.conftest import World

import ringfence
from ringfence.backends import _landlock, linux

pytestmark = pytest.mark.skipif(_landlock.abi_version() < 1, reason="no Landlock here")

# A daemon the classic way: fork (the parent exits with argv[2]), setsid, fork again; the
# grandchild lets go of the run's output pipes (so that the run does not wait for it) but keeps
# its stdin (the terminal, in the red team's run), writes its pid to argv[1] and stays.
DAEMON = """\
import os, sys, time
if os.fork():
    sys.exit(int(sys.argv[2]))
os.setsid()
if os.fork():
    os._exit(0)
null = os.open("/dev/null", os.O_WRONLY)
os.dup2(null, 1)
os.dup2(null, 2)
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""

# The red team's daemon: as DAEMON, but it keeps the terminal on stdin and copies whatever it
# reads there to argv[2].
READER = """\
import os, sys
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    os._exit(0)
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
out = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
while data := os.read(0, 100):
    os.write(out, data)
"""

# A fork loop that keeps spawning, each process in a new session: the spawner forks a sleeper
# and a new spawner, then exits (so it keeps changing its pid); every pid goes to argv[1].
# Everything stops by itself once the file argv[2] is gone (the test removes it at its end),
# or after 3000 rounds, so that a broken reaper cannot swamp the machine.
SPAWNER = """\
import os, sys, time
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
go = sys.argv[2]
if os.fork():
    sys.exit(0)
null = os.open("/dev/null", os.O_WRONLY)
os.dup2(null, 1)
os.dup2(null, 2)
for _ in range(3000):
    if not os.path.exists(go):
        break
    if os.fork() == 0:
        os.setsid()
        os.write(log, b"%d\\n" % os.getpid())
        while os.path.exists(go):
            time.sleep(0.05)
        os._exit(0)
    if os.fork():
        os._exit(0)
    os.setsid()
    os.write(log, b"%d\\n" % os.getpid())
    time.sleep(0.002)
"""

# ringfence in a process of its own (so the test can SIGKILL it): the library or the CLI
HOST = """\
import os, sys
from ringfence.backends import linux
linux._userns_status = lambda uid: "user namespaces are disabled (test)"
if sys.argv[1] == "cli":
    from ringfence.cli import main
    sys.exit(main(["run", *sys.argv[2:]]))
import ringfence
profile = "full-access" if sys.argv[2] == "--profile=full-access" else "workspace-write"
pol = ringfence.Policy(workspace=os.getcwd(), fallback="landlock", profile=profile,
                       limits=ringfence.Limits(max_processes=0))
ringfence.run(sys.argv[3:], pol)
"""


class Tree:
    """The test's processes: scripts in the workspace, the pids they report, and the check
    that a pid is still one of them (its command line names this test's directory)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.dir = world.workspace / "sub"
        self.dir.mkdir()
        (self.dir / "daemon.py").write_text(DAEMON)
        (self.dir / "spawner.py").write_text(SPAWNER)
        (self.dir / "reader.py").write_text(READER)
        self.go = world.base / "spawners-may-go-on"  # outside: the sandbox cannot remove it
        self.go.write_text("")
        self.seen: set[int] = set()
        self.groups: set[int] = set()

    def daemon(self, name: str, status: int = 0) -> str:
        """Shell words that start the daemon, its pid going to ``name``."""
        return f"'{sys.executable}' '{self.dir / 'daemon.py'}' '{self.dir / name}' {status}"

    def pids(self, name: str) -> list[int]:
        path = self.dir / name
        found = [int(p) for p in path.read_text().split()] if path.exists() else []
        self.seen.update(found)
        return found

    def wait_for(self, name: str, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while not self.pids(name):
            assert time.monotonic() < deadline, f"{name} was never written"
            time.sleep(0.02)
        return self.pids(name)[0]

    def alive(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            return False
        return str(self.dir).encode() in cmdline and state != b"Z"

    def gone(self, pids: list[int], timeout: float = 0.0) -> bool:
        """Whether none of ``pids`` lives (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while any(self.alive(p) for p in pids):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def spawner(self, log: Path) -> str:
        """Shell words that start the spawner, its pids going to ``log``."""
        return f"'{sys.executable}' '{self.dir / 'spawner.py'}' '{log}' '{self.go}'"

    def end(self) -> None:
        self.go.unlink()
        if log := [p for p in self.dir.glob("spawned*")]:
            time.sleep(0.2)  # a spawner left behind stops, its sleepers end
            for path in log:
                self.pids(path.name)
        for pid in self.groups:
            if self.alive(pid):
                os.killpg(pid, signal.SIGKILL)
        for pid in self.seen:
            if self.alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tree(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tree]:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(linux, "_userns_status",
                        lambda uid: "user namespaces are disabled (test)")
    t = Tree(world)
    try:
        yield t
    finally:
        t.end()


def run(tree: Tree, script: str, profile: str = "workspace-write",
        timeout: float = 60) -> ringfence.Result:
    pol = ringfence.Policy(workspace=str(tree.world.workspace), fallback="landlock",
                           profile=profile,
                           limits=ringfence.Limits(max_processes=0, timeout=timeout))
    return ringfence.run(["/bin/sh", "-c", script], pol)


def test_daemon_is_gone_when_the_command_exits(tree: Tree) -> None:
    """The command starts a double-forked setsid daemon and exits 3: the run returns 3, with
    the daemon already gone."""
    result = run(tree, f"{tree.daemon('d1', 3)}; code=$?; "
                       f"while [ ! -e '{tree.dir / 'd1'}' ]; do sleep 0.01; done; exit $code")
    assert result.mode == "landlock"
    assert result.exit_code == 3, result.stderr
    daemon = tree.wait_for("d1")
    assert tree.gone([daemon])
    # control: without the reaper, the daemon outlives the run
    control = run(tree, f"{tree.daemon('d2')}; "
                        f"while [ ! -e '{tree.dir / 'd2'}' ]; do sleep 0.01; done",
                  profile="full-access")
    assert control.exit_code == 0
    assert not tree.gone([tree.wait_for("d2")], timeout=0.5)


def test_daemon_is_gone_at_the_timeout(tree: Tree) -> None:
    """The command starts the daemon, then runs into the timeout."""
    result = run(tree, f"{tree.daemon('d1')}; sleep 60", timeout=2)
    assert result.exit_code == 137 and "timeout" in result.limits_hit
    assert tree.gone([tree.wait_for("d1")])
    control = run(tree, f"{tree.daemon('d2')}; sleep 60", profile="full-access", timeout=2)
    assert "timeout" in control.limits_hit
    assert not tree.gone([tree.wait_for("d2")], timeout=0.5)


def test_a_fork_loop_is_ended(tree: Tree) -> None:
    """A daemon that keeps spawning processes in new sessions and keeps moving to a new pid
    (it forks its successor and exits) while the run ends: all of them are gone."""
    log = tree.dir / "spawned"
    result = run(tree, f"{tree.spawner(log)}; "
                       f"while [ $(wc -l < '{log}' 2>/dev/null || echo 0) -lt 40 ]; "
                       "do sleep 0.01; done")
    assert result.exit_code == 0, result.stderr
    time.sleep(0.3)  # were anything left, it would spawn meanwhile
    spawned = tree.pids("spawned")
    assert len(spawned) >= 40 and tree.gone(spawned)
    log = tree.dir / "spawned-control"
    control = run(tree, f"{tree.spawner(log)}; "
                        f"while [ $(wc -l < '{log}' 2>/dev/null || echo 0) -lt 40 ]; "
                        "do sleep 0.01; done", profile="full-access")
    assert control.exit_code == 0
    assert not tree.gone(tree.pids("spawned-control"), timeout=0.3)


@contextlib.contextmanager
def hosted(tree: Tree, how: str, profile: str, script: str, terminal: int = -1
           ) -> Iterator[subprocess.Popen[bytes]]:
    """ringfence (``how``: "library" or "cli") running ``script`` in a process of its own, in a
    new session; killed if still there at the end."""
    (tree.dir / "host.py").write_text(HOST)
    if how == "cli":
        args = ["--fallback", "landlock", "--max-processes", "0", f"--profile={profile}", "--"]
    else:
        args = [f"--profile={profile}"]
    stream = subprocess.DEVNULL if terminal < 0 else terminal
    host = subprocess.Popen(
        [sys.executable, str(tree.dir / "host.py"), how, *args, "/bin/sh", "-c", script],
        cwd=tree.world.workspace, stdin=stream, stdout=stream, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        yield host
    finally:
        if host.poll() is None:
            host.kill()
        host.wait()


@pytest.mark.parametrize("how", ["library", "cli"])
def test_everything_is_gone_when_ringfence_is_sigkilled(tree: Tree, how: str) -> None:
    """ringfence (the library in a program, or the CLI) is SIGKILLed while the command and its
    daemon run: both end, and the run's private TMPDIR (rt-host finding 8: it was left in
    /tmp with what the command wrote there) is removed."""
    marker = tree.dir / "tmp-path"
    with hosted(tree, how, "workspace-write",
                f"echo \"$TMPDIR\" > '{marker}.tmp' && mv '{marker}.tmp' '{marker}' && "
                f"head -c 100000 /dev/zero > \"$TMPDIR/left\" && "
                f"{tree.daemon('d1')} && echo $$ > '{tree.dir / 'cmd'}' && sleep 60") as host:
        daemon = tree.wait_for("d1")
        command = tree.wait_for("cmd")
        tmpdir = Path(marker.read_text().strip())
        assert (tmpdir / "left").exists()
        host.kill()
        host.wait(10)
        assert tree.gone([daemon, command], timeout=10)
        deadline = time.monotonic() + 10
        while tmpdir.exists():
            assert time.monotonic() < deadline, f"{tmpdir} was left behind"
            time.sleep(0.02)
    # control: without the reaper, the daemon outlives ringfence
    with hosted(tree, how, "full-access",
                f"{tree.daemon('d2')} && echo $$ > '{tree.dir / 'cmd2'}' && sleep 60") as host:
        daemon = tree.wait_for("d2")
        tree.groups.add(tree.wait_for("cmd2"))  # left running too, in its own session
        host.kill()
        host.wait(10)
        assert not tree.gone([daemon], timeout=0.5)


@pytest.mark.parametrize("profile", ["workspace-write", "full-access"])
def test_a_daemon_cannot_read_what_is_typed_after_the_run(tree: Tree, profile: str) -> None:
    """The red team's attack, end to end: ``ringfence run`` in a terminal (a pseudo-terminal
    here); the command leaves a daemon that keeps the terminal and reads from it; after
    ringfence has exited the user types a password into that terminal. The daemon is gone by
    then and reads nothing. Control (full-access, no reaper): it captures the password."""
    import pty

    master, slave = pty.openpty()
    stolen = tree.dir / "stolen"
    reader = f"'{sys.executable}' '{tree.dir / 'reader.py'}' '{tree.dir / 'r1'}' '{stolen}'"

    def captured() -> bool:
        return stolen.exists() and b"sudo-password" in stolen.read_bytes()

    try:
        with hosted(tree, "cli", profile,
                    f"{reader}; while [ ! -e '{tree.dir / 'r1'}' ]; do sleep 0.01; done",
                    terminal=slave) as host:
            os.close(slave)
            assert host.wait(30) == 0
        daemon = tree.wait_for("r1")
        os.write(master, b"sudo-password\n")
        deadline = time.monotonic() + (1 if profile == "workspace-write" else 10)
        while time.monotonic() < deadline and not captured():
            time.sleep(0.02)
        assert captured() is (profile == "full-access")
        assert tree.gone([daemon]) is (profile == "workspace-write")
    finally:
        os.close(master)


@pytest.mark.parametrize("script, code", [
    ("exit 0", 0), ("exit 7", 7), ("exit 255", 255),
    ("kill -TERM $$", 128 + 15), ("kill -SEGV $$", 128 + 11), ("kill -KILL $$", 128 + 9),
])
def test_exit_status_is_the_commands(tree: Tree, script: str, code: int) -> None:
    """The launcher now exits for the command: its status, and 128+N for a signal N, reach
    the caller as before."""
    result = run(tree, script)
    assert (result.exit_code, result.stderr) == (code, b"")


def test_renames_and_links_across_directories_still_work(tree: Tree) -> None:
    """The reaper's own Landlock domain (signal scoping only) is an extra layer over the
    command's: a layer that does not handle the "refer" right denies every rename and link
    across directories (EXDEV), so ``mv a/f b/f`` broke until that layer granted it on /."""
    result = run(tree, "cd sub && mkdir a b && echo x > a/f && mv a/f b/f && ln b/f a/g && "
                       "cat a/g")
    assert (result.exit_code, result.stdout) == (0, b"x\n"), result.stderr


def test_the_command_gets_default_sigpipe(tree: Tree) -> None:
    """Regression: the launcher is a Python program, which ignores SIGPIPE and SIGXFSZ, and
    exec keeps ignored signals: the command ran with both ignored (``yes | head -1`` left
    ``yes`` writing into a closed pipe; a file-size limit gave EFBIG instead of ending it)."""
    result = run(tree, "grep SigIgn /proc/self/status")
    assert result.stdout == b"SigIgn:\t0000000000000000\n"


def test_the_file_size_limit_is_reported(tree: Tree) -> None:
    """With SIGXFSZ ignored (the regression above), a write past ``file_size`` failed with
    EFBIG and the run did not say which limit was hit; now the command dies of SIGXFSZ."""
    pol = ringfence.Policy(workspace=str(tree.world.workspace), fallback="landlock",
                           limits=ringfence.Limits(max_processes=0, file_size=4096))
    result = ringfence.run(["/bin/sh", "-c", "head -c 100000 /dev/zero > sub/big"], pol)
    assert result.exit_code == 128 + signal.SIGXFSZ and "file_size" in result.limits_hit


def test_ctrl_c_reaches_the_command(tree: Tree) -> None:
    """The CLI passes the terminal's SIGINT on; with the reaper in between it still reaches the
    command (the reaper forwards it to the command's process group)."""
    with hosted(tree, "cli", "workspace-write",
                f"trap 'echo got > \"{tree.dir / 'int'}\"; exit 5' INT; "
                f"echo $$ > '{tree.dir / 'cmd'}'; sleep 60 & wait") as host:
        tree.wait_for("cmd")
        host.send_signal(signal.SIGINT)
        assert host.wait(20) == 5
    assert (tree.dir / "int").read_text() == "got\n"


# ---------------------------------------------------------------------------------------------
# The launcher itself (as tests/backends/test_landlock.py runs it), with one guard switched off.

SCOPED = _landlock.abi_version() >= 6


@pytest.fixture
def box(tree: Tree) -> Box:
    return Box(tree.world)


def test_rounds_end_the_tree_without_signal_scoping(tree: Tree, box: Box) -> None:
    """Below Landlock ABI 6 (here: the run's signal scoping switched off, which is what the
    reaper sees there) the sweep goes round by round over its children in /proc instead of
    one kill(-1): the daemon and the fork loop end all the same."""
    log = tree.dir / "spawned"
    script = (f"{tree.daemon('d1')}; {tree.spawner(log)}; "
              f"while [ $(wc -l < '{log}' 2>/dev/null || echo 0) -lt 40 ]; do sleep 0.01; done")
    result = box.launch(box.spec(["/bin/sh", "-c", script], landlock={"scope": False}))
    assert (result.returncode, result.stderr) == (0, "")
    time.sleep(0.3)
    assert tree.gone([tree.wait_for("d1"), *tree.pids("spawned")])


@pytest.mark.skipif(not SCOPED, reason="signal scoping needs Landlock ABI 6")
@pytest.mark.parametrize("guarded", [True, False])
def test_the_command_cannot_kill_the_reaper(tree: Tree, box: Box, guarded: bool) -> None:
    """The command SIGKILLs its parent, the reaper, before it can sweep, then leaves its
    daemon. From Landlock ABI 6 the kernel refuses (the reaper is outside the command's
    domain) and the daemon is gone after the run; the control, with the run's signal scoping
    off (what ABI < 6 gives), kills the reaper and the daemon stays."""
    script = (f"{tree.daemon('d1')}; kill -KILL $PPID; echo $? > '{tree.dir / 'killed'}'; "
              f"sleep 0.5")
    over = {} if guarded else {"landlock": {"scope": False}}
    result = box.launch(box.spec(["/bin/sh", "-c", script], **over))
    daemon = tree.wait_for("d1")
    if guarded:
        assert result.returncode == 0
        assert (tree.dir / "killed").read_text() == "1\n"
        assert tree.gone([daemon])
    else:
        assert result.returncode == -signal.SIGKILL
        assert not tree.gone([daemon], timeout=0.5)


def test_the_sweep_spares_other_processes(tree: Tree) -> None:
    """The scoped sweep is ``kill(-1, SIGKILL)``: it must reach the command's tree and nothing
    else of the user's (a process the test started outside, its session and group its own)."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        result = run(tree, f"{tree.daemon('d1')}; "
                           f"while [ ! -e '{tree.dir / 'd1'}' ]; do sleep 0.01; done")
        assert result.exit_code == 0 and tree.gone([tree.wait_for("d1")])
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
