"""The plan's WFP rules → filter specs (pure, golden), the manifest's record of their keys, and
the group-policy check's reading of LocalPolicyModifyState.

Goldens: tests/golden/windows_wfp/*.json; rewrite after an intended change with
RINGFENCE_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from ringfence.errors import SandboxError
from ringfence.windows.manifest import Manifest, cleanup_actions
from ringfence.windows.plan import FirewallRule, firewall_rules
from ringfence.windows.wfp import (
    BLOCK_WEIGHT,
    FIELDS,
    LAYERS,
    PERMIT_WEIGHT,
    SUBLAYER_KEY,
    explain_specs,
    filter_key,
    filter_specs,
    policy_state_problem,
)
from tests.windows.world import GROUP, INSTALL_ID, OFFLINE

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "windows_wfp"
UPDATE = os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1"
USER_SD = f"O:LSD:(A;;CC;;;{OFFLINE})"


@pytest.mark.parametrize("name,proxy", [("off", None), ("allowlist_proxy", 8123)])
def test_golden(name: str, proxy: int | None) -> None:
    specs = filter_specs(firewall_rules("off", OFFLINE, proxy_port=proxy), INSTALL_ID)
    got = json.dumps(explain_specs(specs), indent=1, sort_keys=True) + "\n"
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(got)
    assert got == path.read_text()


def _conds(spec: object) -> dict[str, object]:
    return {c.field: c.value for c in spec.conditions}  # type: ignore[attr-defined]


def test_every_filter_matches_only_the_offline_user() -> None:
    """A filter without the user condition would cut the whole machine off (or, as a permit,
    let anyone through): the first condition of every filter is ALE_USER_ID with the rule's
    security descriptor naming the offline user's SID."""
    for proxy in (None, 8123):
        for spec in filter_specs(firewall_rules("off", OFFLINE, proxy_port=proxy), INSTALL_ID):
            first = spec.conditions[0]
            assert (first.field, first.match, first.type, first.value) == (
                "ALE_USER_ID", "equal", "sd", USER_SD)
            assert sum(c.field == "ALE_USER_ID" for c in spec.conditions) == 1


def test_off_blocks_connects_icmp_and_dns_on_both_ip_versions() -> None:
    specs = filter_specs(firewall_rules("off", OFFLINE), INSTALL_ID)
    assert {s.action for s in specs} == {"block"}
    assert {s.layer for s in specs} == set(LAYERS)
    by_layer = {v: [s for s in specs if s.layer.endswith(v)] for v in ("V4", "V6")}
    for version, icmp in (("V4", 1), ("V6", 58)):
        specs_v = by_layer[version]
        # everything the user connects to, loopback included: only the user condition
        assert any(len(s.conditions) == 1 for s in specs_v)
        assert [_conds(s)["IP_PROTOCOL"] for s in specs_v
                if s.rule.endswith("icmp")] == [icmp]
        dns = {(_conds(s)["IP_PROTOCOL"], _conds(s)["IP_REMOTE_PORT"]) for s in specs_v
               if s.rule.endswith("dns")}
        assert dns == {(6, 53), (17, 53), (6, 853), (17, 853)}
    assert len(specs) == 2 * (1 + 1 + 4)
    assert filter_specs(firewall_rules("on", OFFLINE), INSTALL_ID) == ()


def test_the_allowlist_permit_is_loopback_tcp_to_the_proxy_port_only_and_outweighs_blocks(
) -> None:
    specs = filter_specs(firewall_rules("off", OFFLINE, proxy_port=8123), INSTALL_ID)
    permits = [s for s in specs if s.action == "permit"]
    assert len(permits) == 2  # V4 and V6
    for p in permits:
        assert _conds(p) == {"ALE_USER_ID": USER_SD, "IP_PROTOCOL": 6, "IP_REMOTE_PORT": 8123,
                             "FLAGS": 1}  # FWP_CONDITION_FLAG_IS_LOOPBACK
        assert [c.match for c in p.conditions if c.field == "FLAGS"] == ["flags_all_set"]
        assert p.weight == PERMIT_WEIGHT
    assert all(s.weight == BLOCK_WEIGHT < PERMIT_WEIGHT for s in specs if s.action == "block")


