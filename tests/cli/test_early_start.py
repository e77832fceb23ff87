"""``ringfence run`` starts building the sandbox before approvals have decided
(``ringfence.cli._Early``), so that the decision overlaps bubblewrap's work. These tests hold it
to what that must never change: the command runs only after the decision, a refused command
leaves no process, placeholder or message behind, and a question waits with no sandbox built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.approval.test_cli import REFUSED, on_pty, rf, rf_argv
from tests.conftest import World

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bubblewrap's early start")


def sandboxes_for(workspace: Path) -> list[int]:
    """Live processes whose command line names ``workspace`` (bubblewrap binds it and
    changes into it; nothing else in a test names it)."""
    needle = os.fsencode(workspace)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in argv and state != b"Z":
            found.append(int(name))
    return found


def test_a_refused_command_never_runs_and_leaves_nothing(world: World) -> None:
    """The attack: approvals refuse a command whose sandbox was already being built; the
    sandbox is released anyway, or left to go on by itself once ringfence has exited. Here
    the refused command would create a file in the workspace. Also: the early sandbox's
    placeholders are gone and bubblewrap, killed quietly, printed nothing."""
    (world.workspace / ".ringfence.toml").write_text(
        '[[rules]]\nprefix = ["touch"]\ndecision = "forbid"\n')
    before = sorted(os.listdir(world.workspace))
    r = rf(world, "run", "--", "touch", "made")
    assert r.returncode == REFUSED, r.stderr
    assert r.stderr.count("\n") == 1 and "forbidden" in r.stderr, r.stderr
    assert not (world.workspace / "made").exists()
    assert sandboxes_for(world.workspace) == []
    assert sorted(os.listdir(world.workspace)) == before
    # the same command, allowed, runs (the test above would pass if nothing ever ran)
    (world.workspace / ".ringfence.toml").write_text("")
    assert rf(world, "run", "--", "touch", "made").returncode == 0
    assert (world.workspace / "made").exists()


def test_refused_for_want_of_a_terminal_leaves_nothing(world: World) -> None:
    """As above, for a command that asks and has no one to ask: refused before any question,
    with the sandbox built ahead of the decision ended unreleased."""
    before = sorted(os.listdir(world.workspace))
    r = rf(world, "run", "--", "sh", "-c", "eval touch made")
    assert r.returncode == REFUSED and "no terminal to ask on" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert not (world.workspace / "made").exists()
    assert sandboxes_for(world.workspace) == []
    assert sorted(os.listdir(world.workspace)) == before


def test_no_sandbox_waits_built_while_a_question_is_asked(world: World) -> None:
    """A question can wait minutes for a person. The sandbox built ahead of the decision is
    ended before asking (its placeholders would sit in the workspace, seen by the user's
    editor, and the command must not be a step from running); it is built again after the
    answer, and the command runs then."""
    before = sorted(os.listdir(world.workspace))
    seen: dict[str, object] = {}

    def at_question() -> None:
        seen["sandboxes"] = sandboxes_for(world.workspace)
        seen["listing"] = sorted(os.listdir(world.workspace))
        seen["ran"] = (world.workspace / "made").exists()

    code, shown = on_pty(world, rf_argv("run", "--", "sh", "-c", "eval touch made"), [b"o\n"],
                         at_question=at_question)
    assert code == 0, shown
    assert seen == {"sandboxes": [], "listing": before, "ran": False}, seen
    assert (world.workspace / "made").exists()
    assert sorted(os.listdir(world.workspace)) == sorted([*before, "made"])


def test_json_output_with_the_early_start(world: World) -> None:
    """With ``--json`` the command's stdout goes to stderr and stdout holds only the JSON,
    also when the sandbox was started before the decision."""
    r = rf(world, "run", "--json", "--", "sh", "-c", "echo to-$((6*7))")
    assert r.returncode == 0, r.stderr
    assert "to-42" in r.stderr and "to-42" not in r.stdout
    assert r.stdout.lstrip().startswith("{") and '"exit_code": 0' in r.stdout


def test_a_file_on_stdin_is_not_read_before_the_decision(world: World) -> None:
    """Found in review: with a regular file as standard input, the stream guard copies it into
    a pipe from the spawn on; when approvals then refused the command (or asked, or an
    escalation made the plan again), what the copy had read was gone, and whatever read the
    file next (the approved command after a question, the next command of a script) got it
    truncated. The early start is skipped when standard input is a file."""
    data = world.outside / "input.txt"
    data.write_bytes(b"x" * 400_000)
    (world.workspace / ".ringfence.toml").write_text(
        '[[rules]]\nprefix = ["wc"]\ndecision = "forbid"\n')
    script = (f"{sys.executable} -m ringfence run -- wc -c; "
              "python3 -c 'import sys; print(len(sys.stdin.buffer.read()))'")
    with data.open("rb") as fh:
        result = subprocess.run(["/bin/sh", "-c", script], stdin=fh, cwd=world.workspace,
                                env=world.env, capture_output=True, text=True, timeout=60,
                                start_new_session=True)
    assert "forbidden" in result.stderr, result.stderr
    assert result.stdout.split() == ["400000"], result.stdout


def test_a_plan_made_before_a_question_is_not_used_after_it(world: World) -> None:
    """Found in review: the plan made before a question (which can wait minutes) was used
    after the answer. A repository that appeared meanwhile (the user ran ``git init sub``) was
    not protected: the approved command wrote its hooks, which run on the host. A question
    now means planning afresh."""
    sub = world.workspace / "sub"

    def at_question() -> None:
        subprocess.run(["git", "init", "-q", str(sub)], check=True,
                       env={**os.environ, **world.env})

    attack = "eval 'echo evil > sub/.git/hooks/pre-commit'"
    code, shown = on_pty(world, rf_argv("run", "--", "sh", "-c", attack), [b"o\n"],
                         at_question=at_question)
    assert "approve this command?" in shown
    assert not (sub / ".git" / "hooks" / "pre-commit").exists(), shown
    assert code != 0


def test_sigterm_during_the_decision_takes_the_placeholders_away(world: World) -> None:
    """Found in review: a SIGTERM (an agent harness stopping a command) while approvals were
    deciding killed ringfence at once, with the early sandbox's placeholders (``.vscode``,
    ``.agents``, ``HEAD`` …) left in the workspace. Here the decision waits on the audit log's
    lock, which the test holds, and the SIGTERM comes then."""
    import fcntl
    import signal
    import time

    before = sorted(os.listdir(world.workspace))
    audit = Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "audit"
    audit.mkdir(parents=True)
    lock = os.open(audit / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen(rf_argv("run", "--", "touch", "made"), cwd=world.workspace,
                                env=world.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 20
        while sorted(os.listdir(world.workspace)) == before:  # the early sandbox is up
            assert time.monotonic() < deadline, "no placeholders appeared"
            time.sleep(0.01)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        os.close(lock)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not (world.workspace / "made").exists()
    assert sorted(os.listdir(world.workspace)) == before
    assert sandboxes_for(world.workspace) == []
