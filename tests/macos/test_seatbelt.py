"""Escape tests that exist only on macOS, or differ there, against Seatbelt on a real Mac.

The attacks shared with Linux are in test_shared_escapes.py (the Linux bodies, imported). Here:
case variants of protected and secret paths (APFS is case-insensitive), signals and process
information of the user's other processes, the process tree dying with the run, limits as macOS
enforces them, the private $TMPDIR, unix sockets with network off. Processes are found with
``ps`` (macOS has no /proc); the tests kill only what they started. Run on a Mac with

    tools/test tests/macos
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import World

pytestmark = pytest.mark.skipif(
    sys.platform != "darwin",
    reason="Seatbelt escape tests need macOS: run `tools/test tests/macos` on a Mac",
)

PY = os.path.realpath(sys.executable)


def marker() -> str:
    """A ``sleep`` argument no other process on the machine has."""
    return f"300.{uuid.uuid4().int % 10**12:012d}"


def find(mark: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``mark``."""
    out = subprocess.run(["ps", "-ax", "-o", "pid=,stat=,command="], capture_output=True,
                         text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        pid, stat, command = [*line.split(None, 2), "", ""][:3]
        if mark in command and not stat.startswith("Z") and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def gone(mark: str, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while find(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def marks() -> Iterator[list[str]]:
    given: list[str] = []
    yield given
    for mark in given:
        for pid in find(mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def case_insensitive(path: Path) -> bool:
    probe = path / f"CaseProbe-{uuid.uuid4().hex[:6]}"
    probe.write_text("")
    try:
        return (path / probe.name.lower()).exists()
    finally:
        probe.unlink()


@pytest.fixture
def ci_world(world: World) -> World:
    if not case_insensitive(world.workspace):
        pytest.skip("this volume is case-sensitive: case variants are different files here")
    return world


# ---------------------------------------------------------------------------------------------
# It runs at all, and the doctor agrees.

def test_doctor_reports_seatbelt_working(world: World) -> None:
    result = world.run("doctor", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["problems"]
    assert report["sandbox_exec"]["applies_ringfence_profile"] is True


def test_ordinary_commands_work(world: World) -> None:
    """Shell, Python, git and the private temp dir work under the default profile."""
    world.git_init()
    script = (f"echo hi > a.txt && cat a.txt && {PY} -c 'print(1+1)' && git status --short "
              "&& t=$(mktemp) && echo ok > \"$t\" && cat \"$t\"")
    result = world.sandbox(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["hi", "2"]
    assert "ok" in result.stdout


# ---------------------------------------------------------------------------------------------
# Persistence, the macOS ways (all in the test's fake home, or cleaned up).

@pytest.mark.parametrize("target", ["Library/LaunchAgents/com.evil.agent.plist", ".zshrc",
                                    ".zprofile", "Library/Application Support/Code/User/"
                                    "settings.json"])
def test_plant_something_the_login_or_shell_runs(world: World, target: str) -> None:
    """A launch agent runs at the next login; zsh (macOS's shell) reads ~/.zshrc; an editor
    its user settings: none can be written."""
    path = world.home / target
    script = f"mkdir -p \"$(dirname '{path}')\" && echo PWNED > '{path}'"
    assert world.sandbox(script).returncode != 0
    assert not path.exists()
    assert world.unsandboxed(script).returncode == 0
    assert path.read_text() == "PWNED\n"


def test_launchd_job_submission(world: World) -> None:
    """``launchctl submit`` asks launchd to run a job, which would run outside the sandbox.
    The job here only writes a file in the test's outside directory, and is removed after."""
    import shutil

    if shutil.which("launchctl") is None:
        pytest.skip("no launchctl")
    label = f"dev.ringfence.test.{uuid.uuid4().hex[:10]}"
    target = world.outside / "launchd-ran"
    script = f"launchctl submit -l {label} -- /bin/sh -c 'echo RAN > \"{target}\"'"
    try:
        world.sandbox(script)
        time.sleep(2)
        assert not target.exists(), "launchd ran a job the sandbox submitted"
        subprocess.run(["launchctl", "remove", label], capture_output=True, check=False)
        control = world.unsandboxed(script)
        deadline = time.monotonic() + 10
        while control.returncode == 0 and not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not target.exists():
            pytest.skip(f"launchctl submit does not work here even unsandboxed: "
                        f"{control.stderr.strip()}")
    finally:
        subprocess.run(["launchctl", "remove", label], capture_output=True, check=False)


# ---------------------------------------------------------------------------------------------
# Case variants (APFS is case-insensitive by default).

def test_write_git_hook_by_a_case_variant(ci_world: World) -> None:
    """``.GIT/Hooks/pre-commit`` is ``.git/hooks/pre-commit`` on this volume."""
    world = ci_world
    world.git_init()
    hook = world.workspace / ".git" / "hooks" / "pre-commit"
    script = "printf '#!/bin/sh\\necho HOOK\\n' > .GIT/Hooks/pre-commit"
    assert world.sandbox(script).returncode != 0
    assert not hook.exists()
    assert world.unsandboxed(script).returncode == 0
    assert hook.exists()


@pytest.mark.parametrize("name", [".ENVRC", ".VSCode/tasks.json", ".Ringfence.TOML",
                                  ".GIT/Config"])
def test_protected_name_by_a_case_variant(ci_world: World, name: str) -> None:
    world = ci_world
    world.git_init()
    canonical = world.workspace / {".ENVRC": ".envrc", ".VSCode/tasks.json":
                                   ".vscode/tasks.json", ".Ringfence.TOML": ".ringfence.toml",
                                   ".GIT/Config": ".git/config"}[name]
    before = canonical.read_bytes() if canonical.exists() else None
    script = f"mkdir -p \"$(dirname {name})\"; printf '[core]\\n\\tfsmonitor = x\\n' > {name}"
    assert world.sandbox(script).returncode != 0
    assert (canonical.read_bytes() if canonical.exists() else None) == before
    assert world.unsandboxed(script).returncode == 0
    assert canonical.read_bytes() != before


def test_rename_git_away_by_a_case_variant(ci_world: World) -> None:
    """``mv .GIT .git2`` then a new ``.git`` with a hook."""
    world = ci_world
    world.git_init()
    script = "mv .GIT .git2 && mkdir -p .git/hooks && echo x > .git/hooks/pre-commit"
    assert world.sandbox(script).returncode != 0
    assert not (world.workspace / ".git2").exists()
    assert world.unsandboxed(script).returncode == 0
    assert (world.workspace / ".git2").exists()


def test_read_secret_by_a_case_variant(ci_world: World) -> None:
    world = ci_world
    script = "cat ~/.SSH/id_ed25519 ~/.Aws/credentials ~/.NETRC"
    result = world.sandbox(script)
    assert "FAKE" not in result.stdout + result.stderr
    control = world.unsandboxed(script)
    assert "FAKE-PRIVATE-KEY" in control.stdout


def test_deny_read_dir_cannot_be_listed(world: World) -> None:
    """On macOS a deny-read directory is not empty but unlistable: no key names either."""
    result = world.sandbox("ls -A ~/.ssh")
    assert result.returncode != 0
    assert "id_ed25519" not in result.stdout
    assert "id_ed25519" in world.unsandboxed("ls -A ~/.ssh").stdout


def test_ringfence_own_dirs_unreadable(world: World) -> None:
    """ringfence's config and state on macOS (platformdirs: ~/Library/Application Support)."""
    own = world.home / "Library" / "Application Support" / "ringfence"
    own.mkdir(parents=True)
    (own / "config.toml").write_text("# FAKE-RINGFENCE-CONFIG\n")
    script = f"cat '{own}/config.toml'; echo evil > '{own}/planted'"
    result = world.sandbox(script)
    assert "FAKE" not in result.stdout
    assert not (own / "planted").exists()
    assert "FAKE-RINGFENCE-CONFIG" in world.unsandboxed(script).stdout


# ---------------------------------------------------------------------------------------------
# Other processes of the same user.

@pytest.fixture
def victim() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    secret = "RF_VICTIM_" + uuid.uuid4().hex
    proc = subprocess.Popen(["sleep", marker()], env={"PATH": os.defpath,
                                                      "RF_VICTIM_SECRET": secret})
    yield proc, secret
    proc.kill()
    proc.wait()


def test_signal_host_process(world: World,
                             victim: tuple[subprocess.Popen[bytes], str]) -> None:
    """``kill -TERM`` / ``kill -0`` a process of the same user outside the sandbox."""
    proc, _ = victim
    result = world.sandbox(f"kill -0 {proc.pid} && echo SEEN; "
                           f"kill -TERM {proc.pid} && echo KILLED")
    assert "KILLED" not in result.stdout
    assert "SEEN" not in result.stdout
    time.sleep(0.2)
    assert proc.poll() is None
    control = world.unsandboxed(f"kill -TERM {proc.pid} && echo KILLED")
    assert "KILLED" in control.stdout
    proc.wait(timeout=5)


def test_read_host_process_environment(world: World,
                                       victim: tuple[subprocess.Popen[bytes], str]) -> None:
    """``ps -E`` shows another process's environment (kern.procargs2), where tokens live."""
    proc, secret = victim
    script = f"ps -E -ww -p {proc.pid} -o command="
    result = world.sandbox(script)
    assert secret not in result.stdout
    assert secret in world.unsandboxed(script).stdout


def test_signal_own_children_works(world: World) -> None:
    """Inside, job control still works: the command can kill what it started."""
    result = world.sandbox("sleep 30 & kill $! && wait $!; echo status=$?")
    assert result.stdout.strip() == "status=143", result.stderr


# ---------------------------------------------------------------------------------------------
# The tree dies with the run.

def test_background_child_dies_with_the_command(world: World, marks: list[str]) -> None:
    mark = marker()
    marks.append(mark)
    result = world.sandbox(f"sleep {mark} </dev/null >/dev/null 2>&1 & echo started")
    assert result.stdout == "started\n", result.stderr
    assert gone(mark)


def test_timeout_kills_the_tree(world: World, marks: list[str]) -> None:
    mark = marker()
    marks.append(mark)
    start = time.monotonic()
    result = world.sandbox(f"sleep {mark} & sleep 30", "--timeout", "1")
    assert result.returncode == 137
    assert time.monotonic() - start < 15
    assert gone(mark)


def test_sigterm_of_ringfence_kills_the_tree(world: World, marks: list[str]) -> None:
    mark = marker()
    marks.append(mark)
    proc = subprocess.Popen([sys.executable, "-m", "ringfence", "run", "--", "/bin/sh", "-c",
                             f"sleep {mark}"], cwd=world.workspace, env=world.env)
    deadline = time.monotonic() + 15
    while not find(mark):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 143
    assert gone(mark)


@pytest.mark.xfail(strict=True, reason="known gap, stated in the plan's 'weaker' list: a "
                   "process that leaves the process group (setsid) outlives the run on macOS")
def test_setsid_daemon_dies_with_the_command(world: World, marks: list[str]) -> None:
    mark = marker()
    marks.append(mark)
    code = ("import os, subprocess; os.fork() == 0 and (os.setsid(), "
            f"subprocess.Popen(['sleep', '{mark}'], start_new_session=True), os._exit(0))")
    world.python(code)
    time.sleep(0.3)
    assert gone(mark)


# ---------------------------------------------------------------------------------------------
# Limits.

FORK_LOOP = """
import os, sys, time
made, children = 0, []
for _ in range(int(sys.argv[1])):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    made += 1
    children.append(pid)
print(made)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def test_fork_bomb_is_capped(world: World) -> None:
    """RLIMIT_NPROC counts all of the user's processes on macOS: the limit is set to what the
    user runs now plus 40, and a loop of 300 forks stops near there."""
    if os.getuid() == 0:
        pytest.skip("RLIMIT_NPROC does not bind root")
    now = len(subprocess.run(["ps", "-U", str(os.getuid()), "-o", "pid="],
                             capture_output=True, text=True, check=True).stdout.split())
    result = world.run("run", "--max-processes", str(now + 40), "--", PY, "-c", FORK_LOOP,
                       "300")
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) < 100
    control = world.run("run", "--max-processes", "0", "--", PY, "-c", FORK_LOOP, "300")
    assert int(control.stdout) == 300


def test_memory_limit_is_refused(world: World) -> None:
    """macOS does not enforce RLIMIT_DATA on mapped memory: asking for a limit fails closed."""
    result = world.sandbox("echo ran", "--memory", "100M")
    assert result.returncode == 125
    assert "ran" not in result.stdout
    assert result.stderr.count("\n") == 1 and "memory" in result.stderr


# ---------------------------------------------------------------------------------------------
# Temp files and the host's /tmp.

def test_private_tmpdir(world: World) -> None:
    """$TMPDIR is private and writable (also under read-only), and gone after the run; the
    host's /tmp is not writable."""
    name = f"ringfence-test-{uuid.uuid4().hex}"
    script = (f'echo scratch > "$TMPDIR/x" && cat "$TMPDIR/x" && echo "$TMPDIR"; '
              f"echo x > /tmp/{name}")
    for options in ((), ("--profile", "read-only")):
        result = world.sandbox(script, *options)
        lines = result.stdout.splitlines()
        assert lines[0] == "scratch", result.stderr
        assert not os.path.exists(lines[1])
        assert not os.path.exists(f"/tmp/{name}")
    world.unsandboxed(script)
    assert os.path.exists(f"/tmp/{name}")
    os.unlink(f"/tmp/{name}")


# ---------------------------------------------------------------------------------------------
# Network off: unix sockets too.

def test_unix_socket_with_network_off(world: World) -> None:
    """A unix socket no variable names (a database's, a dev tool's): unreachable with network
    off on macOS (Seatbelt decides connect() on every socket family)."""
    path = world.outside / f"s.{uuid.uuid4().hex[:6]}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(3)
    code = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
            "    s.connect(sys.argv[1]); print('CONNECTED')\nexcept OSError as e:\n"
            "    print('FAILED', e.errno)\n")
    try:
        result = world.run("run", "--", PY, "-c", code, str(path))
        assert result.stdout.startswith("FAILED"), result.stdout + result.stderr
        control = world.run("run", "--profile", "full-access", "--", PY, "-c", code, str(path))
        assert control.stdout.startswith("CONNECTED"), control.stdout + control.stderr
    finally:
        srv.close()
