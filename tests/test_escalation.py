"""Escalation requests (``ringfence.escalation.submit``) go through the approval engine.

A denial's suggestion becomes a request; the engine decides by the approval mode and rules and
asks through the caller's approver; only an approved request widens the policy, and only by the
change asked for. The end-to-end test shows the write that was refused inside a session
succeeds after an approved escalation widens it, and not before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import ringfence
from ringfence.approval.gate import ApprovalError, ApprovalRequest
from ringfence.errors import PolicyError, UnavailableError
from ringfence.escalation import submit
from ringfence.session import Session
from tests.conftest import World
from tests.test_session import policy_of


def _request(target: str) -> dict[str, Any]:
    return {"change": "writable_root", "value": target,
            "justification": "the task writes its report there"}


def test_refused_without_anyone_to_ask(in_world: World) -> None:
    """On-request mode asks for escalations; with no approver the request is refused, naming
    how to allow it, and the policy is not widened."""
    with pytest.raises(ApprovalError, match="needs approval"):
        submit(_request(str(in_world.outside)), policy_of(in_world))


def test_never_mode_refuses(in_world: World) -> None:
    """In the ``never`` mode nothing that would ask is granted, even with an approver."""
    policy = policy_of(in_world, approval_mode="never")
    with pytest.raises(ApprovalError):
        submit(_request(str(in_world.outside)), policy, approver=lambda req: "once")


def test_denied_at_the_prompt(in_world: World) -> None:
    with pytest.raises(ApprovalError, match="denied"):
        submit(_request(str(in_world.outside)), policy_of(in_world),
               approver=lambda req: "deny")


def test_approved_widens_by_exactly_the_change(in_world: World) -> None:
    """The approver sees what more the command would get; the result adds that root only,
    and the audit log records the decision with who approved it."""
    seen: list[ApprovalRequest] = []

    def approver(req: ApprovalRequest) -> str:
        seen.append(req)
        return "once"

    policy = policy_of(in_world)
    widened = submit(_request(str(in_world.outside)), policy, approver=approver)
    assert widened.writable == (*policy.writable, str(in_world.outside))
    assert widened.replace(writable=policy.writable) == policy
    assert seen and any(str(in_world.outside) in grant for grant in seen[0].decision.grants)
    log = in_world.home / ".local" / "state" / "ringfence" / "audit"
    records = [json.loads(line) for f in sorted(log.glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert any(r.get("kind") == "decision" and "escalate" in json.dumps(r) for r in records)


def test_network_escalation(in_world: World) -> None:
    widened = submit({"change": "network", "value": "example.org", "justification": "docs"},
                     policy_of(in_world), approver=lambda req: "once")
    assert widened.network == "on"


def test_limits_cannot_be_escalated_live(in_world: World) -> None:
    with pytest.raises(UnavailableError, match="--timeout"):
        submit({"change": "timeout", "value": 600, "justification": "slow tests"},
               policy_of(in_world), approver=lambda req: "once")


def test_malformed_requests(in_world: World) -> None:
    with pytest.raises(PolicyError, match="justification"):
        submit({"change": "network", "justification": " "}, policy_of(in_world))
    with pytest.raises(PolicyError, match="absolute"):
        submit({"change": "writable_root", "value": "rel/dir", "justification": "x"},
               policy_of(in_world), approver=lambda req: "once")


def test_denial_to_escalation_to_write(in_world: World) -> None:
    """The whole loop: a write outside the workspace is refused in a session and reported as
    a denial; its suggestion, approved, restarts the session wider, and the same write then
    succeeds. Without approval it stays refused."""
    target = in_world.outside / "report.txt"
    with Session(policy_of(in_world)) as s:
        r = s.run(["touch", str(target)])
        assert r.exit_code != 0 and not target.exists()
        [denial] = [d for d in r.denials if d.kind == "write"]
        request = {**denial.suggestion.to_request(), "justification": "write the report"}
        with pytest.raises(ApprovalError):
            submit(request, s.policy)
        assert s.run(["touch", str(target)]).exit_code != 0
        widened = submit(request, s.policy, approver=lambda req: "once")
        s.widen(writable=[w for w in widened.writable if w not in s.policy.writable])
        assert s.run(["touch", str(target)]).exit_code == 0
    assert target.exists()
    assert isinstance(ringfence.Session, type)
