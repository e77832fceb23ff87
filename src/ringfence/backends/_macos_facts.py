"""Host facts for the macOS planner: a bounded number of ``lstat`` and ``realpath`` calls (never
a walk of the workspace). Portable on purpose: ``ringfence explain --platform macos`` uses it on
any OS; ``backends.macos`` uses it to run.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan_macos import MacFacts
    from ..policy.model import Policy


def gather_facts(policy: Policy, *, environ: dict[str, str] | None = None,
                 sandbox_exec: str | None = None) -> MacFacts:
    from .. import _dirs
    from ..plan import _kind, find_protected, own_files
    from ..plan_macos import SANDBOX_EXEC, MacFacts

    home = os.path.expanduser("~")
    if sys.platform == "win32":
        uid = -1
    else:
        uid = os.getuid()
    env = dict(os.environ if environ is None else environ)
    roots = policy.writable_roots()
    protected: list[tuple[str, str]] = []
    for root in roots:
        protected += find_protected(root, policy.protected)
    paths: list[str] = [*roots, *policy.deny_read]
    for path, _ in protected:
        paths.append(path)
        owner = next((r for r in roots if path.startswith(r.rstrip("/") + "/")), None)
        parent = os.path.dirname(path)
        while owner is not None and parent != owner and len(parent) > len(owner):
            paths.append(parent)  # every ancestor inside the root: refused if a link
            parent = os.path.dirname(parent)
    from ..plan_macos import MACOS_DENY_READ_HOME
    from ..policy.model import DEFAULT_DENY_READ_HOME

    deny = [os.path.join(home, p) for p in (*DEFAULT_DENY_READ_HOME, *MACOS_DENY_READ_HOME)]
    deny += [_dirs.config_dir(), _dirs.state_dir(), *policy.deny_read]
    paths += deny
    kinds = {p: _kind(p) for p in dict.fromkeys(paths)}
    realpaths = {p: os.path.realpath(p) for p, k in kinds.items() if k == "link"}
    # Seatbelt sees resolved paths: a secret store below a linked directory (~/.config a link
    # to elsewhere) is denied where it really is. One realpath per distinct parent directory.
    parents: dict[str, str] = {}
    for path in deny:
        if path in realpaths:
            continue
        parent = os.path.dirname(path)
        if parent not in parents:
            parents[parent] = os.path.realpath(parent)
        resolved = os.path.join(parents[parent], os.path.basename(path))
        if resolved != path:
            realpaths[path] = resolved
    ttys: list[str] = []
    if sys.platform != "win32":
        for fd in (0, 1, 2):  # the terminal the command inherits from ringfence
            try:
                if os.isatty(fd):
                    ttys.append(os.path.realpath(os.ttyname(fd)))
            except OSError:
                pass
    return MacFacts(
        home=home, uid=uid, environ=env, kinds=kinds, realpaths=realpaths,
        protected_paths=tuple(protected), config_dir=_dirs.config_dir(),
        state_dir=_dirs.state_dir(), cache_dir=_dirs.cache_dir(),
        sandbox_exec=sandbox_exec or SANDBOX_EXEC, ttys=tuple(dict.fromkeys(ttys)),
        own_files=own_files(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
