"""``ringfence run`` starts building the sandbox before approvals have decided
(``ringfence.cli._Early``), so that the decision overlaps bubblewrap's work. These tests hold it
to what that must never change: the command runs only after the decision, a refused command
leaves no process, placeholder or message behind, and a question waits with no sandbox built."""

from __future__ import annotations

import os
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
