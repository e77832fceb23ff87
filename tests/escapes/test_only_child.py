"""Attack surface: the caller. The library must sandbox only the child it starts, never the
process that calls it (an agent's harness that must keep writing its own files, spawning its
own tools, and stay out of the seccomp filter it installs for the command)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
from tests.conftest import World

import ringfence

PY = os.path.realpath(sys.executable)
RLIMITS = ("RLIMIT_NPROC", "RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_FSIZE")


def _status() -> dict[str, str]:
    with open("/proc/self/status") as fh:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in fh)}


def test_library_run_leaves_the_caller_unconfined(world: World,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """After an in-process ``ringfence.run`` with every limit set, the test process itself
    has no seccomp filter, no no_new_privs, its capabilities and rlimits as before, and can
    still write outside the workspace (where the sandboxed command could not)."""
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(world.workspace)
    before = _status()
    limits_before = {name: resource.getrlimit(getattr(resource, name)) for name in RLIMITS}
    policy = ringfence.Policy(
        workspace=str(world.workspace),
        limits=ringfence.Limits(timeout=30, memory=512 << 20, max_processes=64,
                                cpu_seconds=30, file_size=1 << 20),
    )
    target = world.outside / "target.txt"
    result = ringfence.run(["/bin/sh", "-c", f"echo PWNED > '{target}'"], policy)
    assert result.exit_code != 0  # the child was confined ...
    probe = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"
    inside = ringfence.run(["/bin/sh", "-c", probe], policy)
    assert inside.stdout is not None and b"NoNewPrivs:\t1" in inside.stdout
    assert b"Seccomp:\t2" in inside.stdout

    after = _status()  # ... and the caller was not
    # (0 and 0 on a plain host; compared with before so a host that runs everything under a
    # filter of its own still checks that the library added none)
    assert after["Seccomp"] == before["Seccomp"]
    assert after["NoNewPrivs"] == before["NoNewPrivs"]
    for field in ("Seccomp_filters", "CapEff", "CapPrm", "CapBnd", "SigBlk", "SigIgn"):
        assert after.get(field) == before.get(field), field
    assert {name: resource.getrlimit(getattr(resource, name)) for name in RLIMITS} == (
        limits_before)
    assert target.read_text() == "ORIGINAL\n"
    target.write_text("written by the caller\n")
    assert target.read_text() == "written by the caller\n"
    (world.outside / "new.txt").write_bytes(b"y" * (2 << 20))  # past the child's file_size
    assert os.path.getsize(world.outside / "new.txt") == 2 << 20


def test_descriptors_the_caller_leaked_do_not_reach_the_command(world: World) -> None:
    """Attack: the agent's harness (or a shell) starts ``ringfence run`` with a descriptor left
    inheritable -- here a directory holding a secret, outside everything the sandbox may read.
    bubblewrap passes on what it inherits, and ``/proc/self/fd/N/secret`` would read the file
    through the host's directory, past every mount. Only stdin, stdout and stderr may arrive."""
    secret_dir = world.outside / "vault"
    secret_dir.mkdir()
    (secret_dir / "secret").write_text("TOP-SECRET\n")
    fd = os.open(secret_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.set_inheritable(fd, True)
        script = f"cat /proc/self/fd/{fd}/secret; ls /proc/self/fd"
        result = subprocess.run(
            [sys.executable, "-m", "ringfence", "run", "--", "/bin/sh", "-c", script],
            cwd=world.workspace, env=world.env, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL, close_fds=False)
        control = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                                 timeout=60, stdin=subprocess.DEVNULL, close_fds=False)
    finally:
        os.close(fd)
    assert "TOP-SECRET" in control.stdout  # the leak is real without the guard
    assert "TOP-SECRET" not in result.stdout, result.stdout
    assert str(fd) not in result.stdout.split()


def _cli(world: World, script: str, *options: str, **streams: object
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringfence", "run", *options, "--", "/bin/sh", "-c", script],
        cwd=world.workspace, env=world.env, text=True, timeout=60, **streams)  # type: ignore[call-overload]


