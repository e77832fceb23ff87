"""What ringfence has added to a Windows host, and the actions a run or a cleanup takes. Pure.

The manifest (JSON in ringfence's state directory, which the sandbox users cannot read) records
every user, group, firewall rule, directory and ACE ringfence adds, so that:

- a run does no ACL work that is already done: each ACE of the plan is compared with what is
  on its object now (facts ``aces_present``: the DACLs of the recorded paths among this run's
  roots, protected, pinned and deny-read paths, a bounded list) and made only if it is missing
  (the first time, or after the user deleted and re-created ``.vscode``); the work of a run is
  bounded by the number of guarded paths, never by the size of the workspace or of TEMP;
- ``ringfence windows cleanup`` removes exactly what is recorded, and nothing else (Codex users
  found hundreds of stale SIDs and Modify granted on ``C:\\``).
"""

from __future__ import annotations

from ..policy.model import Frozen
from . import paths as wp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, ClassVar

    from .plan import WindowsPlan

VERSION = 1


class ManifestAce(Frozen):
    __slots__ = ("path", "sddl")
    path: str
    sddl: str


class Manifest(Frozen):
    """Also the results of the one-time scans: ``scanned`` (guarded trees already scanned for
    children with ACEs of their own), ``exceptions`` (what those scans found) and ``open_dirs``
    (directories where Everyone, Users, Authenticated Users or INTERACTIVE hold DELETE_CHILD,
    found by setup)."""

    __slots__ = ("version", "install_id", "group", "users", "firewall", "dirs", "aces",
                 "scanned", "exceptions", "open_dirs", "wfp_filters")
    version: int
    install_id: str
    group: tuple[str, str]
    users: tuple[tuple[str, str, str], ...]
    firewall: tuple[str, ...]
    dirs: tuple[str, ...]
    aces: tuple[ManifestAce, ...]
    scanned: tuple[str, ...]
    exceptions: tuple[str, ...]
    open_dirs: tuple[str, ...]
    wfp_filters: tuple[str, ...]
    _defaults: ClassVar[Mapping[str, Any]] = {
        "version": VERSION, "install_id": "", "group": ("", ""), "users": (), "firewall": (),
        "dirs": (), "aces": (), "scanned": (), "exceptions": (), "open_dirs": (),
        "wfp_filters": (),
    }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "install_id": self.install_id, "group": list(self.group),
            "users": [list(u) for u in self.users], "firewall": list(self.firewall),
            "dirs": list(self.dirs), "aces": [[a.path, a.sddl] for a in self.aces],
            "scanned": list(self.scanned), "exceptions": list(self.exceptions),
            "open_dirs": list(self.open_dirs), "wfp_filters": list(self.wfp_filters),
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "manifest") -> Manifest:
        import uuid

        from ..errors import SandboxError

        try:
            if data["version"] != VERSION:
                raise SandboxError(f"{source}: version {data['version']!r} is not {VERSION}; "
                                   "run ringfence windows cleanup with the ringfence that "
                                   "wrote it")
            return cls(
                version=VERSION, install_id=str(data["install_id"]),
                group=(str(data["group"][0]), str(data["group"][1])),
                users=tuple((str(r), str(n), str(s)) for r, n, s in data["users"]),
                firewall=tuple(str(x) for x in data["firewall"]),
                dirs=tuple(str(x) for x in data["dirs"]),
                aces=tuple(ManifestAce(path=str(p), sddl=str(s)) for p, s in data["aces"]),
                scanned=tuple(str(x) for x in data.get("scanned", ())),
                exceptions=tuple(str(x) for x in data.get("exceptions", ())),
                open_dirs=tuple(str(x) for x in data.get("open_dirs", ())),
                wfp_filters=tuple(str(uuid.UUID(str(x))) for x in data.get("wfp_filters", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise SandboxError(f"{source}: not a ringfence manifest; it was changed by hand "
                               "or is damaged; run ringfence windows setup again") from None

    def has(self, path: str, sddl: str) -> bool:
        k = wp.key(path)
        return any(wp.key(a.path) == k and a.sddl == sddl for a in self.aces)

    def sids(self) -> dict[str, str]:
        """``group``/``offline``/``online`` → SID, for ``WindowsFacts.sids``."""
        out = {"group": self.group[1]} if self.group[1] else {}
        out.update({role: sid for role, _, sid in self.users})
        return out


class Action(Frozen):
    """One step: ``op`` is ``add-ace``, ``remove-ace``, ``create-placeholder``,
    ``remove-placeholder``, ``remove-rule``, ``remove-filter`` (a WFP filter key),
    ``remove-sublayer``, ``delete-user``, ``delete-group`` or ``remove-dir``; ``detail`` the SDDL
    of the ACE or the name of the thing."""

    __slots__ = ("op", "path", "detail")
    op: str
    path: str
    detail: str


def run_actions(plan: WindowsPlan, aces_present: Iterable[tuple[str, str]] = ()
                ) -> tuple[tuple[Action, ...], tuple[Action, ...]]:
    """``(before, after)``: what a run does before the command starts and after it ends;
    ``aces_present``: ``(path, sddl)`` of the explicit ACEs on the recorded objects now."""
    present = {(wp.key(p), s) for p, s in aces_present}
    before: list[Action] = []
    after: list[Action] = []
    placeholders = {wp.key(p.path): p for p in plan.placeholders}
    for ph in plan.placeholders:
        before.append(Action(op="create-placeholder", path=ph.path, detail=ph.kind))
    for acl in plan.acls:
        for ace in acl.aces:
            sddl = ace.sddl()
            if acl.phase == "run" or (wp.key(acl.path), sddl) not in present:
                before.append(Action(op="add-ace", path=acl.path, detail=sddl))
    for key in placeholders:
        ph = placeholders[key]
        after.append(Action(op="remove-placeholder", path=ph.path, detail=ph.kind))
    return tuple(before), tuple(after)


def record(manifest: Manifest, plan: WindowsPlan, done: Iterable[Action]) -> Manifest:
    """The manifest after ``done`` (ACEs on placeholders are not kept: they go with them)."""
    run_paths = {wp.key(a.path) for a in plan.acls if a.phase == "run"}
    aces = list(manifest.aces)
    for action in done:
        if action.op != "add-ace" or wp.key(action.path) in run_paths:
            continue
        if not manifest.has(action.path, action.detail) and ManifestAce(
                path=action.path, sddl=action.detail) not in aces:
            aces.append(ManifestAce(path=action.path, sddl=action.detail))
    result: Manifest = manifest.replace(aces=tuple(aces))
    return result


def cleanup_actions(manifest: Manifest) -> tuple[Action, ...]:
    """Everything the manifest records, removed: ACEs deepest path first, then firewall rules,
    WFP filters (each recorded key) and ringfence's sublayer, users, the group, and ringfence's
    directories."""
    out = [Action(op="remove-ace", path=a.path, detail=a.sddl)
           for a in sorted(manifest.aces, key=lambda a: (-a.path.count("\\"), wp.key(a.path),
                                                          a.sddl))]
    out += [Action(op="remove-rule", path="", detail=name) for name in manifest.firewall]
    out += [Action(op="remove-filter", path="", detail=key) for key in manifest.wfp_filters]
    if manifest.wfp_filters:
        from .wfp import SUBLAYER_KEY

        out.append(Action(op="remove-sublayer", path="", detail=SUBLAYER_KEY))
    out += [Action(op="delete-user", path="", detail=name) for _, name, _ in manifest.users]
    if manifest.group[0]:
        out.append(Action(op="delete-group", path="", detail=manifest.group[0]))
    out += [Action(op="remove-dir", path=d, detail="")
            for d in sorted(manifest.dirs, key=lambda d: -d.count("\\"))]
    return tuple(out)
