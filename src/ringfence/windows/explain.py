"""``ringfence explain --platform windows``: the Windows plan for a command, on any OS.

On Windows the facts come from the host (``backend.gather_facts``). Elsewhere they are
*simulated* from this host so the plan can be read and reviewed anywhere: every path is shown on
drive ``C:`` (``/home/u/p`` → ``C:\\home\\u\\p``), kinds come from ``lstat`` of the real paths
(a symlink shows as ``symlink``), the sandbox users and the install id are placeholders, and
the plan says ``simulated: true``.
"""

from __future__ import annotations

import os
import sys

from . import paths as wp
from .plan import WINDOWS_DENY_READ_HOME, WindowsFacts, explain_windows, plan_windows
from .plan import render_windows_text as render_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from ..policy.model import Policy

__all__ = ["explain_for", "render_text", "simulated_facts"]


def _kind(path: str) -> str:
    """``plan._kind`` (lstat) in the Windows plan's words."""
    from ..plan import _kind as posix_kind

    kind = posix_kind(path)
    return {"link": "symlink", "other": "file"}.get(kind, kind)


def simulated_facts(policy: Policy) -> tuple[Policy, WindowsFacts]:
    """This (POSIX) host's policy and facts shown as a Windows host on drive C:."""
    from .. import _dirs
    from ..plan import find_protected
    from ..policy.model import DEFAULT_DENY_READ_HOME

    home = os.path.expanduser("~")
    cache = os.path.join(_dirs.cache_dir(), "sandbox")
    posix_paths = [home, cache, _dirs.config_dir(), _dirs.state_dir(), policy.workspace,
                   *policy.writable, *policy.deny_read]
    posix_paths += [os.path.join(home, p) for p in DEFAULT_DENY_READ_HOME]
    posix_paths += [os.path.join(home, *p.split("\\")) for p in WINDOWS_DENY_READ_HOME]
    protected: list[tuple[str, str]] = []
    for root in policy.writable_roots():
        for path, why in find_protected(root, policy.protected):
            protected.append((wp.from_posix(path), why))
            posix_paths += [path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))]
    kinds = {wp.from_posix(p): _kind(p) for p in posix_paths}
    kinds[wp.from_posix(cache)] = "dir"  # made on first use
    finals = {}
    for p in posix_paths:
        real = os.path.realpath(p)
        if real != p and os.path.exists(p):
            finals[wp.from_posix(p)] = wp.from_posix(real)
            kinds.setdefault(wp.from_posix(real), _kind(real))
    win_policy: Policy = policy.replace(
        workspace=wp.from_posix(policy.workspace),
        writable=tuple(wp.from_posix(p) for p in policy.writable),
        deny_read=tuple(wp.from_posix(p) for p in policy.deny_read),
    )
    facts = WindowsFacts(
        home=wp.from_posix(home), username=os.path.basename(home) or "user",
        environ=dict(os.environ), kinds=kinds, final_paths=finals,
        protected_paths=tuple(protected), config_dir=wp.from_posix(_dirs.config_dir()),
        state_dir=wp.from_posix(_dirs.state_dir()), sandbox_dir=wp.from_posix(cache),
        simulated=True,
    )
    return win_policy, facts


def explain_for(policy: Policy, command: Sequence[str], *, cwd: str | None = None
                ) -> dict[str, Any]:
    """The Windows plan's data for ``command`` under ``policy`` (see the module docstring)."""
    if sys.platform == "win32":
        from .backend import gather_facts

        facts = gather_facts(policy)
        win_policy = policy
        win_cwd = cwd
    else:
        win_policy, facts = simulated_facts(policy)
        win_cwd = wp.from_posix(cwd) if cwd else None
    data = explain_windows(plan_windows(win_policy, list(command), facts, cwd=win_cwd))
    data["simulated"] = facts.simulated
    return data
