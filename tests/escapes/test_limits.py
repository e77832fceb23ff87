"""Attack: exhaust the machine (processes, memory, CPU, disk, the caller's memory via output).

Every attack is bounded so the test itself stays fast and the host stays responsive even when a
limit fails: the fork loop stops at a fixed count and kills what it made, allocations are a few
hundred MB, loops end by themselves. The controls run the same thing without the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import IS_ROOT, World

import ringfence

PY = os.path.realpath(sys.executable)


def py(world: World, code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return world.run("run", *options, "--", PY, "-c", code)


FORK_LOOP = """
import os, signal, sys, time
want = int(sys.argv[1])
children = []
for _ in range(want):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
print(len(children), flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
for pid in children:
    os.waitpid(pid, 0)
"""


def test_fork_bomb_is_capped(world: World) -> None:
    """A fork bomb (bounded here at 300 forks of sleeping children): with
    ``--max-processes 50`` fewer than 100 succeed, every child is gone afterwards, and the
    whole test takes seconds."""
    start = time.monotonic()
    result = world.run("run", "--max-processes", "50", "--json", "--", PY, "-c", FORK_LOOP,
                       "300")
    assert time.monotonic() - start < 30
    assert result.returncode == 0, result.stderr
    made = int(result.stderr.split()[0])  # with --json the command's stdout goes to stderr
    assert 0 < made < 100, made
    report = json.loads(result.stdout)
    if IS_ROOT:  # root's limit is a pids cgroup, which reports when it refused a fork
        assert "max_processes" in report["limits_hit"]
    control = world.run("run", "--", PY, "-c", FORK_LOOP, "300")
    assert control.returncode == 0, control.stderr
    assert int(control.stdout) == 300


ALLOCATE = """
try:
    block = bytearray(400 << 20)
    block[::4096] = b"x" * len(block[::4096])
    print("ALLOCATED", len(block) >> 20)
except MemoryError:
    print("MemoryError")
"""


def test_memory_limit(world: World) -> None:
    """The command allocates 400 MB under ``--memory 100M``: the allocation fails
    (MemoryError) instead of pushing the host into swap or the OOM killer."""
    result = py(world, ALLOCATE, "--memory", "100M")
    assert result.stdout.strip() == "MemoryError", result.stdout + result.stderr
    control = py(world, ALLOCATE)
    assert control.stdout.strip() == "ALLOCATED 400", control.stdout + control.stderr


# Spins until it has used 1.6 s of CPU (not wall time: on a loaded machine a wall-clock loop
# would get less than a second of CPU and finish before the limit); a wall cap keeps it finite.
BUSY = """
import time
wall = time.monotonic() + 60
while time.process_time() < 1.6 and time.monotonic() < wall:
    pass
print("FINISHED")
"""


def _policy(world: World, text: str) -> Path:
    path = world.outside / "limits.toml"
    path.write_text(text)
    return path


def test_cpu_seconds(world: World) -> None:
    """A busy loop (1.6 s of CPU) under ``[limits] cpu_seconds = 1`` is killed by SIGXCPU
    after about a second: exit 128+24, and ``--json`` names the limit."""
    policy = _policy(world, "[limits]\ncpu_seconds = 1\n")
    result = world.run("run", "--policy", str(policy), "--json", "--", PY, "-c", BUSY)
    assert result.returncode == 128 + 24, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == 128 + 24
    assert "cpu" in report["limits_hit"]
    control = py(world, BUSY)
    assert (control.returncode, control.stdout.strip()) == (0, "FINISHED")


FILL = "head -c 2097152 /dev/zero > big.bin"


def test_file_size(world: World) -> None:
    """The command writes a 2 MB file under ``[limits] file_size = "1M"`` (filling the disk):
    the write fails at 1 MB and the file is no larger."""
    policy = _policy(world, '[limits]\nfile_size = "1M"\n')
    result = world.sandbox(FILL, "--policy", str(policy))
    assert result.returncode != 0
    assert (world.workspace / "big.bin").stat().st_size <= 1 << 20
    control = world.sandbox(FILL)
    assert control.returncode == 0, control.stderr
    assert (world.workspace / "big.bin").stat().st_size == 2 << 20


def test_file_size_is_reported(world: World) -> None:
    """Past ``file_size`` the command is stopped by SIGXFSZ: exit 128+25, and ``--json``
    names the limit."""
    policy = _policy(world, '[limits]\nfile_size = "1M"\n')
    result = world.sandbox(FILL, "--policy", str(policy), "--json")
    assert result.returncode == 128 + 25, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == 128 + 25
    assert "file_size" in report["limits_hit"]


def test_output_cap_in_the_library(in_world: World) -> None:
    """The command prints 1 MB to make the caller (an agent keeping the output in memory or
    in its context) hold it all: the library keeps ``limits.output`` bytes and says so."""
    world = in_world
    policy = ringfence.Policy(workspace=str(world.workspace),
                              limits=ringfence.Limits(output=1000))
    code = "import sys; sys.stdout.write('x' * (1 << 20)); sys.stderr.write('e' * 5000)"
    result = ringfence.run([PY, "-c", code], policy)
    assert result.exit_code == 0
    assert result.stdout == b"x" * 1000
    assert result.stderr == b"e" * 1000
    assert "output" in result.limits_hit
    control = ringfence.run([PY, "-c", code], policy.replace(limits=ringfence.Limits()))
    assert control.stdout is not None and len(control.stdout) == 1 << 20
    assert "output" not in control.limits_hit


def test_file_size_in_the_library(in_world: World) -> None:
    """The same disk-filling write through the library: SIGXFSZ at 1 MB, exit 128+25,
    ``file_size`` in limits_hit."""
    world = in_world
    policy = ringfence.Policy(workspace=str(world.workspace),
                              limits=ringfence.Limits(file_size=1 << 20))
    result = ringfence.run(["/bin/sh", "-c", FILL], policy)
    assert result.exit_code == 128 + 25, result.stderr
    assert "file_size" in result.limits_hit
    assert (world.workspace / "big.bin").stat().st_size <= 1 << 20
    control = ringfence.run(["/bin/sh", "-c", FILL], policy.replace(limits=ringfence.Limits()))
    assert control.exit_code == 0, control.stderr
    assert (world.workspace / "big.bin").stat().st_size == 2 << 20


def test_private_tmp_is_bounded(world: World) -> None:
    """The command fills /tmp to exhaust the machine's memory (tmpfs lives in RAM)."""
    policy = world.base / "tmp-size.toml"
    policy.write_text('[limits]\ntmp_size = "1M"\n')
    script = "dd if=/dev/zero of=/tmp/fill bs=1M count=4 2>/dev/null"
    assert world.sandbox(script, "--policy", str(policy)).returncode != 0
    assert world.sandbox(script).returncode == 0  # control: the default size lets it through


def test_dev_and_shared_memory_are_bounded(world: World) -> None:
    """The command fills ``/dev/shm`` (POSIX shared memory) or writes a file anywhere in
    ``/dev`` to exhaust the machine's memory: bubblewrap's ``/dev`` is a tmpfs of half the RAM,
    with ``/dev/shm`` a plain directory in it, and neither was bounded by ``tmp_size``.
    ``/dev/shm`` is now its own tmpfs of ``tmp_size`` and the rest of ``/dev`` is read-only
    (its device nodes still work). The control: the default size takes the 4 MB."""
    policy = world.base / "tmp-size.toml"
    policy.write_text('[limits]\ntmp_size = "1M"\n')
    fill = "head -c 4000000 /dev/zero > /dev/shm/fill"
    assert world.sandbox(fill, "--policy", str(policy)).returncode != 0
    assert world.sandbox(fill).returncode == 0
    result = world.sandbox("echo x > /dev/planted || exit 3; echo ok > /dev/null")
    assert result.returncode == 3, result.stderr
