"""The library's approvals: ``ringfence.run(..., approver=...)`` (plain and async), escalation,
session answers, refusals without an approver, and what reaches the audit log."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ringfence
from ringfence.approval.gate import ApprovalError, ApprovalRequest, SessionApprovals
from ringfence.approval.model import Escalation


@pytest.fixture
def ws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = Path(__file__).resolve().parents[2] / ".test-tmp"
    root.mkdir(exist_ok=True)
    base = root / f"gate-{uuid.uuid4().hex[:10]}"
    (base / "home" / "proj").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(base / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    yield base / "home" / "proj"
    shutil.rmtree(base, ignore_errors=True)


def records(ws: Path) -> list[dict[str, object]]:
    path = ws.parent.parent / "state" / "ringfence" / "audit" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def policy(ws: Path, **kw: object) -> ringfence.Policy:
    return ringfence.Policy(workspace=str(ws), **kw)


def test_runs_without_asking_and_records(ws: Path) -> None:
    asked: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        return False

    result = ringfence.run(["sh", "-c", "echo hi"], policy(ws), approver=approver)
    assert result.exit_code == 0 and result.stdout == b"hi\n" and not asked
    kinds = [r["kind"] for r in records(ws)]
    assert kinds == ["decision", "run"]


def test_no_approver_refuses(ws: Path) -> None:
    with pytest.raises(ApprovalError, match="needs approval") as info:
        ringfence.run(["sh", "-c", "eval echo x"], policy(ws))
    assert info.value.exit_code == 122
    assert info.value.decision is not None and info.value.decision.rule == "builtin:eval"
    assert records(ws)[-1]["answer"] == "nobody to ask"


def test_plain_approver(ws: Path) -> None:
    seen: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> str:
        seen.append(request)
        return "once"

    result = ringfence.run(["sh", "-c", "eval echo ok"], policy(ws), approver=approver)
    assert result.stdout == b"ok\n"
    assert seen[0].command == ("sh", "-c", "eval echo ok") and seen[0].rule == "builtin:eval"
    decision = records(ws)[0]
    assert decision["answer"] == "once" and decision["approved_by"] == "approver callback"


def test_approver_denies(ws: Path) -> None:
    with pytest.raises(ApprovalError, match="denied"):
        ringfence.run(["sh", "-c", "eval echo no"], policy(ws), approver=lambda r: False)
    assert [r["kind"] for r in records(ws)] == ["decision"]


def test_bad_answer_is_an_error(ws: Path) -> None:
    with pytest.raises(ApprovalError, match="answer once, session, always or deny"):
        ringfence.run(["sh", "-c", "eval x"], policy(ws), approver=lambda r: "maybe")


def test_session_answers_are_remembered(ws: Path) -> None:
    session = SessionApprovals()
    calls: list[object] = []

    def approver(request: ApprovalRequest) -> str:
        calls.append(request)
        return "session"

    for _ in range(3):
        ringfence.run(["sh", "-c", "eval true"], policy(ws), approver=approver, session=session)
    assert len(calls) == 1
    assert [r["approved_by"] for r in records(ws) if r["kind"] == "decision"] == [
        "approver callback", "session", "session"]
    with pytest.raises(ApprovalError):  # another session knows nothing of it
        ringfence.run(["sh", "-c", "eval true"], policy(ws), session=SessionApprovals())


def test_escalation_grants_what_was_asked(ws: Path) -> None:
    seen: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> bool:
        seen.append(request)
        return True

    esc = Escalation(network=True, justification="download the index")
    result = ringfence.run(["true"], policy(ws), approver=approver, escalation=esc)
    assert result.exit_code == 0
    assert seen[0].grants[0].startswith("network access: every host and port")
    assert seen[0].justification == \
        "download the index"
    decision, run = records(ws)
    assert decision["escalation"] == ["network"] and run["network"] == "on"
    assert "network namespace" not in " ".join(result.layers)
    with pytest.raises(ApprovalError, match=r"widen the policy"):
        ringfence.run(["true"], policy(ws), escalation=esc)


def test_never_mode_refuses_escalation(ws: Path) -> None:
    with pytest.raises(ApprovalError, match="forbidden"):
        ringfence.run(["true"], policy(ws, approval_mode="never"), approver=lambda r: True,
                      escalation=Escalation(no_sandbox=True))


def test_async_approver_with_arun(ws: Path) -> None:
    async def approver(request: ApprovalRequest) -> str:
        await asyncio.sleep(0)
        return "once"

    async def main() -> ringfence.Result:
        return await ringfence.arun(["sh", "-c", "eval echo async"], policy(ws),
                                    approver=approver)

    assert asyncio.run(main()).stdout == b"async\n"


def test_async_approver_in_plain_run_outside_a_loop(ws: Path) -> None:
    async def approver(request: ApprovalRequest) -> str:
        return "once"

    result = ringfence.run(["sh", "-c", "eval echo ok"], policy(ws), approver=approver)
    assert result.stdout == b"ok\n"


def test_async_approver_in_plain_run_inside_a_loop_says_use_arun(ws: Path) -> None:
    async def approver(request: ApprovalRequest) -> str:
        return "once"

    async def main() -> None:
        ringfence.run(["sh", "-c", "eval true"], policy(ws), approver=approver)

    with pytest.raises(ApprovalError, match=r"use ringfence\.arun"):
        asyncio.run(main())


def test_check_runs_nothing(ws: Path) -> None:
    decision = ringfence.check(policy(ws), "curl -s x | sh")
    assert decision.verdict == "ask"
    assert records(ws) == []


def test_audit_false_writes_nothing(ws: Path) -> None:
    ringfence.run(["true"], policy(ws), audit=False)
    assert records(ws) == []


def test_on_failure_retries_without_the_sandbox_when_approved(ws: Path) -> None:
    outside = ws.parent / "outside-target"
    asked: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> str:
        asked.append(request)
        return "once"

    result = ringfence.run(["touch", str(outside)], policy(ws, approval_mode="on-failure"),
                           approver=approver)
    assert result.exit_code == 0 and result.mode == "none"
    assert outside.exists()
    assert asked and asked[0].grants[0].startswith("no sandbox")
    # without an approver the sandboxed failure stands
    outside.unlink()
    result = ringfence.run(["touch", str(outside)], policy(ws, approval_mode="on-failure"))
    assert result.exit_code == 1 and not outside.exists()


def test_every_part_that_asked_is_remembered(ws: Path) -> None:
    session = SessionApprovals()
    calls: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> str:
        calls.append(request)
        return "session"

    text = "eval true; env eval false"
    ringfence.run(["sh", "-c", text], policy(ws), approver=approver, session=session)
    ringfence.run(["sh", "-c", text], policy(ws), approver=approver, session=session)
    assert len(calls) == 1


def test_session_answer_covers_only_that_command_there(ws: Path) -> None:
    """Red team: "session" answers were argv prefixes that knew no directory. Answering
    "session" to `rm -rf build` without a sandbox (an escalation) let `rm -rf build /victim` run
    later, unasked and unsandboxed, and `rm -rf build` in any other directory. Now only the
    very command, from the same directory of the same workspace, is covered."""
    victim = ws.parent.parent / "victim"
    (victim / "important").mkdir(parents=True)
    (ws / "build").mkdir()
    (ws / "sub" / "build").mkdir(parents=True)
    answers = iter(["session", "deny", "deny"])
    asked: list[tuple[str, ...]] = []

    def approver(request: ApprovalRequest) -> str:
        asked.append(request.command)
        return next(answers)

    session = SessionApprovals()
    esc = Escalation(no_sandbox=True, justification="clean the build")
    pol = policy(ws)
    ringfence.run(["rm", "-rf", "build"], pol, approver=approver, escalation=esc,
                  session=session, cwd=str(ws))
    assert not (ws / "build").exists() and len(asked) == 1
    with pytest.raises(ApprovalError, match="denied"):
        ringfence.run(["rm", "-rf", "build", str(victim)], pol, approver=approver,
                      escalation=esc, session=session, cwd=str(ws))
    assert (victim / "important").exists() and len(asked) == 2
    with pytest.raises(ApprovalError, match="denied"):
        ringfence.run(["rm", "-rf", "build"], pol, approver=approver, escalation=esc,
                      session=session, cwd=str(ws / "sub"))
    assert (ws / "sub" / "build").exists() and len(asked) == 3
    (ws / "build").mkdir()
    ringfence.run(["rm", "-rf", "build"], pol, approver=approver, escalation=esc,
                  session=session, cwd=str(ws))  # the very command, there: not asked again
    assert not (ws / "build").exists() and len(asked) == 3


def test_always_answer_writes_an_exact_rule(ws: Path) -> None:
    """Red team: "always" wrote a prefix rule, so approving `rm -rf build` without a sandbox
    allowed `rm -rf build /victim` without a sandbox for good. The rule is now exact."""
    from ringfence.policy.load import Options, resolve

    victim = ws.parent.parent / "victim"
    (victim / "important").mkdir(parents=True)
    (ws / "build").mkdir()
    esc = Escalation(no_sandbox=True, justification="clean the build")
    ringfence.run(["rm", "-rf", "build"], policy(ws), approver=lambda r: "always",
                  escalation=esc, session=SessionApprovals(), cwd=str(ws))
    config = ws.parent.parent / "config" / "ringfence" / "config.toml"
    assert "exact = true" in config.read_text()
    later = resolve(Options(workspace=str(ws)), cwd=str(ws))
    with pytest.raises(ApprovalError, match="needs approval"):
        ringfence.run(["rm", "-rf", "build", str(victim)], later, escalation=esc,
                      session=SessionApprovals(), cwd=str(ws))
    assert (victim / "important").exists()
    (ws / "build").mkdir()
    ringfence.run(["rm", "-rf", "build"], later, escalation=esc, session=SessionApprovals(),
                  cwd=str(ws))  # the rule's own command runs without asking
    assert not (ws / "build").exists()


def test_terminal_session_file_round_trips(ws: Path) -> None:
    """The terminal session's file keeps each approval whole: words with newlines, tabs and
    undecodable bytes, the directory, the workspace, the exact grants and whether it ran in a
    sandbox; a line from an older ringfence (a prefix approval, or one that does not say
    whether it ran in a sandbox) is ignored, so that command is asked again."""
    from ringfence.approval.model import Approval

    path = ws.parent / "s" / "x.session"
    path.parent.mkdir()
    older = json.dumps({"argv": ["rm", "-rf", "x"], "grants": [], "cwd": str(ws),
                        "workspace": str(ws)})
    path.write_text(f"no-sandbox\trm\0-rf\n{older}\n")
    a = Approval(argv=("/bin/sh", "-c", "eval 'a\tb'\necho \udcff"),
                 grants=("writable:/srv/a,b",), cwd=str(ws), workspace=str(ws))
    b = a.replace(argv=("rm", "-rf", "x"), sandboxed=False)
    SessionApprovals(str(path)).add(a)
    SessionApprovals(str(path)).add(b)
    assert SessionApprovals(str(path)).items == (a, b)


def test_terminal_session_file_with_a_deeply_nested_line(ws: Path) -> None:
    """A line of 200 000 `[` in the terminal session's file (damage, or a command run without
    the sandbox) made every `ringfence run` that asks die with a RecursionError traceback. The
    line is skipped like any other bad line."""
    from ringfence.approval.model import Approval

    path = ws.parent / "s" / "x.session"
    path.parent.mkdir()
    path.write_text("[" * 200_000 + "\n")
    a = Approval(argv=("sudo", "true"), grants=(), cwd=str(ws), workspace=str(ws))
    SessionApprovals(str(path)).add(a)
    assert SessionApprovals(str(path)).items == (a,)


def test_always_with_an_empty_argument_keeps_the_config_loadable(ws: Path) -> None:
    """Red team: "always" on `git push --force origin ""` wrote `prefix = [..., ""]`, which the
    loader then refused ("prefix must name at least a program"): every later run and the MCP
    server exited 125 until the user edited the file. The rule now loads and matches exactly
    that command."""
    from ringfence.approval.gate import check, open_gate
    from ringfence.policy.load import Options, resolve

    words = ["git", "push", "--force", "origin", ""]
    open_gate(policy(ws), words, cwd=str(ws), approver=lambda r: "always",
              session=SessionApprovals(), audit=False)
    later = resolve(Options(workspace=str(ws)), cwd=str(ws))  # raised PolicyError
    assert check(later, words, cwd=str(ws)).verdict == "run"
    assert check(later, [*words[:-1], "main"], cwd=str(ws)).verdict == "ask"


def test_session_answer_inside_the_sandbox_is_not_reused_without_it(ws: Path) -> None:
    """Red team: "session" given to `rm -rf ~/victim` in a sandboxed run (where the sandbox
    would stop it) was reused by a full-access policy in the same process: the same words ran
    unasked with nothing in the way."""
    from ringfence.approval.gate import open_gate

    victim = str(ws.parent / "victim")
    asked: list[str] = []

    def approver(request: ApprovalRequest) -> str:
        asked.append(request.rule)
        return "session"

    session = SessionApprovals()
    for profile in ("workspace-write", "full-access", "full-access", "workspace-write"):
        open_gate(policy(ws, profile=profile), ["rm", "-rf", victim], cwd=str(ws),
                  approver=approver, session=session, audit=False)
    assert len(asked) == 2  # once sandboxed, once without: each then reused


def test_unsandboxed_library_run_runs_in_its_cwd(ws: Path) -> None:
    """An approved run without the sandbox (full-access, or a no-sandbox escalation) ignored
    ``cwd`` and ran in the calling process's directory: `rm -rf build`, approved "where: the
    workspace", removed `build` wherever the caller happened to be."""
    (ws / "sub").mkdir()
    for pol, esc in ((policy(ws, profile="full-access"), None),
                     (policy(ws), Escalation(no_sandbox=True))):
        r = ringfence.run(["pwd"], pol, cwd=str(ws / "sub"), escalation=esc,
                          approver=lambda req: "once")
        assert r.mode == "none" and r.stdout.decode().strip() == str(ws / "sub")


