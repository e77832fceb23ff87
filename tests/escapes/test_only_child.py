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
