"""``plan_windows`` for a modelled host (golden files) and its rules spelled out.

Goldens live in tests/golden/windows/. Rewrite them after an intended change with

    RINGFENCE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/windows/test_plan.py

and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ringfence.errors import PolicyError, UnavailableError
from ringfence.policy.model import Limits, Policy
from ringfence.windows import paths as wp
from ringfence.windows.plan import (
    DENY_READ,
    DENY_WRITE,
    LOGON_SID,
    MODIFY_NO_DELETE_CHILD,
    WindowsPlan,
    capability_sid,
    explain_windows,
    firewall_rules,
    job_limits,
    plan_windows,
    render_windows_text,
)
from tests.windows.world import (
    DATA,
    GROUP,
    HOME,
    INSTALL_ID,
    OFFLINE,
    ONLINE,
    SANDBOX,
    WS,
    facts_for,
    skeleton,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "windows"
UPDATE = os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1"
CMD = ("pytest", "-q")


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {"workspace": WS, "writable": (DATA,),
                              "deny_read": (WS + "\\secrets",),
                              "limits": Limits(timeout=600, memory=4 << 30)}
    values.update(changes)
    return Policy(**values)


def make(pol: Policy | None = None, **fact_changes: Any) -> WindowsPlan:
    pol = pol or policy()
    return plan_windows(pol, CMD, facts_for(skeleton(), pol, **fact_changes))


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "workspace_write_offline": ({}, {}),
    "read_only": ({"profile": "read-only", "writable": ()}, {}),
    "full_access": ({"profile": "full-access"}, {}),
    "network_on": ({"network": "on"}, {}),
    "not_set_up": ({}, {"sids": {}, "install_id": ""}),
    "limits": ({"limits": Limits(timeout=30, memory=1 << 30, max_processes=64,
                                 cpu_seconds=120, cpu_percent=50)}, {}),
    "env_options": ({"env_allow": ("GITHUB_TOKEN",), "env_set": {"CI": "1"}}, {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    pol_changes, fact_changes = CASES[name]
    data = json.loads(json.dumps(explain_windows(make(policy(**pol_changes), **fact_changes))))
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; run with RINGFENCE_UPDATE_GOLDEN=1 to create it")
    assert data == json.loads(path.read_text(encoding="utf-8")), (
        f"{path} differs; if the change is intended, rerun with RINGFENCE_UPDATE_GOLDEN=1")


def test_no_stale_goldens() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} <= set(CASES)


def test_capability_sid_is_deterministic_per_root_and_install() -> None:
    a = capability_sid(INSTALL_ID, WS)
    assert a == capability_sid(INSTALL_ID, WS.upper())  # same object, any case
    assert a != capability_sid(INSTALL_ID, DATA)
    assert a != capability_sid("another-install", WS)
    parts = a.split("-")
    assert parts[:4] == ["S", "1", "5", "21"] and len(parts) == 8
    assert all(0 <= int(p) < 1 << 32 for p in parts[4:])


def test_token_restricts_to_capability_sids_and_logon_sid_only() -> None:
    plan = make()
    assert plan.token is not None
    sids = [s for s, _ in plan.token.restricting_sids]
    assert sids == [*(c for _, c in plan.capability_sids), LOGON_SID]
    assert "S-1-1-0" not in sids and "S-1-5-32-545" not in sids and "S-1-5-11" not in sids
    assert plan.token.flags_value == 0x1 | 0x4 | 0x8
    assert plan.user_sid == OFFLINE
    assert make(policy(network="on")).user_sid == ONLINE


def test_writable_roots_grant_modify_without_delete_child() -> None:
    plan = make()
    grants = {a.path: a for a in plan.acls if a.why == "writable root"}
    assert set(grants) == {WS, DATA, SANDBOX}
    for acl in grants.values():
        allows = [x for x in acl.aces if x.action == "allow"]
        assert {x.sid for x in allows} == {GROUP, *(c for r, c in plan.capability_sids
                                                    if r == acl.path)}
        assert all(x.mask == MODIFY_NO_DELETE_CHILD and not x.mask & 0x40 for x in allows)


def test_protected_paths_get_denies_and_missing_ones_placeholders() -> None:
    plan = make()
    by_path = {a.path: a for a in plan.acls}
    hooks = by_path[WS + "\\.git\\hooks"]
    assert hooks.phase == "once"
    assert {(x.sid, x.mask, x.flags) for x in hooks.aces} == {
        (GROUP, DENY_WRITE, 3), (capability_sid(INSTALL_ID, WS), DENY_WRITE, 3)}
    assert by_path[WS + "\\.git\\config"].aces[0].flags == 0  # a file: nothing to inherit
    placeholders = {p.path: p.kind for p in plan.placeholders}
    assert placeholders[WS + "\\.envrc"] == "dir"
    assert placeholders[WS + "\\.git\\commondir"] == "file"
    assert WS + "\\.vscode" not in placeholders  # exists
    assert by_path[WS + "\\.envrc"].phase == "run"
    # pins: .git cannot be renamed away, nothing below the workspace deleted via DELETE_CHILD
    assert {x.mask for x in by_path[WS + "\\.git"].aces if x.why.startswith("a protected")} \
        == {0x10040}


def test_missing_included_config_gets_a_file_placeholder() -> None:
    """git fails on a directory where its config includes a file: a missing included file's
    placeholder is a file (git reads an empty one as no settings)."""
    from ringfence.plan import INCLUDED_BY

    local = WS + "\\.gitconfig.local"
    prot = (*facts_for(skeleton(), policy()).protected_paths,
            (local, INCLUDED_BY + WS + "\\.git\\config"))
    plan = make(protected_paths=prot)
    placeholders = {p.path: p.kind for p in plan.placeholders}
    assert placeholders[local] == "file"
    assert placeholders[WS + "\\.envrc"] == "dir"


def test_deny_read_paths() -> None:
    plan = make()
    denied = {a.path: a for a in plan.acls if a.why == "deny-read"}
    assert set(denied) >= {HOME + "\\.ssh", HOME + "\\.netrc", WS + "\\secrets",
                           HOME + "\\AppData\\Roaming\\Microsoft\\Credentials",
                           HOME + "\\AppData\\Local\\ringfence",
                           HOME + "\\AppData\\Roaming\\ringfence"}
    secrets = denied[WS + "\\secrets"]
    assert (GROUP, DENY_READ) in {(x.sid, x.mask) for x in secrets.aces}
    assert (capability_sid(INSTALL_ID, WS), DENY_WRITE) in {(x.sid, x.mask)
                                                            for x in secrets.aces}
    assert all(not x.mask & 0x100000 for a in plan.acls for x in a.aces if x.action == "deny")


def test_firewall_rules() -> None:
    assert firewall_rules("on", OFFLINE) == ()
    rules = firewall_rules("off", OFFLINE)
    assert rules[0].layer == "firewall" and rules[0].action == "block"
    assert rules[0].user == f"O:LSD:(A;;CC;;;{OFFLINE})"
    assert {r.layer for r in rules} == {"firewall", "wfp"}
    with_proxy = firewall_rules("off", OFFLINE, proxy_port=8123)
    assert next(r for r in with_proxy if r.action == "permit").ports == "8123"
    assert make().firewall == rules
    assert make(policy(network="on")).firewall == ()


def test_job_limits() -> None:
    job = job_limits(policy(limits=Limits(memory=1 << 30, max_processes=10, cpu_seconds=5)),
                     cpu_rate_percent=50)
    assert job.limit_flags == 0x2000 | 0x400 | 0x8 | 0x100 | 0x2
    assert job.active_processes == 10 and job.process_memory == 1 << 30
    assert job.process_time_100ns == 50_000_000 and job.cpu_rate == 5000
    assert job.ui_flags == 0xFF
    assert "BREAKAWAY_OK" not in job.limits
    with pytest.raises(PolicyError, match="cpu rate"):
        job_limits(policy(), cpu_rate_percent=0)


def test_environment_is_scrubbed_case_insensitively() -> None:
    plan = make(environ={"PATH": "C:\\Windows", "GitHub_Token": "x", "Aws_Secret": "y"})
    assert "GitHub_Token" not in plan.env and "Aws_Secret" not in plan.env
    assert plan.env["TEMP"] == SANDBOX + "\\tmp" and plan.env["RINGFENCE_SANDBOX"] == "1"


def test_roots_that_would_open_too_much_are_refused() -> None:
    with pytest.raises(PolicyError, match="whole drive"):
        make(policy(writable=("C:\\",)))
    with pytest.raises(PolicyError, match="whole profile"):
        make(policy(writable=(HOME,)))
    with pytest.raises(PolicyError, match="not a directory"):
        make(policy(writable=("C:\\nothere",)))


def test_empty_command_is_refused() -> None:
    pol = policy()
    with pytest.raises(PolicyError, match="no command"):
        plan_windows(pol, [], facts_for(skeleton(), pol))


def test_not_set_up_is_said() -> None:
    plan = make(sids={}, install_id="")
    assert plan.setup_needed
    assert plan.user_sid == "{ringfence-offline}"
    assert any("ringfence windows setup" in w for w in plan.weaker)


def test_a_protected_symlink_is_refused() -> None:
    pol = policy()
    facts = facts_for(skeleton(), pol)
    with pytest.raises(UnavailableError, match="symlink"):
        plan_windows(pol, CMD, facts.replace(kinds={**facts.kinds,
                                                    WS + "\\.vscode": "symlink"}))


def test_render_text() -> None:
    text = render_windows_text(explain_windows(make()))
    lines = text.splitlines()
    assert lines[0] == "platform: windows"
    assert f"runs as: ringfence-offline ({OFFLINE}), group {GROUP}" in lines
    assert any(line.startswith("token: DISABLE_MAX_PRIVILEGE | LUA_TOKEN | WRITE_RESTRICTED")
               for line in lines)
    assert f"  {WS}\\.git\\hooks  [once] protected: read-only, cannot be deleted or renamed" \
        in lines
    assert any(line.startswith("job object: KILL_ON_JOB_CLOSE") for line in lines)
    assert "environment removed: GITHUB_TOKEN" in lines
    assert text.endswith("\n")
    text = render_windows_text(explain_windows(make(sids={}, install_id="")))
    assert text.splitlines()[0].endswith("(setup needed: ringfence windows setup)")


def test_a_later_run_of_the_same_policy_plans_the_same_aces() -> None:
    """The plan depends on the policy and the facts, not on the size of the tree: adding many
    files to the workspace changes nothing (no ACE grows with the workspace)."""
    pol = policy()
    tree = skeleton()
    before = plan_windows(pol, CMD, facts_for(tree, pol))
    for i in range(300):
        tree.add(f"{WS}\\src\\f{i}.py", "file", "S-me")
    after = plan_windows(pol, CMD, facts_for(tree, pol))
    assert before.acls == after.acls
    assert all(not wp.is_within(a.path, WS + "\\src") for a in after.acls)
