"""What an agent sees of a result: a JSON-ready dict with the output cut to fit a context.

Used by the MCP server and by the agent-framework examples, so every agent reads the same
shape: ``exit_code``, ``stdout``, ``stderr``, ``duration``, ``limits_hit``, ``denials`` (each
with ``kind``, ``target``, ``certain``, ``message`` and a ``suggestion`` ready for
``request_escalation``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .runner import Result

MAX_TEXT = 100_000  # characters of stdout and of stderr handed back to the model


def text(data: bytes | None, limit: int = MAX_TEXT) -> str:
    """Decoded output; past ``limit`` characters only the end is kept (errors are there)."""
    out = (data or b"").decode("utf-8", "replace")
    if len(out) > limit:
        cut = len(out) - limit
        out = f"[... {cut} characters cut; the end follows ...]\n" + out[-limit:]
    return out


def report(result: Result, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "stdout": text(result.stdout, limit),
        "stderr": text(result.stderr, limit),
        "duration": round(result.duration, 3),
        "limits_hit": list(result.limits_hit),
        "denials": [d.to_dict() for d in result.denials],
        # what the command left in a git index that ringfence undid or names (an agent can
        # tell its user; see Result.git_warnings)
        **({"git_warnings": list(result.git_warnings)} if result.git_warnings else {}),
    }
