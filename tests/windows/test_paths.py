"""Windows path bypasses, one regression test each (the docstring is the attack).

Two kinds of defence are tested:
- policy paths (roots, deny-read, the workspace) are canonicalized or refused by
  ``ringfence.windows.paths`` (pure, ``ntpath`` rules), so no spelling of a path slips past the
  planner's comparisons;
- names the *command* uses are not compared at all: the plan's ACEs sit on objects, and the
  access-check model (TEST INSTRUMENT) shows that every other name of the object — case variant,
  stream, trailing dot, 8.3 alias, junction — reaches the same ACL.
"""

from __future__ import annotations

import ntpath

import pytest

from ringfence.errors import PolicyError, UnavailableError
from ringfence.policy.model import Limits, Policy
from ringfence.windows import paths as wp
from ringfence.windows.plan import plan_windows
from tests.windows.model.accesscheck import Node, Tree
from tests.windows.world import (
    HOME,
    ME,
    WS,
    apply,
    facts_for,
    skeleton,
    token_for,
)

POLICY = Policy(workspace=WS, limits=Limits(timeout=60))


def sandboxed() -> tuple[Tree, object]:
    tree = skeleton()
    plan = plan_windows(POLICY, ["cmd"], facts_for(tree, POLICY))
    apply(tree, plan)
    return tree, token_for(plan)


def resolve(tree: Tree, name: str, aliases: dict[str, str] | None = None,
            links: dict[str, str] | None = None) -> Node:
    """What NTFS opens for ``name``: Win32 normalization, streams to their file, 8.3 aliases
    and junctions followed (modelled with tables)."""
    path = wp.canonical(name, "attacker path", named_stream="base")
    for short, long in (aliases or {}).items():
        path = path.replace(short, long)
    for link, target in (links or {}).items():
        if wp.is_within(path, link):
            path = target + path[len(link):]
    node = tree.get(path)
    assert node is not None, path
    return node


def writable(name: str, **kw: dict[str, str]) -> bool:
    tree, token = sandboxed()
    return tree.can(token, resolve(tree, name, **kw), 0x2)  # type: ignore[arg-type]


def readable(name: str, **kw: dict[str, str]) -> bool:
    tree, token = sandboxed()
    return tree.can(token, resolve(tree, name, **kw), 0x1)  # type: ignore[arg-type]


def test_control_the_workspace_is_writable_and_hooks_are_not() -> None:
    """Control: without any trick, src is writable and .git/hooks is not."""
    assert writable(WS + "\\src")
    assert not writable(WS + "\\.git\\hooks")


def test_case_variant_of_git() -> None:
    """The command writes ``.GiT\\HOOKS\\pre-commit`` hoping a path allowlist compares case
    (Codex #33). NTFS opens the same directory; its deny ACE applies."""
    assert not writable(WS + "\\.GiT\\HOOKS")
    assert not writable(WS.upper() + "\\.GIT\\hooks\\PRE-COMMIT.SAMPLE")
    assert wp.key(WS + "\\.GiT") == wp.key(WS + "\\.git")


def test_alternate_data_stream_on_a_protected_file() -> None:
    """The command writes ``.git\\config:evil`` or ``.git\\config::$DATA`` (Codex #32): a
    stream has its file's security descriptor, so the file's deny ACE applies."""
    assert not writable(WS + "\\.git\\config:evil")
    assert not writable(WS + "\\.git\\config::$DATA")
    assert not writable(WS + "\\.git\\hooks::$INDEX_ALLOCATION")
    assert not writable(WS + "\\.git\\hooks:$I30:$INDEX_ALLOCATION")


def test_trailing_dots_and_spaces() -> None:
    """The command opens ``.git\\hooks.`` or ``.git\\hooks  `` : Win32 trims trailing dots and
    spaces, so the same directory is opened, deny ACE included."""
    assert not writable(WS + "\\.git\\hooks.")
    assert not writable(WS + "\\.git\\hooks .. ")


def test_eight_dot_three_alias() -> None:
    """The command uses the 8.3 alias ``C:\\Users\\me\\proj\\VSCODE~1\\tasks.json``: the alias is a
    second name of the same object, so the object's ACL applies."""
    assert not writable(WS + "\\VSCODE~1\\tasks.json", aliases={"VSCODE~1": ".vscode"})
    assert wp.looks_short_name("VSCODE~1") and wp.looks_short_name("GIT~1.CFG")
    assert not wp.looks_short_name(".vscode") and not wp.looks_short_name("a~b")


def test_eight_dot_three_alias_in_a_policy_path_is_refused_unless_resolved() -> None:
    """A policy names its workspace ``C:\\Users\\me\\PROJ~1``: only Windows knows what that is;
    the planner refuses it unless the facts carry its long name (GetLongPathNameW)."""
    tree = skeleton()
    short = HOME + "\\PROJ~1"
    policy = POLICY.replace(workspace=short)
    with pytest.raises(UnavailableError, match=r"8\.3"):
        plan_windows(policy, ["cmd"], facts_for(tree, POLICY))
    plan = plan_windows(policy, ["cmd"], facts_for(tree, POLICY, final_paths={short: WS}))
    assert wp.key(plan.capability_sids[0][0]) == wp.key(WS)


