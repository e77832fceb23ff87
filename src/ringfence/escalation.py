"""Escalation requests: asking for more than the policy allows (a writable root, the network,
more time), with a justification.

A request is what ``Denial.suggestion.to_request()`` makes::

    {"change": "writable_root", "value": "/home/me/data", "justification": "..."}

Deciding it is the approval engine's job (``ringfence.approval``: the approval mode, the rules,
asking the user). That engine is built separately and is not part of this build yet, so
``submit`` is the one place where it will be wired in, and until then it refuses every request
with an ``UnavailableError`` saying so. Nothing here grants anything.
"""

from __future__ import annotations

from .errors import PolicyError, UnavailableError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .policy.model import Policy

CHANGES = ("writable_root", "network", "allow_read", "timeout", "output", "memory",
           "max_processes", "cpu_seconds", "file_size")

NOT_WIRED = (
    "escalation is not available yet: ringfence's approval engine (ringfence.approval) is not "
    "part of this build, so no request can be approved; ask the user to widen the policy "
    "(e.g. --writable DIR, --network on, --timeout) and restart"
)


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


def submit(request: Mapping[str, Any], policy: Policy) -> Policy:
    """Send ``request`` to the approval engine; the widened policy if it is approved.

    LEFT TO DO: wire to ``ringfence.approval`` (issue 4) once it is merged: decide by the
    approval mode and rules, ask the user through the caller (a CLI prompt, an MCP client's
    elicitation), and return ``policy`` widened by exactly the approved change. Until then
    every request is refused.
    """
    check(request)
    raise UnavailableError(NOT_WIRED)
