"""ringfence: run an AI coding agent's commands in a sandbox on your own machine.

The public API (everything a user imports comes from here)::

    import ringfence

    result = ringfence.run(["pytest", "-q"], workspace="/src/app")
    print(result.exit_code, result.stdout, result.limits_hit)

    policy = ringfence.Policy(workspace="/src/app", network="off",
                              limits=ringfence.Limits(timeout=60, memory=2 << 30))
    ringfence.run("make test", policy)

    policy = ringfence.load_policy("policy.toml", workspace="/src/app")

Names are imported lazily so that ``import ringfence`` stays cheap.
"""

from __future__ import annotations

from .errors import (
    CommandError,
    PolicyError,
    RingfenceError,
    SandboxError,
    SessionError,
    UnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "ApprovalError", "ApprovalRequest", "AsyncSession", "CommandError", "Escalation", "Limits",
    "NetworkRules", "Options", "Plan", "Policy", "PolicyError", "Result", "RingfenceError",
    "Rule", "SandboxError", "Session", "SessionApprovals", "SessionError", "UnavailableError",
    "__version__", "arun", "check", "explain", "load_policy", "make_plan", "resolve_policy",
    "run",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .approval.gate import ApprovalError, ApprovalRequest, SessionApprovals, check
    from .approval.model import Escalation, Rule
    from .explain import explain
    from .network.rules import NetworkRules
    from .plan import Plan
    from .policy.load import Options, load_policy
    from .policy.load import resolve as resolve_policy
    from .policy.model import Limits, Policy
    from .runner import Result, arun, make_plan, run
    from .session import AsyncSession, Session

_LAZY = {
    "Limits": ("policy.model", "Limits"),
    "Policy": ("policy.model", "Policy"),
    "NetworkRules": ("network.rules", "NetworkRules"),
    "Options": ("policy.load", "Options"),
    "load_policy": ("policy.load", "load_policy"),
    "resolve_policy": ("policy.load", "resolve"),
    "Result": ("runner", "Result"),
    "run": ("runner", "run"),
    "arun": ("runner", "arun"),
    "ApprovalError": ("approval.gate", "ApprovalError"),
    "ApprovalRequest": ("approval.gate", "ApprovalRequest"),
    "SessionApprovals": ("approval.gate", "SessionApprovals"),
    "check": ("approval.gate", "check"),
    "Escalation": ("approval.model", "Escalation"),
    "Rule": ("approval.model", "Rule"),
    "make_plan": ("runner", "make_plan"),
    "Plan": ("plan", "Plan"),
    "explain": ("explain", "explain"),
    "Session": ("session", "Session"),
    "AsyncSession": ("session", "AsyncSession"),
}


def __getattr__(name: str) -> object:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ringfence' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value
