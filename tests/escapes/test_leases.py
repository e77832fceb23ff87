"""Attack: stall the host's programs with a file lease taken from inside the sandbox.

A lease (``fcntl(fd, F_SETLEASE, ...)``) makes every other process that opens the file wait until
the holder lets go or the kernel's lease-break-time (45 s by default) runs out; the holder may
then take it again. A *write* lease can be taken through a read-only descriptor on any file the
caller owns that nobody has open, and the sandbox can read (so open) almost every file of the
user. So a command could take one on ``~/.gitconfig`` and every ``git`` on the host would hang
45 s at a time while the command (or a session) lives; as root, on ``/etc/passwd`` or
``/etc/ld.so.cache``, every program on the machine. Leases are on the file, not on the mount: the
read-only bind does not stop them. seccomp refuses ``F_SETLEASE``.

The target is a file the test creates outside the workspace. The host side opens it with
``O_NONBLOCK``, which fails at once with EWOULDBLOCK where a lease is in the way (instead of
waiting the 45 s), so the test is quick.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from tests.conftest import World

pytestmark = pytest.mark.escape

# Take a write lease on argv[1] through a read-only descriptor, say whether it worked, and hold
# it until stdin closes.
HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)  # F_SETLEASE
    print("LEASED", flush=True)
except OSError as exc:
    print("REFUSED", exc.errno, flush=True)
sys.stdin.read()
"""


def _host_open_waits(world: World, *options: str) -> tuple[str, bool]:
    """What the command said, and whether the host's open of the target met a lease."""
    target = world.outside / "target.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "run", "--max-processes", "0", *options, "--",
         sys.executable, "-c", HOLD, str(target)],
        cwd=world.workspace, env=world.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        said = proc.stdout.readline().strip()
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.EWOULDBLOCK, exc
            blocked = True
        else:
            os.close(fd)
            blocked = False
        proc.stdin.close()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return said, blocked


def test_a_lease_on_a_host_file_is_refused(world: World) -> None:
    said, blocked = _host_open_waits(world)
    assert said == f"REFUSED {errno.EPERM}", said
    assert not blocked


def test_control_a_lease_stalls_the_host_without_the_guard(world: World) -> None:
    """The same command unsandboxed: the host's open of the file meets the lease."""
    said, blocked = _host_open_waits(world, "--profile", "full-access")
    assert said == "LEASED", said
    assert blocked
