"""The two ways a directory is covered: a read-only overlay of two empty directories (where the
host's bwrap and kernel can mount one in a user namespace) and a tmpfs remounted read-only (the
fallback, or with RINGFENCE_NO_OVERLAY=1). Missing protected directories and deny-read
directories must be equally closed both ways: each attack runs under both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import World


@pytest.fixture(params=["overlay", "tmpfs"])
def strategy(request: pytest.FixtureRequest, world: World) -> Iterator[str]:
    """Selects the strategy for every ringfence call in ``world`` and checks it took effect."""
    if request.param == "tmpfs":
        world.env["RINGFENCE_NO_OVERLAY"] = "1"
    argv = _argv(world)
    if request.param == "overlay":
        _skip_without_overlay(world)
        assert "--ro-overlay" in argv
    if request.param == "tmpfs":
        assert "--ro-overlay" not in argv and "--remount-ro" in argv
    yield request.param


def _skip_without_overlay(world: World) -> None:
    """Skip where the host probe (made by the first plan) found no overlay support."""
    _argv(world)
    record = world.home / ".local" / "state" / "ringfence" / "overlay-probe"
    if record.read_text().endswith("no\n"):
        pytest.skip("this host's bwrap or kernel cannot mount an overlay in a user namespace")


def _argv(world: World) -> list[str]:
    result = world.run("explain", "--json", "--", "true")
    assert result.returncode == 0, result.stderr
    argv: list[str] = json.loads(result.stdout)["argv"]
    return argv


@pytest.mark.parametrize("name", [".vscode", ".claude", ".git", ".idea"])
def test_fill_missing_protected_dir(world: World, strategy: str, name: str) -> None:
    """Write a file into a protected directory that does not exist yet (the placeholder)."""
    script = f"echo evil > {name}/planted || mkdir {name}/sub"
    assert world.sandbox(script).returncode != 0
    assert not (world.workspace / name).exists()
    assert world.unsandboxed(f"mkdir {name} && {script}").returncode == 0
    assert (world.workspace / name / "planted").exists()


def test_move_placeholder_away_and_replace(world: World, strategy: str) -> None:
    """Rename the placeholder out of the way, then create the real ``.vscode`` in its place."""
    script = "mv .vscode old && mkdir .vscode && echo '{}' > .vscode/tasks.json"
    assert world.sandbox(script).returncode != 0
    assert os.listdir(world.workspace) == []
    assert world.unsandboxed("mkdir .vscode && " + script).returncode == 0
    assert (world.workspace / ".vscode" / "tasks.json").exists()


def test_deny_read_dir_is_empty_and_closed(world: World, strategy: str) -> None:
    """List and read ``~/.ssh``, then try to plant a key in it."""
    script = "ls -A ~/.ssh; cat ~/.ssh/id_ed25519; echo planted > ~/.ssh/authorized_keys"
    result = world.sandbox(script)
    assert "FAKE-PRIVATE-KEY" not in result.stdout and "id_ed25519" not in result.stdout
    assert not (world.home / ".ssh" / "authorized_keys").exists()
    control = world.unsandboxed(script)
    assert "FAKE-PRIVATE-KEY" in control.stdout


def test_state_dir_hidden_with_its_own_empty_dirs(world: World, strategy: str) -> None:
    """The overlay's empty directories live in ringfence's state directory, which is itself
    covered: the sandbox sees neither them nor anything else there, and cannot write there."""
    state = world.home / ".local" / "state" / "ringfence"
    world.sandbox("true")
    script = f"ls -A {state}; touch {state}/x"
    result = world.sandbox(script)
    assert result.stdout.strip() == ""
    assert not (state / "x").exists()


def test_host_run_is_hidden_and_closed(world: World, strategy: str) -> None:
    """The host's /run (daemons' sockets and pid files: D-Bus, Docker, systemd, the user's
    runtime directory) is covered by an empty, read-only /run of the sandbox's own: list it,
    then try to create a socket's place in it. (Only attempted once the listing showed the
    cover, so a missing guard never writes into the host's /run.)"""
    host = sorted(os.listdir("/run"))
    assert host, "this host's /run is empty: nothing to hide"
    argv = _argv(world)
    if strategy == "overlay":  # nothing of /run kept: one mount, no remount
        assert argv[argv.index("/run") - 1] == "--ro-overlay"
    else:
        assert argv[argv.index("/run") - 1] == "--tmpfs" and "--remount-ro" in argv
    listing = world.sandbox("ls -A /run")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == []
    result = world.sandbox("mkdir /run/ringfence-escape || touch /run/ringfence-escape")
    assert result.returncode != 0
    assert "ringfence-escape" not in os.listdir("/run")
    control = world.unsandboxed("ls -A /run")
    assert sorted(control.stdout.split()) == host


def test_planted_file_in_empty_dir_refused(world: World) -> None:
    """Attack from the host side: a file put into the overlay's empty directory would appear
    inside every covered path, so ringfence refuses to run rather than show it."""
    _skip_without_overlay(world)
    lower = world.home / ".local" / "state" / "ringfence" / "empty" / "lower"
    lower.chmod(0o700)
    (lower / "tasks.json").write_text("{}\n")
    result = world.sandbox("ls -A .vscode")
    assert result.returncode == 125
    assert "should be empty" in result.stderr and "tasks.json" not in result.stdout


def test_probe_remembered_and_redone_for_another_bwrap(world: World) -> None:
    """The overlay probe runs once per kernel and bwrap binary; a stale record is redone."""
    record = world.home / ".local" / "state" / "ringfence" / "overlay-probe"
    _argv(world)
    first = record.read_text()
    assert first.endswith(("yes\n", "no\n"))
    record.write_text("some-other-kernel /old/bwrap 1 1\nyes\n")
    _argv(world)
    assert record.read_text() == first


def test_no_overlay_setting_changes_nothing_on_disk(world: World, tmp_path: Path) -> None:
    """RINGFENCE_NO_OVERLAY=1 uses tmpfs mounts and does not need the empty directories."""
    world.env["RINGFENCE_NO_OVERLAY"] = "1"
    assert world.sandbox("true").returncode == 0
    assert not (world.home / ".local" / "state" / "ringfence" / "empty").exists()
