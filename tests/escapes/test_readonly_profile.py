"""Attack: write anything at all under ``--profile read-only`` (for review and analysis runs).

Nothing of the host is writable, not even the workspace; the private /tmp still works (programs
need scratch space) and vanishes with the run. The control for each attack is the default
``workspace-write`` profile, where the same write to the workspace succeeds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.conftest import World

RO = ("--profile", "read-only")
# The interpreter itself, not a venv's symlink to it (a venv under /tmp is not visible inside).
PYTHON = os.path.realpath(sys.executable)


def test_write_workspace_file(world: World) -> None:
    """Create a new file in the workspace."""
    script = "echo PWNED > new.txt"
    assert world.sandbox(script, *RO).returncode != 0
    assert not (world.workspace / "new.txt").exists()
    assert world.sandbox(script).returncode == 0  # control: workspace-write allows it
    assert (world.workspace / "new.txt").read_text() == "PWNED\n"


def test_modify_delete_rename_workspace_file(world: World) -> None:
    """Change an existing workspace file: overwrite, append, truncate, chmod, rename, delete."""
    src = world.workspace / "main.py"
    src.write_text("print('hi')\n")
    os.chmod(src, 0o644)
    attacks = ["echo x > main.py", "echo x >> main.py", "truncate -s 0 main.py",
               "chmod 777 main.py", "mv main.py moved.py", "rm -f main.py", "mkdir subdir",
               "ln -s main.py link.py", "touch -d 2001-01-01 main.py"]
    script = "\n".join(f"( {a} ) 2>/dev/null && echo 'ESCAPED: {a}'" for a in attacks)
    before = os.stat(src)
    result = world.sandbox(script, *RO)
    assert "ESCAPED" not in result.stdout, result.stdout
    after = os.stat(src)
    assert src.read_text() == "print('hi')\n"
    assert (after.st_mode, after.st_mtime_ns, after.st_ino) == (
        before.st_mode, before.st_mtime_ns, before.st_ino)
    assert sorted(os.listdir(world.workspace)) == ["main.py"]
    control = world.sandbox(script)
    assert control.stdout.count("ESCAPED") == len(attacks), control.stdout


def test_python_write_workspace(world: World) -> None:
    """The same from Python (``open(..., 'w')``), which is how most tools write."""
    code = "open('out.bin', 'wb').write(b'x')"
    result = world.run("run", *RO, "--", PYTHON, "-c", code)
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert not (world.workspace / "out.bin").exists()
    assert world.run("run", "--", PYTHON, "-c", code).returncode == 0
    assert (world.workspace / "out.bin").read_bytes() == b"x"


def test_write_outside_still_refused(world: World) -> None:
    """Read-only is no wider than the default: outside files stay untouched too."""
    target = world.outside / "target.txt"
    script = f"cat '{target}' && echo PWNED > '{target}'"
    result = world.sandbox(script, *RO)
    assert result.stdout == "ORIGINAL\n", result.stderr
    assert result.returncode != 0
    assert target.read_text() == "ORIGINAL\n"
    assert world.unsandboxed(script).returncode == 0


def test_private_tmp_works(world: World) -> None:
    """/tmp is a private, writable tmpfs even under read-only; nothing written there reaches
    the host's /tmp."""
    name = f"ringfence-ro-{os.getpid()}-{id(world)}"
    script = f"echo scratch > /tmp/{name} && cat /tmp/{name} && mkdir /tmp/{name}.d"
    result = world.sandbox(script, *RO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "scratch\n"
    assert not os.path.exists(f"/tmp/{name}")
    assert not os.path.exists(f"/tmp/{name}.d")


def test_tools_that_need_scratch_space_work(world: World) -> None:
    """A tool that writes temporary files (Python's tempfile) runs under read-only."""
    code = ("import tempfile\n"
            "with tempfile.NamedTemporaryFile('w+') as f:\n"
            "    f.write('ok'); f.seek(0); print(f.read(), f.name.startswith('/tmp/'))")
    result = world.run("run", *RO, "--", PYTHON, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok True\n"


def test_workspace_under_host_tmp(world: World) -> None:
    """A workspace in the host's /tmp (a common place for a quick experiment): read-only must
    still show it (readable, not writable) rather than fail to start."""
    workspace = Path(tempfile.mkdtemp(prefix="ringfence-ro-ws-", dir="/tmp"))
    try:
        (workspace / "data.txt").write_text("DATA\n")
        script = "cat data.txt && echo PWNED > data.txt"
        result = world.sandbox(script, *RO, cwd=workspace)
        assert result.stdout == "DATA\n", result.stderr
        assert result.returncode != 0
        assert (workspace / "data.txt").read_text() == "DATA\n"
        assert world.sandbox(script, cwd=workspace).returncode == 0  # control: workspace-write
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
