"""The plan's ``layer="wfp"`` rules → Windows Filtering Platform filter specs. Pure: runs and is
tested on any OS; ``_wfp`` (Windows only) applies the specs through fwpuclnt.dll.

Every filter lives in ringfence's own sublayer (``SUBLAYER_KEY``, a fixed GUID), is persistent
(it survives reboots and BFE restarts until ``ringfence windows cleanup`` deletes it) and
matches only the sandbox user's traffic: its first condition is ``FWPM_CONDITION_ALE_USER_ID``
with the rule's security descriptor (``O:LSD:(A;;CC;;;<user SID>)``; WFP grants the match when
an access check of the connecting token against it allows FWP_ACTRL_MATCH_FILTER, 0x1 = ``CC``).

All filters sit at ``ALE_AUTH_CONNECT_V4`` and ``_V6`` (outbound connects, the first datagram
to a new remote, ICMP). One filter per layer, protocol and port, so that no filter relies on
how WFP combines several conditions on the same field. Blocks have weight ``BLOCK_WEIGHT``; the
allowlist's permit of the proxy's loopback port has ``PERMIT_WEIGHT`` (higher: within one
sublayer the highest-weight matching filter decides).

Filter keys are derived (UUID 5) from the install id and the filter's name, so setup run twice
replaces its own filters instead of adding copies, and the manifest can name each one.
"""

from __future__ import annotations

from ..policy.model import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .plan import FirewallRule

SUBLAYER_KEY = "47001da6-5251-4191-bcb8-1b95ab07857a"
"""ringfence's WFP sublayer (fixed for every install: cleanup finds it by this key)."""
SUBLAYER_NAME = "ringfence sandbox"
SUBLAYER_WEIGHT = 0x8000
BLOCK_WEIGHT, PERMIT_WEIGHT = 4, 12  # FWP_UINT8 weights: range indexes 0..15

# fwpmu.h / fwpmtypes.h identifiers.
LAYERS = {
    "ALE_AUTH_CONNECT_V4": "c38d57d1-05a7-4c33-904f-7fbceee60e82",
    "ALE_AUTH_CONNECT_V6": "4a72393b-319f-44bc-84c3-ba54dcb3b6b4",
}
FIELDS = {
    "ALE_USER_ID": "af043a0a-b34d-4f86-979c-c90371af6e66",
    "IP_PROTOCOL": "3971ef2b-623e-4f9a-8cb1-6e79b806b9a7",
    "IP_REMOTE_PORT": "c35a604d-d22b-4e1a-91b4-68f674ee674b",
    "FLAGS": "632ce23b-5167-435c-86d7-e903684aa80c",
}
MATCH = {"equal": 0, "flags_all_set": 6}  # FWP_MATCH_TYPE
# FWP_DATA_TYPE (sd: FWP_SECURITY_DESCRIPTOR_TYPE, a pointer to an FWP_BYTE_BLOB)
DATA_TYPES = {"uint8": 1, "uint16": 2, "uint32": 3, "sd": 14}
ACTIONS = {"block": 0x1001, "permit": 0x1002}  # FWP_ACTION_BLOCK / _PERMIT (| TERMINATING)
FILTER_FLAG_PERSISTENT = 0x1
SUBLAYER_FLAG_PERSISTENT = 0x1
CONDITION_FLAG_IS_LOOPBACK = 0x1
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}


class Condition(Frozen):
    """One filter condition: ``field`` (a ``FIELDS`` name), ``match`` (a ``MATCH`` name),
    ``type`` (a ``DATA_TYPES`` name) and ``value`` (an int, or the SDDL text for ``sd``)."""

    __slots__ = ("field", "match", "type", "value")
    field: str
    match: str
    type: str
    value: int | str


class FilterSpec(Frozen):
    """One WFP filter, ready for ``_wfp.add_filter``."""

    __slots__ = ("key", "name", "rule", "layer", "action", "weight", "conditions")
    key: str
    name: str
    rule: str
    layer: str
    action: str
    weight: int
    conditions: tuple[Condition, ...]

    @property
    def layer_key(self) -> str:
        return LAYERS[self.layer]


