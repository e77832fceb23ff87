"""The setup manifest: ACL work once per root, denies re-checked, cleanup removes exactly what
was added (no ACL pollution)."""

from __future__ import annotations

import json

import pytest

from ringfence.errors import SandboxError
from ringfence.windows.manifest import (
    Action,
    Manifest,
    ManifestAce,
    cleanup_actions,
    record,
    run_actions,
)
from tests.windows.model.accesscheck import MAce
from tests.windows.test_plan import make
from tests.windows.world import GROUP, INSTALL_ID, OFFLINE, ONLINE, WS, apply, skeleton

BASE = Manifest(install_id=INSTALL_ID, group=("ringfence-sandbox", GROUP),
                users=(("offline", "ringfence-offline", OFFLINE),
                       ("online", "ringfence-online", ONLINE)),
                firewall=("ringfence offline: block outbound",), dirs=("C:\\rf",))


def test_first_run_adds_every_ace_and_a_second_run_adds_none() -> None:
    plan = make()
    before, after = run_actions(plan)
    n_aces = sum(len(a.aces) for a in plan.acls)
    assert sum(1 for a in before if a.op == "add-ace") == n_aces
    manifest = record(BASE, plan, before)
    # the next run: every recorded ACE is still on its object
    present = [(a.path, a.sddl) for a in manifest.aces]
    before2, after2 = run_actions(plan, present)
    assert [a.op for a in before2 if a.op == "add-ace"] == [
        "add-ace" for acl in plan.acls if acl.phase == "run" for _ in acl.aces]
    assert before2.count(Action(op="create-placeholder", path=WS + "\\.envrc", detail="dir")) == 1
    assert after2 == after
    assert {a.op for a in after2} == {"remove-placeholder"}
    assert record(manifest, plan, before2) == manifest  # placeholders' ACEs are not kept


def test_a_deny_that_disappeared_is_added_again() -> None:
    """The user deleted and re-created ``.vscode`` between runs: its deny ACE is gone, although
    the manifest lists it. The run reads the object's DACL and puts the deny back."""
    plan = make()
    before, _ = run_actions(plan)
    manifest = record(BASE, plan, before)
    present = [(a.path, a.sddl) for a in manifest.aces if a.path != WS + "\\.vscode"]
    again, _ = run_actions(plan, present)
    readded = {a.path for a in again if a.op == "add-ace" and a.path == WS + "\\.vscode"}
    assert readded == {WS + "\\.vscode"}


def test_run_work_does_not_grow_with_the_workspace() -> None:
    plan_small = make()
    tree = skeleton()
    for i in range(500):
        tree.add(f"{WS}\\src\\m{i}.py", "file", "S-me")
    before_small, _ = run_actions(plan_small)
    from ringfence.windows.plan import plan_windows
    from tests.windows.test_plan import CMD, policy
    from tests.windows.world import facts_for

    pol = policy()
    plan_big = plan_windows(pol, CMD, facts_for(tree, pol))
    before_big, _ = run_actions(plan_big)
    assert len(before_big) == len(before_small)


def test_cleanup_removes_exactly_what_was_recorded() -> None:
    plan = make()
    before, _ = run_actions(plan)
    manifest = record(BASE, plan, before)
    steps = cleanup_actions(manifest)
    removed = {(a.path, a.detail) for a in steps if a.op == "remove-ace"}
    assert removed == {(a.path, a.sddl) for a in manifest.aces}
    assert [a.op for a in steps if a.op != "remove-ace"] == [
        "remove-rule", "delete-user", "delete-user", "delete-group", "remove-dir"]
    depths = [a.path.count("\\") for a in steps if a.op == "remove-ace"]
    assert depths == sorted(depths, reverse=True)


def test_cleanup_leaves_the_tree_as_it_was() -> None:
    """Applying a plan and then its cleanup restores every DACL (modelled)."""
    tree = skeleton()
    original = {n.path(): list(n.explicit) for n in tree.nodes()}
    plan = make()
    apply(tree, plan)
    before, _ = run_actions(plan)
    manifest = record(BASE, plan, before)
    for ph in plan.placeholders:  # after the run
        node = tree.get(ph.path)
        assert node is not None and node.parent is not None
        del node.parent.children[node.name]
    for step in cleanup_actions(manifest):
        if step.op == "remove-ace":
            node = tree.get(step.path)
            assert node is not None
            node.explicit = [a for a in node.explicit if _sddl(a) != step.detail]
    assert {n.path(): n.explicit for n in tree.nodes()} == original


def _sddl(a: MAce) -> str:
    from ringfence.windows.plan import Ace

    return str(Ace(action=a.action, sid=a.sid, mask=a.mask, flags=a.flags, why="").sddl())


def test_json_round_trip_and_damage() -> None:
    m = BASE.replace(aces=(ManifestAce(path="C:\\w", sddl="(A;OICI;0x1301bf;;;S-1)"),))
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert m.sids() == {"group": GROUP, "offline": OFFLINE, "online": ONLINE}
    with pytest.raises(SandboxError, match="not a ringfence manifest"):
        Manifest.from_json({"version": 1})
    with pytest.raises(SandboxError, match="version"):
        Manifest.from_json({**m.to_json(), "version": 99})
