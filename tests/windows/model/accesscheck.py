"""TEST INSTRUMENT — a model of the Windows access check on NTFS. Not enforcement.

Nothing in ringfence imports this. It exists so that the Windows plan can be checked on Linux: the
tests apply a plan's ACEs to a modelled file tree and ask this model whether a sandboxed token
may read, write or delete each object. It follows the rules in /work/shared/WINDOWS-NOTES.md
("Rules for an access-check model"), which cite MS-DTYP 2.5.3.2, MS-FSA 2.1.5.1.2.1, Microsoft's
AccessCheck and restricted-token pages, ReactOS's accesschk.c and Forshaw's emulation:

- generic bits are mapped with the file GENERIC_MAPPING, in the request and in every ACE;
- the owner gets READ_CONTROL | WRITE_DAC (unless an OWNER RIGHTS ACE is present), but with
  restricting SIDs only if the owner is also one of them;
- pass 1 walks the DACL in stored order with the user SID and enabled groups (deny ACEs also
  match deny-only SIDs), skipping inherit-only ACEs: an allow clears its bits, a deny that hits a
  remaining bit denies, bits left at the end deny;
- pass 2 (restricting SIDs) walks again with the restricting SIDs; with WRITE_RESTRICTED it runs
  only when the request holds a write bit (``WRITE_BITS`` = 0x010D0116 for files);
- DELETE denied on a file is granted when its parent grants FILE_DELETE_CHILD;
- a new object's DACL is its explicit ACEs followed by what it inherits (OI / CI / NP / IO),
  unless its DACL is protected.

Two points are UNVERIFIED in the sources and are switches, so the tests run both ways:
``delete_child_is_write`` (whether FILE_DELETE_CHILD alone triggers pass 2) and
``recheck_only_write_bits`` (whether pass 2 rechecks the whole request or only its write bits).
Privileges other than SeChangeNotify are not modelled (the sandbox token has no other).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GENERIC_READ, GENERIC_WRITE, GENERIC_EXECUTE, GENERIC_ALL = (
    0x80000000, 0x40000000, 0x20000000, 0x10000000)
FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_GENERIC_EXECUTE = 0x120089, 0x120116, 0x1200A0
FILE_ALL_ACCESS = 0x1F01FF
READ_CONTROL, WRITE_DAC, DELETE, SYNCHRONIZE = 0x20000, 0x40000, 0x10000, 0x100000
FILE_DELETE_CHILD = 0x40
ACCESS_SYSTEM_SECURITY, WRITE_OWNER = 0x1000000, 0x80000
WRITE_BITS = ((FILE_GENERIC_WRITE & ~(FILE_GENERIC_READ | FILE_GENERIC_EXECUTE))
              | DELETE | WRITE_DAC | WRITE_OWNER | ACCESS_SYSTEM_SECURITY)
assert WRITE_BITS == 0x010D0116
OI, CI, NP, IO, INHERITED = 0x1, 0x2, 0x4, 0x8, 0x10
OWNER_RIGHTS = "S-1-3-4"


def map_generic(mask: int) -> int:
    out = mask & ~(GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL)
    if mask & GENERIC_READ:
        out |= FILE_GENERIC_READ
    if mask & GENERIC_WRITE:
        out |= FILE_GENERIC_WRITE
    if mask & GENERIC_EXECUTE:
        out |= FILE_GENERIC_EXECUTE
    if mask & GENERIC_ALL:
        out |= FILE_ALL_ACCESS
    return out


@dataclass(frozen=True)
class MAce:
    action: str  # "allow" | "deny"
    sid: str
    mask: int
    flags: int = 0


@dataclass(frozen=True)
class MToken:
    user: str
    groups: frozenset[str]
    deny_only: frozenset[str] = frozenset()
    restricting: frozenset[str] | None = None
    write_restricted: bool = False


@dataclass(frozen=True)
class Switches:
    delete_child_is_write: bool = False
    recheck_only_write_bits: bool = False


def _walk(dacl: list[MAce] | None, allow_sids: frozenset[str], deny_sids: frozenset[str],
          rem: int, owner_sid: str | None) -> bool:
    if dacl is None:
        return True
    for ace in dacl:
        if rem == 0:
            break
        if ace.flags & IO:
            continue
        sid = owner_sid if ace.sid == OWNER_RIGHTS and owner_sid else ace.sid
        mask = map_generic(ace.mask)
        if ace.action == "allow" and sid in allow_sids:
            rem &= ~mask
        elif ace.action == "deny" and sid in deny_sids and mask & rem:
            return False
    return rem == 0


def access_check(token: MToken, owner: str, dacl: list[MAce] | None, desired: int,
                 sw: Switches = Switches()) -> bool:
    """Whether ``token`` gets every bit of ``desired`` on an object with this owner and DACL."""
    rem = map_generic(desired)
    enabled = frozenset({token.user, *token.groups})
    has_owner_rights = dacl is not None and any(
        a.sid == OWNER_RIGHTS and not a.flags & IO for a in dacl)
    if (owner in enabled and not has_owner_rights
            and (token.restricting is None or owner in token.restricting)):
        rem &= ~(READ_CONTROL | WRITE_DAC)
    if rem == 0:
        return True
    saved = rem
    if not _walk(dacl, enabled, enabled | token.deny_only, rem, owner if owner in enabled
                 else None):
        return False
    if token.restricting is not None:
        write_bits = WRITE_BITS | (FILE_DELETE_CHILD if sw.delete_child_is_write else 0)
        if token.write_restricted and not saved & write_bits:
            return True
        second = saved & write_bits if (token.write_restricted and sw.recheck_only_write_bits) \
            else saved
        r = token.restricting
        if not _walk(dacl, r, r, second, owner if owner in r else None):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# A file tree with inheritance.

@dataclass
class Node:
    name: str
    kind: str  # "dir" | "file"
    parent: Node | None
    owner: str
    explicit: list[MAce] = field(default_factory=list)
    protected: bool = False  # SE_DACL_PROTECTED: inherits nothing
    children: dict[str, Node] = field(default_factory=dict)

    def path(self) -> str:
        if self.parent is None:
            return self.name  # "C:\\"
        base = self.parent.path()
        return base + self.name if base.endswith("\\") else base + "\\" + self.name


class Tree:
    """Objects by path (case-insensitive, like NTFS); ACLs with inheritance."""

    def __init__(self, owner: str) -> None:
        self.root = Node("C:\\", "dir", None, owner)

    def get(self, path: str) -> Node | None:
        parts = [p for p in path[3:].split("\\") if p]
        node = self.root
        for part in parts:
            found = next((c for k, c in node.children.items() if k.upper() == part.upper()),
                         None)
            if found is None:
                return None
            node = found
        return node

    def add(self, path: str, kind: str, owner: str, aces: list[MAce] | None = None,
            protected: bool = False) -> Node:
        parent_path, _, name = path.rstrip("\\").rpartition("\\")
        parent = self.get(parent_path + ("\\" if len(parent_path) == 2 else ""))
        assert parent is not None and parent.kind == "dir", f"no parent dir for {path}"
        node = Node(name, kind, parent, owner, list(aces or []), protected)
        parent.children[name] = node
        return node

    def nodes(self) -> list[Node]:
        out: list[Node] = []
        stack = [self.root]
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(n.children.values())
        return out

    def add_explicit(self, node: Node, ace: MAce) -> None:
        """As SetEntriesInAcl + SetSecurityInfo do: explicit deny ACEs before explicit allows."""
        if ace in node.explicit:
            return
        node.explicit.append(ace)
        node.explicit.sort(key=lambda a: 0 if a.action == "deny" else 1)

    def dacl(self, node: Node) -> list[MAce]:
        own = list(node.explicit)
        if node.protected or node.parent is None:
            return own
        inherited: list[MAce] = []
        for ace in self.dacl(node.parent):
            if node.kind == "dir":
                if ace.flags & CI:
                    flags = 0 if ace.flags & NP else ace.flags & (OI | CI)
                    inherited.append(MAce(ace.action, ace.sid, ace.mask, flags | INHERITED))
                elif ace.flags & OI and not ace.flags & NP:
                    inherited.append(MAce(ace.action, ace.sid, ace.mask, OI | IO | INHERITED))
            elif ace.flags & OI:
                inherited.append(MAce(ace.action, ace.sid, ace.mask, INHERITED))
        return own + inherited

    def can(self, token: MToken, node: Node, desired: int, sw: Switches = Switches()) -> bool:
        """The file-system check: DELETE may also come from the parent's FILE_DELETE_CHILD."""
        if access_check(token, node.owner, self.dacl(node), desired, sw):
            return True
        if desired & DELETE and node.parent is not None:
            rest = desired & ~DELETE
            return ((not rest or access_check(token, node.owner, self.dacl(node), rest, sw))
                    and access_check(token, node.parent.owner, self.dacl(node.parent),
                                     FILE_DELETE_CHILD, sw))
        return False
