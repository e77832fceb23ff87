"""A modelled Windows host for the plan tests: a file tree with realistic ACLs, the facts the
planner would gather from it, the sandbox token a plan describes, and the plan applied to the
tree. Uses the TEST INSTRUMENT in tests/windows/model (not enforcement)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ringfence.plan import find_protected
from ringfence.policy.model import DEFAULT_DENY_READ_HOME, Policy
from ringfence.windows import paths as wp
from ringfence.windows.plan import (
    LOGON_SID,
    WINDOWS_DENY_READ_HOME,
    WindowsFacts,
    WindowsPlan,
)
from tests.windows.model.accesscheck import (
    CI,
    FILE_ALL_ACCESS,
    FILE_DELETE_CHILD,
    IO,
    OI,
    MAce,
    MToken,
    Node,
    Tree,
    map_generic,
)

SYSTEM, ADMINS, USERS, EVERYONE = "S-1-5-18", "S-1-5-32-544", "S-1-5-32-545", "S-1-1-0"
AUTH_USERS, INTERACTIVE = "S-1-5-11", "S-1-5-4"
ME = "S-1-5-21-1-2-3-1001"
GROUP = "S-1-5-21-1-2-3-1010"
OFFLINE = "S-1-5-21-1-2-3-1011"
ONLINE = "S-1-5-21-1-2-3-1012"
LOGON = "S-1-5-5-0-4242"
INSTALL_ID = "00112233445566778899aabbccddeeff"
SIDS = {"group": GROUP, "offline": OFFLINE, "online": ONLINE}

HOME = "C:\\Users\\me"
WS = HOME + "\\proj"
DATA = "C:\\data"
SHARED = "C:\\ProgramData\\shared"
CONFIG = HOME + "\\AppData\\Roaming\\ringfence"
STATE = HOME + "\\AppData\\Local\\ringfence"
SANDBOX = HOME + "\\AppData\\Local\\ringfence-sandbox"
RX, MODIFY = 0x1200A9, 0x1301BF


def skeleton() -> Tree:
    """C:\\ with the ACLs a fresh Windows install has (simplified, the parts that matter)."""
    t = Tree(SYSTEM)
    t.root.explicit = [
        MAce("allow", SYSTEM, FILE_ALL_ACCESS, OI | CI), MAce("allow", ADMINS, FILE_ALL_ACCESS,
                                                              OI | CI),
        MAce("allow", USERS, RX, OI | CI),
        MAce("allow", AUTH_USERS, 0x4, 0),  # create folders in C:\ itself
        MAce("allow", AUTH_USERS, MODIFY, OI | CI | IO),  # and modify what they create
    ]
    sysacl = [MAce("allow", SYSTEM, FILE_ALL_ACCESS, OI | CI),
              MAce("allow", ADMINS, FILE_ALL_ACCESS, OI | CI), MAce("allow", USERS, RX, OI | CI)]
    t.add("C:\\Windows", "dir", SYSTEM, list(sysacl), protected=True)
    t.add("C:\\Windows\\notepad.exe", "file", SYSTEM)
    t.add("C:\\ProgramData", "dir", SYSTEM)
    t.add(SHARED, "dir", ME, [MAce("allow", EVERYONE, FILE_ALL_ACCESS, OI | CI)])
    t.add(SHARED + "\\board.txt", "file", ME)
    t.add("C:\\Users", "dir", SYSTEM, [*sysacl, MAce("allow", EVERYONE, RX, OI | CI)],
          protected=True)
    t.add(HOME, "dir", ME, [MAce("allow", SYSTEM, FILE_ALL_ACCESS, OI | CI),
                            MAce("allow", ADMINS, FILE_ALL_ACCESS, OI | CI),
                            MAce("allow", ME, FILE_ALL_ACCESS, OI | CI)], protected=True)
    for d in (".ssh", "AppData", "AppData\\Roaming", "AppData\\Roaming\\Microsoft",
              "AppData\\Roaming\\Microsoft\\Credentials", "AppData\\Local", "AppData\\Roaming\\"
              "ringfence", "AppData\\Local\\ringfence", "AppData\\Local\\ringfence-sandbox",
              "other", "proj", "proj\\.git", "proj\\.git\\hooks", "proj\\.git\\objects",
              "proj\\src", "proj\\.vscode", "proj\\secrets"):
        t.add(HOME + "\\" + d, "dir", ME)
    for f in (".ssh\\id_ed25519", ".netrc", "AppData\\Roaming\\Microsoft\\Credentials\\blob",
              "AppData\\Local\\ringfence\\manifest.json", "other\\notes.txt",
              "proj\\.git\\config", "proj\\.git\\HEAD", "proj\\.git\\hooks\\pre-commit.sample",
              "proj\\.git\\objects\\ab", "proj\\src\\main.py", "proj\\.vscode\\tasks.json",
              "proj\\secrets\\token.txt", "proj\\README.md"):
        t.add(HOME + "\\" + f, "file", ME)
    t.add(DATA, "dir", ME)  # made by the user in C:\: Authenticated Users may modify it
    t.add(DATA + "\\in.txt", "file", ME)
    return t


def materialize(tree: Tree, base: Path) -> None:
    for node in tree.nodes():
        p = to_posix(node.path(), base)
        if node.kind == "dir":
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("")


def to_posix(path: str, base: Path) -> Path:
    return base.joinpath(path[0], *[c for c in path[3:].split("\\") if c])


def from_posix(path: str, base: Path) -> str:
    rel = os.path.relpath(path, base).split(os.sep)
    return f"{rel[0]}:\\" + "\\".join(rel[1:])


def facts_for(tree: Tree, policy: Policy, **changes: Any) -> WindowsFacts:
    """What ``gather_facts`` would report for this tree (find_protected runs on a real copy)."""
    kinds = {n.path(): n.kind for n in tree.nodes()}
    roots = [*policy.writable_roots()]
    if policy.profile == "workspace-write":
        roots.append(SANDBOX)
    protected: list[tuple[str, str]] = []
    test_root = Path(os.environ.get("RINGFENCE_TEST_ROOT",
                                    Path(__file__).resolve().parents[2] / ".test-tmp"))
    test_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=test_root) as tmp:
        base = Path(tmp)
        materialize(tree, base)
        for root in roots:
            if tree.get(root) is None:
                continue
            for path, why in find_protected(str(to_posix(root, base)), policy.protected):
                protected.append((from_posix(path, base), why))
    deny = deny_read_expected(tree, policy)
    guarded = deny + [p for p, _ in protected]
    exceptions = [n.path() for n in tree.nodes()
                  if any(wp.is_within(n.path(), d) and wp.key(n.path()) != wp.key(d)
                         for d in guarded) and (n.explicit or n.protected)]
    others = {EVERYONE, USERS, AUTH_USERS, INTERACTIVE}
    open_dirs = [n.path() for n in tree.nodes() if n.kind == "dir" and any(
        a.action == "allow" and a.sid in others and map_generic(a.mask) & FILE_DELETE_CHILD
        for a in n.explicit)]
    values: dict[str, Any] = {
        "home": HOME, "username": "me", "environ": {"PATH": "C:\\Windows", "USERPROFILE": HOME,
                                                   "GITHUB_TOKEN": "FAKE"},
        "kinds": kinds, "protected_paths": tuple(protected), "acl_exceptions": tuple(exceptions),
        "open_dirs": tuple(open_dirs),
        "sids": dict(SIDS), "install_id": INSTALL_ID, "config_dir": CONFIG, "state_dir": STATE,
        "sandbox_dir": SANDBOX,
    }
    values.update(changes)
    return WindowsFacts(**values)


def deny_read_expected(tree: Tree, policy: Policy) -> list[str]:
    """The deny-read paths the policy names that exist, computed from the policy alone."""
    wanted = [wp.join(HOME, p) for p in (*DEFAULT_DENY_READ_HOME, *WINDOWS_DENY_READ_HOME)]
    wanted += [CONFIG, STATE, *policy.deny_read]
    return [p for p in wanted if tree.get(p) is not None]


def token_for(plan: WindowsPlan) -> MToken:
    assert plan.token is not None
    restricting = frozenset(LOGON if s == LOGON_SID else s for s, _ in
                            plan.token.restricting_sids)
    user = OFFLINE if plan.policy.network == "off" else ONLINE
    return MToken(user=user, groups=frozenset({GROUP, USERS, EVERYONE, AUTH_USERS, INTERACTIVE,
                                               LOGON}),
                  restricting=restricting, write_restricted=True)


def apply(tree: Tree, plan: WindowsPlan) -> None:
    """Placeholders made, then every ACE of the plan added to its object."""
    for ph in plan.placeholders:
        tree.add(ph.path, ph.kind, ME)
    for acl in plan.acls:
        node = tree.get(acl.path)
        assert node is not None, f"the plan puts ACEs on {acl.path}, which does not exist"
        for ace in acl.aces:
            tree.add_explicit(node, MAce(ace.action, ace.sid, ace.mask, ace.flags))


def within(node: Node, path: str) -> bool:
    return wp.is_within(node.path(), path)
