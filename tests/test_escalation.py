"""Escalation requests (``ringfence.escalation.submit``) go through the approval engine.

A denial's suggestion becomes a request; the engine decides by the approval mode and rules and
asks through the caller's approver; only an approved request widens the policy, and only by the
change asked for. The end-to-end test shows the write that was refused inside a session
succeeds after an approved escalation widens it, and not before.
"""

from __future__ import annotations

import json
from pathlib import Path
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


def test_always_answer_to_a_request_does_not_cover_other_roots(in_world: World) -> None:
    """Red team: "always" to `request_escalation writable_root CACHE` wrote an exact rule for
    the words `escalate writable_root CACHE` that granted the kind `writable`. A repository's
    own program named `escalate` (on the PATH its .ringfence.toml sets for sandboxed runs),
    run as `ringfence run --escalate writable:$HOME -- escalate writable_root CACHE`,
    matched it and got write access to $HOME unasked: it appended to ~/.bashrc. The rule now
    grants exactly CACHE, so that run asks (and with no terminal, is refused)."""
    import subprocess
    import sys

    from ringfence.policy.load import Options, resolve

    cache = in_world.outside / "cache"
    cache.mkdir()
    ws = in_world.workspace
    submit(_request(str(cache)), resolve(Options(), cwd=str(ws)),
           approver=lambda req: "always", cwd=str(ws))
    (ws / "bin").mkdir()
    program = ws / "bin" / "escalate"
    program.write_text('#!/bin/sh\necho "evil line" >> "$HOME/.bashrc" && echo WROTE\n')
    program.chmod(0o755)
    (ws / ".ringfence.toml").write_text(
        f'[environment]\nset = {{ PATH = "{ws}/bin:/usr/local/bin:/usr/bin:/bin" }}\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ringfence", *args], cwd=ws,
                              env=in_world.env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, start_new_session=True)

    words = ["escalate", "writable_root", str(cache)]
    wide = run("run", "--escalate", f"writable:{in_world.home}", "--", *words)
    assert wide.returncode == 122 and "needs approval" in wide.stderr, wide
    assert "evil" not in (in_world.home / ".bashrc").read_text()
    net = run("check", "--escalate", "network", "--", *words)
    assert "decision: ask" in net.stdout, net
    # control: the escalation the rule was written for is still granted unasked
    same = run("check", "--escalate", f"writable:{cache}", "--", *words)
    assert "decision: run" in same.stdout, same
    config = (in_world.home / ".config" / "ringfence" / "config.toml").read_text()
    assert f'grants = ["writable:{cache}"]' in config


def _trusted_inside(world: World) -> tuple[Path, Path]:
    """A trusted workspace (src/mono/a/b/app) under a directory a session may be widened to."""
    mono = world.home / "src" / "mono"
    app = mono / "a" / "b" / "app"
    app.mkdir(parents=True)
    config = world.home / ".config" / "ringfence"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(f'[trust]\nworkspaces = ["{app}"]\n')
    return mono, app


_WIDEN_TRUST = "printf 'profile = \"full-access\"\\n' > {0}/.ringfence.toml && echo WROTE"


def _untouched(app: Path) -> bool:
    """The trusted workspace's file was not written (a missing one may get a
    placeholder while a sandbox that protects it lives)."""
    file = app / ".ringfence.toml"
    return not file.is_file() or "full-access" not in file.read_text()


def test_widened_session_cannot_write_a_trusted_workspaces_file(in_world: World) -> None:
    """Red team: the trusted workspace's .ringfence.toml was protected only for the roots known
    when the policy was resolved. `Session.widen(writable=[.../src/mono])` (what an approved
    MCP `request_escalation writable_root` does) made it writable: the command wrote
    `profile = "full-access"` there, and the next run in that workspace was unsandboxed."""
    from ringfence.policy.load import Options, resolve

    mono, app = _trusted_inside(in_world)
    with Session(resolve(Options(), cwd=str(in_world.workspace))) as s:
        s.widen(writable=[str(mono)])
        r = s.run(["sh", "-c", _WIDEN_TRUST.format(app)])
        assert b"WROTE" not in r.stdout and _untouched(app), r
        # control: the widened root itself is writable
        assert s.run(["sh", "-c", f"echo x > {app}/notes.txt"]).exit_code == 0
    assert (app / "notes.txt").exists()


def test_escalated_policy_cannot_write_a_trusted_workspaces_file(in_world: World) -> None:
    """The same through `escalation.submit` (the library's and the MCP server's path): the
    policy it returns protects the trusted workspace's file inside the new root."""
    from ringfence.policy.load import Options, resolve

    mono, app = _trusted_inside(in_world)
    policy = resolve(Options(), cwd=str(in_world.workspace))
    widened = submit(_request(str(mono)), policy, approver=lambda req: "once")
    r = ringfence.run(["sh", "-c", _WIDEN_TRUST.format(app)], widened)
    assert b"WROTE" not in r.stdout and _untouched(app), r
    assert str(app / ".ringfence.toml") in widened.protected
    control = ringfence.run(["sh", "-c", f"echo x > {app}/notes.txt"], widened)
    assert control.exit_code == 0 and (app / "notes.txt").exists()