def test_junction_leading_out_of_the_workspace() -> None:
    """The command makes a junction ``proj\\out`` → ``C:\\Windows`` (no privilege needed) and
    writes through it: the write lands on C:\\Windows's objects, which grant nothing to the
    capability SID."""
    links = {WS + "\\out": "C:\\Windows"}
    assert not writable(WS + "\\out\\notepad.exe", links=links)
    assert not writable(WS + "\\out", links=links)


def test_junction_into_a_secret_directory() -> None:
    """The command makes a junction ``proj\\keys`` → ``~\\.ssh`` and reads through it: the
    deny-read ACE is on .ssh's objects, not on a path prefix."""
    assert not readable(WS + "\\keys\\id_ed25519", links={WS + "\\keys": HOME + "\\.ssh"})


def test_junction_poisoning_of_a_protected_path_between_runs() -> None:
    """Between runs the command replaces a missing protected name with a junction to
    System32, hoping the next run's setup puts its ACEs on the target. The planner refuses
    a protected path that is a reparse point."""
    tree = skeleton()
    facts = facts_for(tree, POLICY)
    kinds = {**facts.kinds, WS + "\\.idea": "junction"}
    with pytest.raises(UnavailableError, match="junction"):
        plan_windows(POLICY, ["cmd"], facts.replace(kinds=kinds))


def test_junction_above_a_protected_path() -> None:
    """The command replaces ``.git`` by a junction to a directory it controls, so ``.git\\hooks``
    is no longer the guarded object. The planner refuses a reparse point between a writable root
    and a protected path."""
    tree = skeleton()
    facts = facts_for(tree, POLICY)
    kinds = {**facts.kinds, WS + "\\.git": "junction"}
    with pytest.raises(UnavailableError, match="above the protected path"):
        plan_windows(POLICY, ["cmd"], facts.replace(kinds=kinds))


def test_symlinked_deny_read_path_is_guarded_at_its_target() -> None:
    """``~\\.aws`` is a symlink to ``D:\\vault\\aws``: the deny ACE goes on the target, where
    the reads land."""
    tree = skeleton()
    facts = facts_for(tree, POLICY)
    aws = HOME + "\\.aws"
    kinds = {**facts.kinds, aws: "symlink", "D:\\vault\\aws": "dir"}
    plan = plan_windows(POLICY, ["cmd"], facts.replace(
        kinds=kinds, final_paths={aws: "D:\\vault\\aws"}))
    paths = [a.path for a in plan.acls if a.why == "deny-read"]
    assert "D:\\vault\\aws" in paths and aws not in paths


@pytest.mark.parametrize("path", [
    "\\\\.\\PhysicalDrive0", "\\\\.\\C:\\Users\\me\\proj", "\\\\.\\pipe\\x",
    "\\\\?\\GLOBALROOT\\Device\\HarddiskVolume1\\x", "\\??\\GLOBALROOT\\x",
])
def test_device_namespace_is_refused(path: str) -> None:
    """A policy (perhaps a project's file) names ``\\\\.\\PhysicalDrive0`` or a device path as a
    writable root: raw device access is not a directory; refused."""
    with pytest.raises(PolicyError, match="device namespace"):
        wp.canonical(path, "writable root")


def test_long_path_prefix_is_unwrapped() -> None:
    """``\\\\?\\C:\\Users\\me\\proj`` names the same directory as ``C:\\Users\\me\\proj``; a
    comparison of strings would treat them as different roots."""
    assert wp.canonical("\\\\?\\c:\\Users\\me\\proj") == "C:\\Users\\me\\proj"
    assert wp.canonical("\\??\\C:\\x") == "C:\\x"


@pytest.mark.parametrize("path", ["\\\\?\\C:\\w\\..\\x", "\\\\?\\C:\\w\\.git.",
                                  "\\\\?\\C:\\w\\hooks "])
def test_long_path_prefix_with_names_win32_would_change(path: str) -> None:
    """Under ``\\\\?\\`` a name with a trailing dot or space, or ``..``, is literal: it names a
    file ordinary paths cannot reach, so it would not be the object the host later opens.
    Refused."""
    with pytest.raises(PolicyError, match="Win32 would change"):
        wp.canonical(path)


@pytest.mark.parametrize("path", ["\\\\server\\share\\proj", "\\\\?\\UNC\\server\\share\\p",
                                  "//server/share/p"])
def test_unc_paths_are_refused(path: str) -> None:
    """A writable root on a network share: its ACLs are checked by the server, which does not
    know the capability SID; refused."""
    with pytest.raises(PolicyError, match="network share"):
        wp.canonical(path)


