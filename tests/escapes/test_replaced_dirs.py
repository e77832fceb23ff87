"""Attack: secrets and ringfence's own files inside a root that lies under /tmp (or /var/tmp,
/run), the directories the sandbox replaces with its own.

The planner dropped every deny-read path under those directories, reasoning that nothing there
is visible inside. But a writable root under /tmp is bound back in, and with it everything below
it: with ``HOME`` under /tmp (a harness's scratch home, a CI container) and the workspace at
``HOME`` the command read ``~/.ssh``, wrote ringfence's own config (the next run obeyed it) and
appended to the audit log; a user's ``deny_read`` inside a workspace under /tmp was ignored.
Now a deny-read path inside a root the sandbox shows is hidden wherever that root lies.

The other escape tests refuse a test root under /tmp (they would pass for the wrong reason);
these build their fake home there on purpose, and remove it afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import World, remove_world

pytestmark = [pytest.mark.escape,
              pytest.mark.skipif(sys.platform != "linux", reason="the Linux sandbox")]


@pytest.fixture
def tmp_world() -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="ringfence-test-", dir="/tmp"))
    try:
        yield World(base)
    finally:
        remove_world(base)


def _home_run(world: World, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    return world.run("run", "--workspace", str(world.home), "--max-processes", "0", *options,
                     "--", "/bin/sh", "-c", script, cwd=world.home)


def test_ssh_key_under_a_home_in_tmp(tmp_world: World) -> None:
    """``HOME=/tmp/…``, workspace ``~``: ``cat ~/.ssh/id_ed25519`` finds nothing."""
    script = "cat ~/.ssh/id_ed25519"
    result = _home_run(tmp_world, script)
    assert "FAKE-PRIVATE-KEY" not in result.stdout + result.stderr
    control = _home_run(tmp_world, script, "--profile", "full-access")
    assert "FAKE-PRIVATE-KEY" in control.stdout, control.stderr


def test_own_config_and_audit_log_under_a_home_in_tmp(tmp_world: World) -> None:
    """``HOME=/tmp/…``, workspace ``~``: the command cannot write ringfence's config (which
    would make the next run full-access) nor append to the audit log."""
    world = tmp_world
    assert _home_run(world, "true").returncode == 0  # makes the config and state directories
    config = world.home / ".config" / "ringfence" / "config.toml"
    log = world.home / ".local" / "state" / "ringfence" / "audit" / "audit.jsonl"
    assert config.parent.is_dir() and log.is_file()
    before = log.read_bytes()
    _home_run(world, f"echo 'profile = \"full-access\"' >> '{config}'; echo junk >> '{log}'")
    assert not config.exists()
    lines = log.read_bytes().splitlines()
    assert log.read_bytes().startswith(before) and b"junk" not in lines
    verify = world.run("audit", "verify", cwd=world.home)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_user_deny_read_inside_a_workspace_in_tmp(tmp_world: World) -> None:
    """A workspace under /tmp with ``deny_read = [its secrets/]`` in the user's policy file:
    ``cat secrets/key`` finds nothing."""
    world = tmp_world
    (world.workspace / "secrets").mkdir()
    (world.workspace / "secrets" / "key").write_text("FAKE-WORKSPACE-SECRET\n")
    policy = world.base / "policy.toml"
    policy.write_text(f'[filesystem]\ndeny_read = ["{world.workspace / "secrets"}"]\n')
    result = world.sandbox("cat secrets/key", "--policy", str(policy), "--max-processes", "0")
    assert "FAKE-WORKSPACE-SECRET" not in result.stdout + result.stderr
    control = world.unsandboxed("cat secrets/key")
    assert "FAKE-WORKSPACE-SECRET" in control.stdout
