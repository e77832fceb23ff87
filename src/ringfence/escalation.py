"""Escalation requests: asking for more than the policy allows (a writable root, the network,
more time), with a justification.

A request is what ``Denial.suggestion.to_request()`` makes::

    {"change": "writable_root", "value": "/home/me/data", "justification": "..."}

Deciding it is the approval engine's job (``ringfence.approval``: the approval mode, the rules,
asking through the caller's approver). ``submit`` hands the request to it as an escalation of
the command ``escalate CHANGE VALUE``; an approved request returns the policy widened by exactly
that change. The engine can grant a writable root and the network (a ``network`` request that
names a host adds just that host to the allow list; without a value it is the whole network);
other changes (limits, a deny-read path) are refused here with the option that would give them
on a new run.
"""

from __future__ import annotations

from .errors import PolicyError, UnavailableError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .policy.model import Policy

CHANGES = ("writable_root", "network", "allow_domain", "allow_port", "allow_read", "timeout",
           "output", "memory", "max_processes", "cpu_seconds", "file_size")

ENGINE_CHANGES = ("writable_root", "network")


def check(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request in canonical form; ``PolicyError`` naming what is wrong with it."""
    change = request.get("change")
    if change not in CHANGES:
        raise PolicyError(f"escalation change {change!r} is unknown; use one of "
                          f"{', '.join(CHANGES)}")
    justification = str(request.get("justification") or "").strip()
    if not justification:
        raise PolicyError("an escalation request needs a justification: say why the command "
                          "needs it")
    return {"change": change, "value": request.get("value"), "justification": justification}


def submit(request: Mapping[str, Any], policy: Policy, *, approver: Any = None,
           cwd: str | None = None) -> Policy:
    """Send ``request`` to the approval engine; the widened policy if it is approved.

    ``approver`` is the approval engine's callback (``ringfence.approval.gate.Approver``): it
    gets the question and answers once / session / always / deny. Without one, only what the
    rules and mode grant without asking is granted. Raises ``ApprovalError`` (refused, with the
    rule or option that would allow it) or ``PolicyError`` (a malformed request).
    """
    import os

    from .approval.gate import open_gate
    from .approval.model import Escalation

    req = check(request)
    change, value = req["change"], req["value"]
    if change not in ENGINE_CHANGES:
        option = {"timeout": "--timeout", "memory": "--memory", "max_processes":
                  "--max-processes", "allow_read": "a narrower deny_read in your config",
                  "allow_domain": f"--allow-domain {value}",
                  "allow_port": f"--allow-port {value}"}.get(
                      change, f"[limits] {change} in your config")
        raise UnavailableError(
            f"escalation {change!r} cannot be granted to a running sandbox; ask the user to "
            f"start a new one with {option}")
    if change == "writable_root":
        if not isinstance(value, str) or not os.path.isabs(value):
            raise PolicyError("escalation writable_root needs an absolute directory as value")
        value = os.path.realpath(value)
        from .plan import _inside

        for root in policy.writable_roots():
            real = os.path.realpath(root)
            if _inside(value, real):
                # the command can write there: it could swap the directory for a link to
                # another one after the question, so the grant would not be what was approved
                raise PolicyError(f"escalation writable_root {value}: it is inside the "
                                  f"writable root {real} already; ask for a directory "
                                  "outside the writable roots")
        esc = Escalation(writable=(value,), justification=req["justification"])
    elif value is None or value == "":
        # the whole network (mode on), and the question says so
        esc = Escalation(network=True, justification=req["justification"])
    else:
        # a host: that host on the allow list, not the whole network
        from .network.rules import check_pattern

        if not isinstance(value, str):
            raise PolicyError("escalation network takes a host name as value (or none for "
                              "the whole network)")
        value = check_pattern(value)
        esc = Escalation(hosts=(value,), justification=req["justification"])
    # the command names what is granted; an "always" rule for it grants exactly that root or
    # host (not its kind), so a real program spelled so gets nothing else with it
    command = ("escalate", change, str(value) if value is not None else "")
    gate = open_gate(policy, command, cwd=cwd, escalation=esc, approver=approver)
    widened: Policy = gate.policy
    return widened
