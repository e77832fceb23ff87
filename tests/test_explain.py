"""``explain_plan`` and ``render_text`` for hand-built plans (no host facts are read)."""

from __future__ import annotations

import json
import shlex

from ringfence.backends._seccomp import describe
from ringfence.explain import explain_plan, render_text
from ringfence.plan import plan_linux
from tests.test_plan import CMD, WS, facts, policy


def test_explain_plan_is_json_ready_and_complete() -> None:
    plan = plan_linux(policy(), CMD, facts())
    data = explain_plan(plan)
    assert json.loads(json.dumps(data)) == json.loads(json.dumps(data, sort_keys=True))
    assert data["mode"] == "bwrap"
    assert data["argv"] == list(plan.argv)
    assert data["command"] == list(CMD)
    assert data["policy"] == plan.policy.to_dict()
    assert list(data["environment"]) == sorted(plan.env)
    assert data["rlimits"] == dict(plan.rlimits)
    assert "landlock" not in data


def test_explain_lists_the_seccomp_rules_in_force() -> None:
    off = explain_plan(plan_linux(policy(), CMD, facts()))
    on = explain_plan(plan_linux(policy(network="on"), CMD, facts()))
    assert off["seccomp"] == [
        {"syscall": s, "action": a, "why": w}
        for s, a, w in describe(block_inet=True, block_unix=False)
    ]
    assert on["seccomp"] == [
        {"syscall": s, "action": a, "why": w}
        for s, a, w in describe(block_inet=False, block_unix=False)
    ]
    assert off["seccomp"][0]["action"] == "KILL"  # the ABI check comes first
    assert len(off["seccomp"]) >= len(on["seccomp"])


def test_explain_full_access_has_no_seccomp() -> None:
    data = explain_plan(plan_linux(policy(profile="full-access"), CMD, facts()))
    assert "seccomp" not in data
    assert data["mode"] == "none"
    assert data["weaker"]


def test_explain_landlock() -> None:
    plan = plan_linux(policy(fallback="landlock"), CMD,
                      facts(userns="user namespaces are disabled", landlock_abi=2))
    data = explain_plan(plan)
    assert data["landlock"] == plan.landlock
    assert data["seccomp"][0]["action"] == "KILL"


def test_render_text() -> None:
    plan = plan_linux(policy(), CMD, facts())
    text = render_text(explain_plan(plan))
    lines = text.splitlines()
    assert lines[0] == "mode: bwrap"
    assert lines[1].startswith("layers: user, pid")
    assert "profile: workspace-write   network: off" in lines
    assert f"workspace: {WS}" in lines
    assert "command: pytest -q" in lines
    assert "  --bind /home/u/proj /home/u/proj" in lines
    assert "  --ro-bind / /" in lines
    assert "placeholders (missing protected paths, kept uncreatable):" in lines
    assert f"  {WS}/.claude" in lines
    assert "  RLIMIT_NPROC = 4096" in lines
    assert "seccomp (everything else allowed):" in lines
    assert any(line.startswith("environment removed: AWS_SECRET_ACCESS_KEY, ") for line in lines)
    assert "  RINGFENCE_SANDBOX=1" in lines
    assert text.endswith("\n")


def test_render_text_quotes_odd_paths_and_handles_empty_sections() -> None:
    ws = "/home/u/my proj"
    plan = plan_linux(policy(workspace=ws, writable=(), profile="full-access",
                             limits=policy().limits.replace(memory=None)),
                      ["sh", "-c", "echo 'hi there'"],
                      facts(environ={"PATH": "/bin"}, protected_paths=()))
    text = render_text(explain_plan(plan))
    lines = text.splitlines()
    assert lines[0] == "mode: none"
    assert any(line.startswith("weaker: full-access") for line in lines)
    assert f"workspace: {ws}" in lines
    assert "command: " + shlex.join(["sh", "-c", "echo 'hi there'"]) in lines
    assert "environment removed: -" in lines
    assert "placeholders" not in text
    assert "seccomp" not in text
