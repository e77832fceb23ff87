"""The Landlock fallback end to end, through the library, where user namespaces "are missing".

The host here allows user namespaces, so the tests make ringfence believe they are disabled
(the sysctl check is the one thing patched); everything after that is real: the plan, the
fallback launcher, Landlock, seccomp and rlimits on the real kernel.
"""

from __future__ import annotations

import sys

import pytest
from tests.conftest import World

import ringfence
from ringfence.backends import _landlock, linux
from ringfence.errors import UnavailableError

pytestmark = pytest.mark.skipif(_landlock.abi_version() < 1, reason="no Landlock here")


@pytest.fixture
def no_userns(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(linux, "_userns_status",
                        lambda uid: "user namespaces are disabled (test)")
    return world


def run(world: World, script: str, **policy: object) -> ringfence.Result:
    pol = ringfence.Policy(workspace=str(world.workspace), fallback="landlock",
                           limits=ringfence.Limits(max_processes=0), **policy)
    return ringfence.run(["/bin/sh", "-c", script], pol)


def test_refuses_without_the_opt_in(no_userns: World) -> None:
    """Fail closed: with namespaces missing and no opt-in, nothing runs; the error says why and
    names the option that accepts the weaker mode."""
    pol = ringfence.Policy(workspace=str(no_userns.workspace))
    marker = no_userns.workspace / "ran"
    with pytest.raises(UnavailableError, match="--fallback landlock"):
        ringfence.run(["/bin/sh", "-c", f"touch '{marker}'"], pol)
    assert not marker.exists()


def test_runs_in_landlock_mode_and_says_what_is_weaker(no_userns: World) -> None:
    (no_userns.workspace / "notes.txt").write_text("old\n")
    result = run(no_userns, "echo new > notes.txt && cat notes.txt")
    assert result.exit_code == 0, result.stderr
    assert result.mode == "landlock"
    assert result.weaker and any("namespace" in w for w in result.weaker)
    assert (no_userns.workspace / "notes.txt").read_text() == "new\n"


def test_write_outside_is_refused(no_userns: World) -> None:
    """The command overwrites a file next to the workspace."""
    target = no_userns.outside / "target.txt"
    result = run(no_userns, f"echo PWNED > '{target}'")
    assert result.exit_code != 0
    assert target.read_text() == "ORIGINAL\n"
    control = run(no_userns, f"echo PWNED > '{target}'", profile="full-access")
    assert control.exit_code == 0 and target.read_text() == "PWNED\n"


def test_secrets_are_unreadable(no_userns: World) -> None:
    """The command reads the fake ~/.ssh key."""
    key = no_userns.home / ".ssh" / "id_ed25519"
    result = run(no_userns, f"cat '{key}'")
    assert result.exit_code != 0
    assert b"FAKE-PRIVATE-KEY" not in (result.stdout or b"")
    control = run(no_userns, f"cat '{key}'", profile="full-access")
    assert b"FAKE-PRIVATE-KEY" in (control.stdout or b"")


def test_protected_hook_cannot_be_written(no_userns: World) -> None:
    """The command plants a git hook the host would run."""
    no_userns.git_init()
    hook = no_userns.workspace / ".git" / "hooks" / "pre-commit"
    result = run(no_userns, f"echo evil > '{hook}'")
    assert result.exit_code != 0
    assert not hook.exists()


def test_network_is_off(no_userns: World) -> None:
    """The command opens an internet socket."""
    code = "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)"
    result = run(no_userns, f"'{sys.executable}' -c '{code}'")
    assert result.exit_code != 0
    control = run(no_userns, f"'{sys.executable}' -c '{code}'", network="on")
    assert control.exit_code == 0, control.stderr


def test_the_cli_reports_the_mode(no_userns: World, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--json says which mode ran, so an agent knows it got less."""
    import json

    from ringfence.cli import main

    monkeypatch.chdir(no_userns.workspace)
    code = main(["run", "--fallback", "landlock", "--max-processes", "0", "--json", "--",
                 "/bin/true"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["mode"] == "landlock" and report["weaker"]


def test_project_loader_variables_do_not_reach_the_launcher(
        no_userns: World, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the repository's ``.ringfence.toml`` sets ``[environment] set = { LD_DEBUG,
    LD_DEBUG_OUTPUT }`` (it could as well set ``LD_PRELOAD`` to a library it ships). The
    fallback launcher is an interpreter that runs on the host until Landlock applies; started
    with the command's environment, its loader acted on them outside the sandbox (here: wrote
    ``outside/loader.<pid>``). Now it starts without them and the command gets them inside."""
    import os
    import subprocess

    from ringfence.cli import main

    prefix = str(no_userns.outside / "loader")
    (no_userns.workspace / ".ringfence.toml").write_text(
        f'[environment]\nset = {{ LD_DEBUG = "files", LD_DEBUG_OUTPUT = "{prefix}" }}\n')

    def written() -> list[str]:
        return [p.name for p in no_userns.outside.iterdir() if p.name.startswith("loader")]

    # control: a program started with them outside any sandbox writes the file
    subprocess.run(["/bin/true"], env={"LD_DEBUG": "files", "LD_DEBUG_OUTPUT": prefix},
                   check=True)
    if not written():
        pytest.skip("this C library does not act on LD_DEBUG_OUTPUT")
    for name in written():
        os.unlink(no_userns.outside / name)
    monkeypatch.chdir(no_userns.workspace)
    code = main(["run", "--fallback", "landlock", "--max-processes", "0", "--",
                 "/bin/sh", "-c", 'printf "<%s>" "$LD_DEBUG"'])
    out = capfd.readouterr().out
    assert code == 0 and out.endswith("<files>")
    assert written() == []


def test_deny_read_inside_a_workspace_under_tmp(no_userns: World) -> None:
    """Attack: a workspace under /tmp with a deny-read directory inside it. The planner
    dropped deny-read paths under /tmp (the bubblewrap mode's /tmp is a fresh one), but the
    Landlock rules grant the whole workspace, /tmp or not: ``cat secrets/key`` read it."""
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="ringfence-test-", dir="/tmp"))
    try:
        (base / "secrets").mkdir()
        (base / "secrets" / "key").write_text("FAKE-TMP-SECRET\n")
        pol = ringfence.Policy(workspace=str(base), fallback="landlock",
                               deny_read=(str(base / "secrets"),),
                               limits=ringfence.Limits(max_processes=0))
        result = ringfence.run(["/bin/sh", "-c", "cat secrets/key"], pol)
        assert result.mode == "landlock"
        assert b"FAKE-TMP-SECRET" not in result.stdout + result.stderr
        control = ringfence.run(["/bin/sh", "-c", "cat secrets/key"],
                                pol.replace(profile="full-access"))
        assert b"FAKE-TMP-SECRET" in control.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