def test_filter_keys_are_unique_stable_and_per_install() -> None:
    """Setup run twice must replace its filters (same keys), two installs must not collide,
    and cleanup must be able to name each one."""
    rules = firewall_rules("off", OFFLINE, proxy_port=8123)
    a = filter_specs(rules, INSTALL_ID)
    assert len({s.key for s in a}) == len(a)
    assert [s.key for s in filter_specs(rules, INSTALL_ID)] == [s.key for s in a]
    assert not {s.key for s in a} & {s.key for s in filter_specs(rules, "ff" * 16)}
    assert all(uuid.UUID(s.key).version == 5 for s in a)
    assert a[0].key == filter_key(INSTALL_ID, a[0].name)
    assert SUBLAYER_KEY not in {s.key for s in a}


def test_identifiers_are_the_documented_guids() -> None:
    """fwpmu.h: ALE_AUTH_CONNECT_V4/V6 and the condition fields."""
    assert LAYERS["ALE_AUTH_CONNECT_V4"] == "c38d57d1-05a7-4c33-904f-7fbceee60e82"
    assert LAYERS["ALE_AUTH_CONNECT_V6"] == "4a72393b-319f-44bc-84c3-ba54dcb3b6b4"
    assert FIELDS["ALE_USER_ID"] == "af043a0a-b34d-4f86-979c-c90371af6e66"
    assert FIELDS["IP_REMOTE_PORT"] == "c35a604d-d22b-4e1a-91b4-68f674ee674b"


def test_rules_the_mapping_does_not_understand_are_refused() -> None:
    base = dict(name="x", layer="wfp", direction="out", action="block", user=USER_SD,
                protocol="any", remote="any", ports="any", why="")
    for change in ({"direction": "in"}, {"action": "allow"}, {"protocol": "sctp"},
                   {"remote": "10.0.0.1"}, {"protocol": "icmp", "ports": "53"}):
        with pytest.raises(ValueError):
            filter_specs([FirewallRule(**{**base, **change})], INSTALL_ID)
    firewall_only = FirewallRule(**{**base, "layer": "firewall"})
    assert filter_specs([firewall_only], INSTALL_ID) == ()


def test_manifest_records_filter_keys_and_cleanup_deletes_exactly_them() -> None:
    specs = filter_specs(firewall_rules("off", OFFLINE), INSTALL_ID)
    m = Manifest(install_id=INSTALL_ID, group=("ringfence-sandbox", GROUP),
                 wfp_filters=tuple(s.key for s in specs))
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m
    steps = cleanup_actions(m)
    assert [s.detail for s in steps if s.op == "remove-filter"] == [s.key for s in specs]
    assert [s.detail for s in steps if s.op == "remove-sublayer"] == [SUBLAYER_KEY]
    ops = [s.op for s in steps]
    assert ops.index("remove-sublayer") > max(i for i, o in enumerate(ops)
                                              if o == "remove-filter")
    assert "remove-sublayer" not in [s.op for s in cleanup_actions(m.replace(wfp_filters=()))]
    with pytest.raises(SandboxError, match="not a ringfence manifest"):
        Manifest.from_json({**m.to_json(), "wfp_filters": ["not-a-guid"]})
    old = m.to_json()
    del old["wfp_filters"]  # a manifest from before the WFP filters: still readable
    assert Manifest.from_json(old).wfp_filters == ()


def test_group_policy_state() -> None:
    """LocalPolicyModifyState: 0 OK; 2 only inbound local rules ignored (ours are outbound);
    1 GP_OVERRIDE and anything unreadable refuse, naming the setting."""
    assert policy_state_problem("0\r\n") is None
    assert policy_state_problem("2") is None
    problem = policy_state_problem("1")
    assert problem and "GP_OVERRIDE" in problem and "Apply local firewall rules" in problem
    assert "unreadable" in (policy_state_problem("") or "")
    assert policy_state_problem("7")