@pytest.mark.parametrize("profile", ["workspace-write", "full-access"])
def test_standard_input_file_cannot_be_reopened_for_writing(world: World, profile: str) -> None:
    """Attack: the user runs ``ringfence run -- python3 - < ~/bin/tool.py`` (or any command
    with its input from a file outside the workspace). ``/proc/self/fd/0`` reopens that file
    with the file's own permissions -- writable -- past the sandbox's read-only mounts, and
    the command rewrites the tool the user later runs unsandboxed. The command gets a pipe
    instead, fed from the file, and still reads the same bytes. (full-access: the control.)"""
    target = world.outside / "tool.py"
    target.write_text("print('ORIGINAL')\n")
    with open(target, "rb") as stdin:
        result = _cli(world, "echo PWNED > /proc/self/fd/0 2>/dev/null; cat", "--profile",
                      profile, stdin=stdin, capture_output=True)
    if profile == "full-access":
        assert target.read_text() == "PWNED\n"  # the reopen works without the guard
        return
    assert target.read_text() == "print('ORIGINAL')\n", "the command rewrote its input file"
    assert "print('ORIGINAL')" in result.stdout  # the input still arrives


READ_FD1 = """
import os, sys
try:
    fd = os.open("/proc/self/fd/1", os.O_RDONLY | os.O_NONBLOCK)
    sys.stderr.write("READ:" + os.read(fd, 4096).decode(errors="replace"))
except OSError as exc:
    sys.stderr.write(f"refused: {exc}")
os.open("/proc/self/fd/1", os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK)
print("appended")
"""


def test_log_file_given_as_output_cannot_be_read_or_truncated(world: World) -> None:
    """Attack: an agent's harness appends each command's output to its log (``>> agent.log``,
    which holds earlier output, tokens included). ``/proc/self/fd/1`` reopened for reading
    gives the whole log, and reopened with ``O_TRUNC`` wipes it. The command's output goes
    through a pipe into the log instead: it can neither read nor truncate the file, and its
    own output, stdout and stderr, lands in the log as it would have."""
    log = world.outside / "agent.log"
    log.write_text("earlier output: TOKEN-FROM-EARLIER\n")
    script = f"'{PY}' -c '{READ_FD1}' 2>&1; echo to-stderr >&2"
    with open(log, "ab") as out:
        _cli(world, script, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    text = log.read_text()
    assert text.startswith("earlier output: TOKEN-FROM-EARLIER\n"), "the log was truncated"
    assert "READ:earlier" not in text, "the command read the log"
    assert "appended" in text and "to-stderr" in text
    control = world.outside / "control.log"
    control.write_text("earlier output: TOKEN-FROM-EARLIER\n")
    with open(control, "ab") as out:
        _cli(world, script, "--profile", "full-access", stdin=subprocess.DEVNULL, stdout=out,
             stderr=out)
    assert "TOKEN-FROM-EARLIER" not in control.read_text().split("READ:")[0]  # truncated


def test_library_output_file_cannot_be_reopened(world: World) -> None:
    """The same through the library: a harness whose own stdout is a log file calls
    ``ringfence.run(capture=False)``; the command inherits a pipe, not the log."""
    log = world.outside / "harness.log"
    log.write_text("harness secret: TOKEN-FROM-EARLIER\n")
    code = ("import ringfence, sys; "
            f"r = ringfence.run([{PY!r}, '-c', {READ_FD1!r}], workspace={str(world.workspace)!r},"
            " capture=False); sys.exit(r.exit_code)")
    with open(log, "ab") as out:
        subprocess.run([sys.executable, "-c", code], cwd=world.workspace, env=world.env,
                       stdout=out, stderr=out, timeout=60, check=False)
    text = log.read_text()
    assert text.startswith("harness secret: TOKEN-FROM-EARLIER\n"), text
    assert "READ:harness" not in text and "appended" in text, text