def test_volume_guid_path_is_refused() -> None:
    """``\\\\?\\Volume{…}\\x`` names a volume without a drive letter; the planner cannot tell
    what it overlaps with; refused."""
    with pytest.raises(PolicyError, match="volume GUID"):
        wp.canonical("\\\\?\\Volume{01234567-89ab-cdef-0123-456789abcdef}\\x")


def test_other_drive_of_an_unsupported_type_is_refused() -> None:
    """The workspace is on ``Z:``, a mapped network drive (or a ``subst`` drive): the sandbox
    user's logon session does not see the same mapping; refused."""
    tree = skeleton()
    facts = facts_for(tree, POLICY)
    policy = POLICY.replace(workspace="Z:\\proj")
    kinds = {**facts.kinds, "Z:\\proj": "dir"}
    with pytest.raises(UnavailableError, match="Z: is remote"):
        plan_windows(policy, ["cmd"], facts.replace(kinds=kinds,
                                                    drives={"C:": "fixed", "Z:": "remote"}))
    plan = plan_windows(policy, ["cmd"], facts.replace(kinds=kinds,
                                                       drives={"C:": "fixed", "Z:": "fixed"}))
    assert plan.capability_sids[0][0] == "Z:\\proj"


@pytest.mark.parametrize("path", ["C:proj", "\\proj", "proj", "..\\x"])
def test_relative_paths_are_refused(path: str) -> None:
    """``C:proj`` is relative to drive C's current directory, ``\\proj`` to the current drive:
    what they name depends on the process; refused."""
    with pytest.raises(PolicyError):
        wp.canonical(path)


@pytest.mark.parametrize("name", ["NUL", "con.txt", "COM1", "lpt9.log", "AUX ", "CONIN$",
                                  "com\u00b9"])
def test_reserved_device_names_are_refused(name: str) -> None:
    """A root ``C:\\w\\NUL`` (or ``con.txt``) opens a device in any directory; refused."""
    with pytest.raises(PolicyError, match="device"):
        wp.canonical("C:\\w\\" + name)


def test_named_stream_as_root_is_refused_and_as_deny_read_is_its_file() -> None:
    """``C:\\w:stream`` is not a directory; as a deny-read path it means its file (streams share
    the file's ACL, so denying the file denies every stream)."""
    with pytest.raises(PolicyError, match="alternate data stream"):
        wp.canonical("C:\\w\\x:s")
    assert wp.canonical("C:\\w\\x:s:$DATA", named_stream="base") == "C:\\w\\x"
    assert wp.canonical("C:\\w\\x::$DATA") == "C:\\w\\x"
    with pytest.raises(PolicyError, match="stream"):
        wp.canonical("C:\\w:s\\x")


def test_normalization_matches_ntpath() -> None:
    """The canonical form agrees with ``ntpath.normpath`` where both apply (dots, slashes)."""
    for raw in ("c:/Users/me/./proj/../proj", "C:\\a\\\\b\\", "c:\\a\\b\\..\\..\\c"):
        assert wp.canonical(raw).lower() == ntpath.normpath(raw).lower()
    assert wp.canonical("C:\\") == "C:\\"
    assert wp.parent("C:\\a") == "C:\\" and wp.parent("C:\\a\\b") == "C:\\a"
    assert wp.join("C:\\", "a/b") == "C:\\a\\b"


def test_case_folding_is_one_to_one() -> None:
    """NTFS's upcase table maps one character to one; ``str.upper`` maps ``ß`` to ``SS``, which
    would make two different names compare equal."""
    assert wp.key("C:\\straße") != wp.key("C:\\STRASSE")
    assert wp.key("C:\\Ä") == wp.key("C:\\ä")


def test_writable_root_inside_deny_read_by_another_spelling() -> None:
    """The policy's extra root ``c:\\USERS\\ME\\.SSH\\work`` hides inside deny-read ``.ssh`` by
    case; the comparison is by key, so it is refused."""
    tree = skeleton()
    tree.add(HOME + "\\.ssh\\work", "dir", ME)
    policy = POLICY.replace(writable=("c:\\USERS\\ME\\.SSH\\work",))
    with pytest.raises(PolicyError, match="inside deny-read"):
        plan_windows(policy, ["cmd"], facts_for(tree, policy))


def test_workspace_reached_through_a_junction_is_guarded_at_its_target() -> None:
    """The workspace is opened as ``C:\\Users\\me\\link``, a junction to the real project. ACEs
    on the link would guard nothing (the command writes through to the target), so the
    capability SID's grant and every protected path are planned on the final path."""
    tree = skeleton()
    link = HOME + "\\link"
    policy = POLICY.replace(workspace=link)
    facts = facts_for(tree, POLICY)
    plan = plan_windows(policy, ["cmd"], facts.replace(
        kinds={**facts.kinds, link: "junction"}, final_paths={link: WS}))
    assert plan.capability_sids[0][0] == WS
    assert all(not wp.is_within(a.path, link) for a in plan.acls)
