"""The command line's approvals: ``check``, ``rules test``, asking on a terminal (a real pty),
refusing without one, escalation options and the on-failure retry."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ringfence.approval.gate import ApprovalRequest
from ringfence.approval.model import Decision
from ringfence.approval.prompt import screen, visible
from tests.conftest import World

REFUSED = 122


def rf(world: World, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``ringfence ARGS`` with no controlling terminal (a new session), stdin from /dev/null."""
    return subprocess.run([sys.executable, "-m", "ringfence", *args], cwd=cwd or world.workspace,
                          env=world.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def audit_lines(world: World) -> list[dict[str, object]]:
    path = Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def on_pty(world: World, argv: list[str], answers: list[bytes],
           timeout: float = 60, at_question: Callable[[], None] | None = None,
           ) -> tuple[int, str]:
    """Run ``argv`` with a pty as its controlling terminal; each time a question ends with
    ``answer [``, call ``at_question`` (while the question waits) and type the next answer.
    Returns (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        try:
            os.chdir(world.workspace)
            os.execve(argv[0], argv, world.env)
        finally:
            os._exit(127)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    asked = 0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break  # EIO: the child side closed
            if not chunk:
                break
            seen += chunk
            if seen.count(b"answer [") > asked and pending:
                asked += 1
                if at_question is not None:
                    at_question()
                os.write(fd, pending.pop(0))
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def rf_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ringfence", *args]


# --- check ----------------------------------------------------------------------------------

def test_check_prints_decision_and_rule(world: World) -> None:
    r = rf(world, "check", "--", "git", "push", "--force")
    assert r.returncode == 1, r.stderr
    assert "decision: ask" in r.stdout and "builtin:git (git push force)" in r.stdout
    assert rf(world, "check", "--", "ls", "-la").returncode == 0
    r = rf(world, "check", "--approval-mode", "never", "--", "sudo", "id")
    assert r.returncode == 2 and "decision: forbid" in r.stdout


def test_check_shell_json(world: World) -> None:
    r = rf(world, "check", "--json", "--shell", "ls | grep x && curl -s x | sh")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["decision"] == "ask" and data["rule"] == "builtin:download-to-interpreter"
    assert data["command"] == "ls | grep x && curl -s x | sh"
    assert ["grep", "x"] in [p["command"] for p in data["parts"]]


def test_check_says_which_words_are_only_known_at_run_time(world: World) -> None:
    """A word the shell decides when it runs ($X, a glob) matches no rule's literal word, so
    neither "session" nor "always" is offered for it: check says so, in text and JSON."""
    r = rf(world, "check", "--json", "--shell", 'rm -rf "$X"/build')
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["run_time"] == ['"$X"/build'] and data["always_ok"] is False, data
    r = rf(world, "check", "--shell", 'rm -rf "$X"/build')
    assert 'run time: `"$X"/build`' in r.stdout, r.stdout
    data = json.loads(rf(world, "check", "--json", "--", "ls").stdout)
    assert data["run_time"] == [] and data["always_ok"] is True


def test_check_runs_nothing_and_records_nothing(world: World) -> None:
    r = rf(world, "check", "--", "sh", "-c", "touch made")
    assert r.returncode == 0
    assert not (world.workspace / "made").exists()
    assert not (Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "audit").exists()


def test_check_escalation(world: World) -> None:
    r = rf(world, "check", "--escalate", "network", "--justification", "fetch deps", "--",
           "npm", "ci")
    assert r.returncode == 1
    assert "gets:     network access" in r.stdout and "fetch deps" in r.stdout
    bad = rf(world, "check", "--escalate", "root", "--", "x")
    assert bad.returncode == 125 and "use network, no-sandbox or writable:DIR" in bad.stderr


# --- rules test -----------------------------------------------------------------------------

def test_rules_test_file(world: World) -> None:
    good = world.outside / "good.toml"
    good.write_text('[[rules]]\nprefix = ["git", "push"]\ndecision = "ask"\n'
                    'match = ["git push"]\nnot_match = ["git pull"]\n')
    r = rf(world, "rules", "test", str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rules, 2 examples" in r.stdout
    bad = world.outside / "bad.toml"
    bad.write_text('[[rules]]\nname = "push"\nprefix = ["git", "push"]\ndecision = "ask"\n'
                   'match = ["git pull"]\n')
    r = rf(world, "rules", "test", str(bad))
    assert r.returncode == 1
    assert "rule 'push': match example 'git pull' does not match" in r.stdout


def test_rules_test_default_files(world: World) -> None:
    cfg = world.home / ".config" / "ringfence" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[[rules]]\nprefix = ["make"]\ndecision = "allow"\nmatch = ["make all"]\n')
    r = rf(world, "rules", "test")
    assert r.returncode == 0 and "1 rules checked" in r.stdout, r.stdout


def test_a_broken_rule_stops_run_with_one_line(world: World) -> None:
    (world.workspace / ".ringfence.toml").write_text(
        '[[rules]]\nprefix = ["curl"]\ndecision = "forbid"\nmatch = ["wget x"]\n')
    r = rf(world, "run", "--", "true")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "rule #1: match example 'wget x'" in r.stderr


# --- refusing without a terminal ------------------------------------------------------------

def test_no_terminal_refuses_naming_the_option(world: World) -> None:
    r = rf(world, "run", "--", "sh", "-c", "eval echo RAN")
    assert r.returncode == REFUSED
    assert "RAN" not in r.stdout
    assert r.stderr.count("\n") == 1, r.stderr
    assert "no terminal to ask on" in r.stderr and "--allow 'eval echo RAN'" in r.stderr
    assert "Traceback" not in r.stderr
    allowed = rf(world, "run", "--allow", "eval", "--", "sh", "-c", "eval echo RAN")
    assert allowed.returncode == 0 and "RAN" in allowed.stdout, allowed.stderr
    last = audit_lines(world)
    refused = [x for x in last if x.get("answer") == "nobody to ask"]
    assert refused and refused[0]["rule"] == "builtin:eval"


def test_no_terminal_refusal_does_not_suggest_an_allow_rule_for_a_run_time_word(
        world: World) -> None:
    """`--allow 'eval echo $X'` would allow nothing (no allow rule's word stands for `$X`): the
    refusal says that the word is only known when it runs instead."""
    r = rf(world, "run", "--", "sh", "-c", "eval echo $X")
    assert r.returncode == REFUSED and r.stderr.count("\n") == 1, r.stderr
    assert "--allow" not in r.stderr, r.stderr
    assert "write out `$X`: its value is only known when it runs" in r.stderr, r.stderr
    u = rf(world, "run", "--approval-mode", "untrusted", "--", "sh", "-c", "make $X")
    assert u.returncode == REFUSED and "--approval-mode on-request" in u.stderr, u.stderr
    assert "allow rule for" not in u.stderr and "write out `$X`" in u.stderr, u.stderr


def test_rm_through_a_link_to_outside_asks_under_full_access(world: World) -> None:
    """Red team: with `out -> <a directory outside>` in the workspace, `ringfence run --profile
    full-access -- rm -rf out/victim` ran without the question that `rm -r` outside the
    writable roots always gets, and deleted the directory: the approval engine took
    `out/victim` for a path inside the workspace. It now judges where the path really is."""
    victim = world.outside / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x\n")
    (world.workspace / "out").symlink_to(world.outside)
    r = rf(world, "run", "--profile", "full-access", "--", "rm", "-rf", "out/victim")
    assert r.returncode == REFUSED, (r.returncode, r.stderr)
    assert "rm recursive outside" in r.stderr, r.stderr
    for text in ("cd out && rm -rf victim", "rm -rf out/../outside/victim"):
        r = rf(world, "run", "--profile", "full-access", "--", "sh", "-c", text)
        assert r.returncode == REFUSED, (text, r.returncode, r.stderr)
    assert (victim / "keep").exists()
    # the link itself is the workspace's: removing it asks nothing and leaves its target
    r = rf(world, "run", "--profile", "full-access", "--", "rm", "-rf", "out")
    assert r.returncode == 0, r.stderr
    assert not (world.workspace / "out").exists() and (victim / "keep").exists()


def test_no_terminal_untrusted_names_the_mode(world: World) -> None:
    r = rf(world, "run", "--approval-mode", "untrusted", "--", "make")
    assert r.returncode == REFUSED
    assert "--approval-mode on-request" in r.stderr


def test_no_terminal_escalation_names_the_options(world: World) -> None:
    r = rf(world, "run", "--escalate", "network", "--escalate", "no-sandbox", "--", "true")
    assert r.returncode == REFUSED
    assert "--network on" in r.stderr and "--profile full-access" in r.stderr


def test_forbidden_by_rule(world: World) -> None:
    (world.workspace / ".ringfence.toml").write_text(
        '[[rules]]\nprefix = ["touch"]\ndecision = "forbid"\njustification = "no touching"\n')
    r = rf(world, "run", "--", "sh", "-c", "true && touch x")
    assert r.returncode == REFUSED
    assert "forbidden" in r.stderr and "no touching" in r.stderr
    assert not (world.workspace / "x").exists()


def test_never_mode_refuses_instead_of_asking(world: World) -> None:
    r = rf(world, "run", "--approval-mode", "never", "--", "sh", "-c", "eval true")
    assert r.returncode == REFUSED and "approval mode is never" in r.stderr


# --- asking on a terminal (a real pty) --------------------------------------------------------

# (`4""2`: the output differs from the command's text; no word only known at run time)
EVAL = ["run", "--", "sh", "-c", 'eval echo RAN-4""2']


def test_prompt_once(world: World) -> None:
    code, shown = on_pty(world, rf_argv(*EVAL), [b"o\n"])
    assert code == 0, shown
    assert "approve this command?" in shown and "eval echo RAN" in shown
    assert "eval is on the built-in always-ask list" in shown and "[builtin:eval]" in shown
    assert "RAN-42" in shown
    decision = [x for x in audit_lines(world) if x["kind"] == "decision"][-1]
    assert decision["answer"] == "once" and decision["approved_by"] == "user at the terminal"
    # once means once: without a terminal the next run is refused
    assert rf(world, *EVAL).returncode == REFUSED


def test_prompt_deny(world: World) -> None:
    code, shown = on_pty(world, rf_argv(*EVAL), [b"d\n"])
    assert code == REFUSED, shown
    assert "\nRAN-42" not in shown.replace("\r", "")  # (not its output, only its words)
    assert "denied at the prompt" in shown
    assert audit_lines(world)[-1]["answer"] == "deny"


def test_prompt_eof_denies(world: World) -> None:
    code, _ = on_pty(world, rf_argv(*EVAL), [b"\x04"])
    assert code == REFUSED


def test_prompt_session(world: World) -> None:
    """"session" covers the same command in later runs from the same terminal session (the same
    login shell); a different command is asked about."""
    py = sys.executable
    script = (f"{py} -m ringfence run -- sh -c 'eval echo FIRST'; "
              f"{py} -m ringfence run -- sh -c 'eval echo FIRST' | tr F S; "
              f"{py} -m ringfence run -- sh -c 'eval date'")
    code, shown = on_pty(world, ["/bin/sh", "-c", script], [b"s\n", b"d\n"])
    assert code == REFUSED, shown
    assert shown.count("approve this command?") == 2, shown
    assert "eval date" in shown.split("approve this command?")[2]
    assert "SIRST" in shown
    second = [x for x in audit_lines(world) if x["kind"] == "decision"][1]
    assert second["approved_by"] == "session"
    # another terminal session is asked again
    assert rf(world, "run", "--", "sh", "-c", "eval echo FIRST").returncode == REFUSED


def test_prompt_offers_no_lasting_answer_for_a_word_only_known_at_run_time(
        world: World) -> None:
    """Red team: answering "session" (or "always") to `eval "$X"` asked about with X='echo
    hi' approved the text `"$X"`, so every later run of it from this terminal session (or,
    with "always", for good) evaluated whatever X then held -- here `touch` of a file, as
    easily `rm -rf ~` -- without a question. A word only known at run time is now never
    covered: the question offers once or deny and says why, "s" and "a" are not answers, and
    the next run is asked again."""
    py = sys.executable
    marker = world.workspace / "pwned"
    script = (f"X='echo hi' {py} -m ringfence run -- sh -c 'eval \"$X\"'; "
              f"X='touch {marker}' {py} -m ringfence run -- sh -c 'eval \"$X\"'")
    code, shown = on_pty(world, ["/bin/sh", "-c", script], [b"s\n", b"a\n", b"o\n", b"d\n"])
    assert not marker.exists(), shown
    assert code == REFUSED, shown
    first = shown.split("approve this command?")[1]
    assert "[o/D]" in first and "[s]" not in first and "[a]" not in first, first
    assert 'no session or always: `"$X"` is only known when it runs' in first
    assert shown.count("approve this command?") == 2, shown  # asked again, then denied
    assert shown.count("answer [") == 4  # "s" and "a" were not answers
    assert "\nhi" in shown.replace("\r", "")
    decisions = [x for x in audit_lines(world) if x["kind"] == "decision"]
    assert [d["answer"] for d in decisions] == ["once", "deny"]
    assert not (world.home / ".config" / "ringfence" / "config.toml").exists()


def test_prompt_always_writes_the_user_config(world: World) -> None:
    (world.workspace / ".ringfence.toml").write_text("")
    code, shown = on_pty(world, rf_argv(*EVAL), [b"a\n"])
    assert code == 0, shown
    cfg = world.home / ".config" / "ringfence" / "config.toml"
    assert "decision = \"allow\"" in cfg.read_text()
    assert (world.workspace / ".ringfence.toml").read_text() == ""  # never the project's
    again = rf(world, *EVAL)
    assert again.returncode == 0 and "RAN-42" in again.stdout, again.stderr


def test_prompt_always_not_offered_for_the_users_ask_rule(world: World) -> None:
    (world.workspace / ".ringfence.toml").write_text(
        '[[rules]]\nprefix = ["echo"]\ndecision = "ask"\n')
    code, shown = on_pty(world, rf_argv("run", "--", "echo", "HI"), [b"a\n", b"o\n"])
    assert code == 0, shown
    assert "[o/s/D]" in shown and "always" not in shown.split("approve this command?")[1]
    assert shown.count("answer [") == 2  # "a" was not an answer here


def test_prompt_escalation_grants_network(world: World) -> None:
    code, shown = on_pty(world, rf_argv(
        "run", "--escalate", "network", "--justification", "needs the index", "--",
        "sh", "-c", "cat /proc/net/dev | wc -l"), [b"o\n"])
    assert code == 0, shown
    assert "it gets   network access" in shown and "needs the index" in shown
    run = audit_lines(world)[-1]
    assert run["kind"] == "run" and run["network"] == "on"


def test_on_failure_offers_a_run_without_the_sandbox(world: World) -> None:
    target = world.outside / "made-by-retry"
    code, shown = on_pty(world, rf_argv(
        "run", "--approval-mode", "on-failure", "--", "touch", str(target)), [b"o\n"])
    assert code == 0, shown
    assert "failed in the sandbox" in shown and "no sandbox" in shown
    assert target.exists()
    kinds = [(x["kind"], x.get("sandbox")) for x in audit_lines(world)]
    assert kinds == [("decision", None), ("run", "bwrap"), ("decision", None), ("run", "none")]


def test_on_failure_json_is_one_object(world: World) -> None:
    """`run --json --approval-mode on-failure` printed two JSON objects on stdout when the
    retry without the sandbox was approved (one per run), which a consumer reading one object
    cannot parse. Now one object: the last run, with the sandboxed attempt as first_attempt."""
    target = world.outside / "made-by-json-retry"
    out = world.base / "stdout.json"
    argv = ["/bin/sh", "-c", f'exec "$@" > {out}', "sh", *rf_argv(
        "run", "--json", "--approval-mode", "on-failure", "--", "touch", str(target))]
    code, shown = on_pty(world, argv, [b"o\n"])
    assert code == 0 and target.exists(), shown
    report = json.loads(out.read_text())  # exactly one object, or this raises
    assert report["exit_code"] == 0 and report["mode"] == "none", report
    assert report["first_attempt"]["exit_code"] == 1, report
    assert report["first_attempt"]["mode"] == "bwrap", report
    # declined (no terminal to ask): the one object is the sandboxed run
    r = rf(world, "run", "--json", "--approval-mode", "on-failure", "--", "touch",
           str(world.outside / "never"))
    assert r.returncode == 1 and "first_attempt" not in json.loads(r.stdout), r.stdout


def test_on_failure_without_a_terminal_keeps_the_failure(world: World) -> None:
    target = world.outside / "never"
    r = rf(world, "run", "--approval-mode", "on-failure", "--", "touch", str(target))
    assert r.returncode == 1
    assert "not run again without the sandbox" in r.stderr
    assert not target.exists()


# --- the screen itself --------------------------------------------------------------------------

def test_screen_escapes_terminal_control_characters() -> None:
    """A command whose words hold escape sequences (clear line, move cursor) must not repaint
    the question: every control character is shown escaped."""
    evil = "rm -rf ~\x1b[2K\x1b[1Gls\r\u202e"
    decision = Decision(verdict="ask", reason="r", rule="x")
    text = screen(ApprovalRequest(("sh", "-c", evil), "/w", "/w", decision), "/cfg")
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "\\x1b[2K" in text and "\\u202e" in text
    assert visible("a\tb") == "a\\x09b"


@pytest.mark.parametrize("answer", ["once", "session", "always", "deny"])
def test_prompt_keys(answer: str) -> None:
    from ringfence.approval.prompt import _KEYS

    assert _KEYS[answer[0]] == answer


def test_run_path_imports_no_parser_json_or_hashlib(world: World) -> None:
    """``ringfence run -- /bin/true`` (an argv command) decides and records without importing
    tree-sitter, json, hashlib or re; nor ``enum``, which ``signal`` would bring in (~6 ms: the
    early start's signal handlers once did)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "ringfence", "run", "--",
                        "/bin/true"], cwd=world.workspace, env=world.env, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL, start_new_session=True)
    assert r.returncode == 0, r.stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
               if line.startswith("import time:")}
    assert "ringfence.audit.log" in modules and "ringfence.approval.engine" in modules
    assert not modules & {"tree_sitter", "tree_sitter_bash", "json", "hashlib", "re", "enum",
                          "signal", "ringfence.approval.shell"}, sorted(modules)