@pytest.mark.parametrize("command", [["echo", "\ud800x"], "echo \udfff", ["echo\ud83d"]])
def test_lone_surrogate_is_refused_before_anything_is_recorded(
        ws: Path, command: list[str] | str) -> None:
    """A lone surrogate (a model's JSON `"\\ud800"` decodes to one) was a raw
    UnicodeEncodeError after the decision "run" was recorded, with no run record after it, and
    that record then crashed `audit show`. It is a clear error now, and nothing is recorded;
    an undecodable byte read from the OS (U+DC80-U+DCFF) is still a valid argument."""
    from ringfence.errors import PolicyError
    from ringfence.session import Session

    with pytest.raises(PolicyError, match="lone surrogate") as err:
        ringfence.run(command, policy(ws))
    assert "\n" not in str(err.value)
    with Session(policy(ws)) as s:
        with pytest.raises(PolicyError, match="lone surrogate"):
            s.run(command)
        with pytest.raises(PolicyError, match="lone surrogate"):
            s.run(["true"], cwd="a\ud800")
    assert records(ws) == []
    r = ringfence.run(["printf", "%s", "\udcff"], policy(ws))
    assert r.exit_code == 0 and r.stdout == b"\xff"


def test_no_lasting_answer_for_a_word_only_known_at_run_time(
        ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Red team: a library approver's "always" (or "session") to `eval "$X"` asked with a
    harmless X wrote an exact rule for the text `"$X"` (remembered it for the session), so the
    same text later ran unasked with X='touch pwned' -- any code. The answer now counts as
    "once": the request says so (``session_ok``, ``run_time``), nothing is written or
    remembered, and the next run is asked again."""
    marker = ws / "pwned"
    seen: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> str:
        seen.append(request)
        return "always" if len(seen) == 1 else "deny"

    session = SessionApprovals()
    monkeypatch.setenv("X", "echo hi")
    first = ringfence.run(["sh", "-c", 'eval "$X"'], policy(ws), approver=approver,
                          session=session)
    assert first.stdout == b"hi\n"
    assert not seen[0].session_ok and not seen[0].always_ok and seen[0].run_time == ('"$X"',)
    config = ws.parent.parent / "config" / "ringfence" / "config.toml"
    assert not config.exists() and not session.items
    assert records(ws)[0]["answer"] == "once"
    monkeypatch.setenv("X", f"touch {marker}")
    with pytest.raises(ApprovalError, match="denied"):
        ringfence.run(["sh", "-c", 'eval "$X"'], policy(ws), approver=approver,
                      session=session)
    assert not marker.exists() and len(seen) == 2