TRUNCATE = ("import os\ntry:\n    os.ftruncate(1, 0)\nexcept OSError:\n    pass\n"
            "os.write(1, b'appended\\n')\n")


def _cli_into_log(world: World, monkeypatch: pytest.MonkeyPatch, *options: str) -> str:
    """``ringfence run ... >> outside/build.log`` in this process; the log's content after."""
    import os

    from ringfence.cli import main

    log = world.outside / "build.log"
    log.write_text("EARLIER LINES\n")
    monkeypatch.chdir(world.workspace)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    saved = os.dup(1)
    os.dup2(fd, 1)
    os.close(fd)
    try:
        code = main(["run", "--fallback", "landlock", "--max-processes", "0", *options, "--",
                     sys.executable, "-c", TRUNCATE])
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert code == 0
    return log.read_text()


def test_a_log_given_as_standard_output_cannot_be_truncated(
        no_userns: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the caller appends the command's output to a log outside the workspace
    (``ringfence run ... >> ~/build.log``). Landlock refuses to reopen it for writing through
    /proc/self/fd, but its truncate right is checked only when a file is opened, so the command
    could ``ftruncate`` the descriptor it was handed and empty the log. A standard stream that
    is a file now reaches the command as a pipe in this mode too, as in the bubblewrap mode."""
    assert _cli_into_log(no_userns, monkeypatch) == "EARLIER LINES\nappended\n"
    # control: given the file itself (no sandbox), the command empties the log
    assert _cli_into_log(no_userns, monkeypatch, "--profile", "full-access") == "appended\n"
