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
    """Without a host the request is for the whole network, and the question says so."""
    seen: list[ApprovalRequest] = []

    def approver(req: ApprovalRequest) -> str:
        seen.append(req)
        return "once"

    widened = submit({"change": "network", "justification": "docs"}, policy_of(in_world),
                     approver=approver)
    assert widened.network == "on"
    assert seen[0].grants[0].startswith("network access: every host and port")


FETCH = """
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=20) as r:
        print("STATUS", r.status)
except Exception as e:
    print("FAILED", type(e).__name__, e)
"""


def test_network_escalation_for_a_host_grants_that_host_only(
        in_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Red team: `request_escalation {"change": "network", "value": "pkgs.test"}` showed the
    host and asked for "network access"; approved, it set the network to `on` -- every host and
    port, the host's loopback services included, the session's allow list gone. Now the host
    goes on the allow list (its other entries stay), and the question says "only". The control:
    the request without a host grants the whole network, and there the loopback service the
    allow list keeps out is reached."""
    import os
    import sys

    from tests.network.servers import TCPServer

    server = TCPServer()
    try:
        hosts = in_world.base / "hosts"
        hosts.write_text("web.test 127.0.0.1\npkgs.test 127.0.0.1\nother.test 127.0.0.1\n")
        monkeypatch.setenv("RINGFENCE_PROXY_HOSTS", str(hosts))
        from ringfence.network.rules import NetworkRules

        policy = policy_of(in_world, network="allowlist", network_rules=NetworkRules(
            allow=("web.test",), ports=(server.port,), allow_local=True))
        seen: list[ApprovalRequest] = []

        def approver(req: ApprovalRequest) -> str:
            seen.append(req)
            return "once"

        widened = submit({"change": "network", "value": "PKGS.test",
                          "justification": "pip needs it"}, policy, approver=approver)
        assert seen[0].command == ("escalate", "network", "pkgs.test")
        assert seen[0].grants == ("network access to pkgs.test only (added to the allow "
                                  "list; no other host)",)
        assert widened.network == "allowlist"
        assert widened.network_rules is not None
        assert widened.network_rules.allow == ("web.test", "pkgs.test")
        assert widened.network_rules.ports == (server.port,)

        py = os.path.realpath(sys.executable)

        def fetch(pol: ringfence.Policy, url: str) -> str:
            r = ringfence.run([py, "-c", FETCH, url], pol, audit=False)
            return r.stdout.decode()

        port = server.port
        assert "STATUS 200" in fetch(widened, f"http://pkgs.test:{port}/")
        assert "STATUS 200" in fetch(widened, f"http://web.test:{port}/")
        before = len(server.seen)
        assert "STATUS" not in fetch(widened, f"http://other.test:{port}/")
        assert "STATUS" not in fetch(widened, f"http://127.0.0.1:{port}/")
        assert len(server.seen) == before  # refused by the proxy: never reached the server

        # control: the whole network (what a host request used to grant) reaches it
        whole = submit({"change": "network", "justification": "x"}, policy,
                       approver=lambda req: "once")
        assert whole.network == "on"
        assert "STATUS 200" in fetch(whole, f"http://127.0.0.1:{port}/")
    finally:
        server.close()


def test_session_widen_adds_allowed_hosts(in_world: World) -> None:
    """What the MCP server passes to ``Session.widen`` for an approved host: the host on the
    allow list, the list's other entries kept; from network off, a list of just that host."""
    from ringfence.network.rules import NetworkRules
    from ringfence.session import _widened_policy

    off = _widened_policy(policy_of(in_world), (), "allowlist", ["a.test"])
    assert off.network == "allowlist" and off.network_rules is not None
    assert off.network_rules.allow == ("a.test",)
    listed = policy_of(in_world, network="allowlist",
                       network_rules=NetworkRules(allow=("b.test",), deny=("x.b.test",)))
    more = _widened_policy(listed, (), None, ["a.test"])
    assert more.network_rules is not None
    assert more.network_rules.allow == ("b.test", "a.test")
    assert more.network_rules.deny == ("x.b.test",)
    on = policy_of(in_world, network="on")
    assert _widened_policy(on, (), None, ["a.test"]) == on


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