def filter_key(install_id: str, name: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.UUID(SUBLAYER_KEY), f"{install_id}\0{name}"))


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def filter_specs(rules: Iterable[FirewallRule], install_id: str) -> tuple[FilterSpec, ...]:
    """The WFP filters for the plan's ``layer == "wfp"`` rules (others are firewall rules).

    Raises ValueError for a rule this mapping does not understand (a bug, not user input)."""
    out: list[FilterSpec] = []
    for rule in rules:
        if rule.layer != "wfp":
            continue
        if rule.action not in ACTIONS or rule.direction != "out":
            raise ValueError(f"WFP rule {rule.name!r}: {rule.direction} {rule.action}?")
        protocols = ["any"] if rule.protocol == "any" else _words(rule.protocol)
        ports: list[int | None] = ([None] if rule.ports in ("any", "-")
                                   else [int(p) for p in _words(rule.ports)])
        loopback_only = rule.remote == "loopback"
        if not loopback_only and not rule.remote.startswith("any"):
            raise ValueError(f"WFP rule {rule.name!r}: remote {rule.remote!r}")
        for version in ("V4", "V6"):
            for proto in protocols:
                if proto == ("icmpv6" if version == "V4" else "icmp"):
                    continue  # ICMP is IPv4's, ICMPv6 IPv6's
                if proto != "any" and proto not in PROTOCOLS:
                    raise ValueError(f"WFP rule {rule.name!r}: protocol {proto!r}")
                if ports != [None] and proto not in ("tcp", "udp"):
                    raise ValueError(f"WFP rule {rule.name!r}: ports need tcp or udp")
                for port in ports:
                    conds = [Condition(field="ALE_USER_ID", match="equal", type="sd",
                                       value=rule.user)]
                    if proto != "any":
                        conds.append(Condition(field="IP_PROTOCOL", match="equal",
                                               type="uint8", value=PROTOCOLS[proto]))
                    if port is not None:
                        conds.append(Condition(field="IP_REMOTE_PORT", match="equal",
                                               type="uint16", value=port))
                    if loopback_only:
                        conds.append(Condition(field="FLAGS", match="flags_all_set",
                                               type="uint32", value=CONDITION_FLAG_IS_LOOPBACK))
                    name = " ".join([rule.name, version,
                                     *([proto] if proto != "any" else []),
                                     *([str(port)] if port is not None else [])])
                    out.append(FilterSpec(
                        key=filter_key(install_id, name), name=name, rule=rule.name,
                        layer=f"ALE_AUTH_CONNECT_{version}", action=rule.action,
                        weight=PERMIT_WEIGHT if rule.action == "permit" else BLOCK_WEIGHT,
                        conditions=tuple(conds)))
    return tuple(out)


def explain_specs(specs: Iterable[FilterSpec]) -> list[dict[str, object]]:
    """JSON-ready filter specs (``ringfence explain --platform windows``, golden tests)."""
    return [{**s.to_dict(), "layer_key": s.layer_key} for s in specs]


def policy_state_problem(state: str) -> str | None:
    """What ``INetFwPolicy2.LocalPolicyModifyState`` (read by setup and status) means for the
    sandbox, or None when local outbound rules apply (0 ``FW_MODIFY_STATE_OK``, or 2
    ``INBOUND_BLOCKED``: only inbound local rules are ignored)."""
    state = state.strip()
    if state in ("0", "2"):  # OK, or INBOUND_BLOCKED: ringfence's rules are all outbound
        return None
    if state == "1":
        return ("group policy overrides local firewall rules (LocalPolicyModifyState 1, "
                "GP_OVERRIDE): the offline user's block rule would not apply; ask your "
                "administrator to allow local firewall rules (\"Apply local firewall rules\")")
    return (f"the firewall's LocalPolicyModifyState is {state or 'unreadable'!r}, not 0; "
            "ringfence cannot tell whether its rules would apply; ask your administrator")
