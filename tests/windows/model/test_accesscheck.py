"""The TEST INSTRUMENT checked against the documented rules it models (WINDOWS-NOTES.md §1-3).

If one of these fails, the model is wrong, and every plan test built on it proves nothing.
"""

from __future__ import annotations

from tests.windows.model.accesscheck import (
    CI,
    DELETE,
    FILE_DELETE_CHILD,
    FILE_GENERIC_READ,
    FILE_GENERIC_WRITE,
    GENERIC_WRITE,
    INHERITED,
    IO,
    NP,
    OI,
    OWNER_RIGHTS,
    READ_CONTROL,
    SYNCHRONIZE,
    WRITE_DAC,
    MAce,
    MToken,
    Switches,
    Tree,
    access_check,
)

U, G, CAP, EVERY = "S-user", "S-group", "S-cap", "S-1-1-0"
PLAIN = MToken(user=U, groups=frozenset({G, EVERY}))
RESTRICTED = MToken(user=U, groups=frozenset({G, EVERY}), restricting=frozenset({CAP}),
                    write_restricted=True)
FULLY_RESTRICTED = MToken(user=U, groups=frozenset({G, EVERY}), restricting=frozenset({CAP}))


def test_null_dacl_grants_everything_and_empty_dacl_nothing() -> None:
    assert access_check(PLAIN, "S-other", None, FILE_GENERIC_WRITE)
    assert not access_check(PLAIN, "S-other", [], FILE_GENERIC_READ)


def test_deny_before_allow_in_stored_order() -> None:
    deny_first = [MAce("deny", G, 0x2), MAce("allow", EVERY, 0x1F01FF)]
    allow_first = [MAce("allow", EVERY, 0x1F01FF), MAce("deny", G, 0x2)]
    assert not access_check(PLAIN, "S-o", deny_first, 0x2)
    assert access_check(PLAIN, "S-o", allow_first, 0x2)  # order is not enforced: it matters


def test_deny_only_hits_remaining_bits() -> None:
    dacl = [MAce("allow", U, 0x1), MAce("deny", G, 0x1), MAce("allow", G, 0x2)]
    assert access_check(PLAIN, "S-o", dacl, 0x1)  # granted before the deny is reached
    assert access_check(PLAIN, "S-o", dacl, 0x3)  # the deny names no bit still wanted
    dacl[1] = MAce("deny", G, 0x2)
    assert not access_check(PLAIN, "S-o", dacl, 0x3)  # a deny of a wanted bit denies all


def test_leftover_bits_deny_and_inherit_only_aces_are_skipped() -> None:
    assert not access_check(PLAIN, "S-o", [MAce("allow", U, 0x1)], 0x3)
    assert not access_check(PLAIN, "S-o", [MAce("allow", U, 0x3, OI | CI | IO)], 0x1)


def test_generic_bits_are_mapped() -> None:
    assert access_check(PLAIN, "S-o", [MAce("allow", U, GENERIC_WRITE)], FILE_GENERIC_WRITE)
    assert access_check(PLAIN, "S-o", [MAce("allow", U, FILE_GENERIC_WRITE)], GENERIC_WRITE)


def test_owner_gets_read_control_and_write_dac_unless_owner_rights() -> None:
    assert access_check(PLAIN, U, [], READ_CONTROL | WRITE_DAC)
    assert not access_check(PLAIN, U, [MAce("allow", OWNER_RIGHTS, READ_CONTROL)], WRITE_DAC)


def test_write_restricted_reads_ignore_restricting_sids() -> None:
    dacl = [MAce("allow", EVERY, 0x1F01FF)]
    assert access_check(RESTRICTED, "S-o", dacl, FILE_GENERIC_READ)
    assert not access_check(RESTRICTED, "S-o", dacl, 0x2)
    assert not access_check(FULLY_RESTRICTED, "S-o", dacl, FILE_GENERIC_READ)


def test_write_needs_both_passes() -> None:
    both = [MAce("allow", G, FILE_GENERIC_WRITE), MAce("allow", CAP, FILE_GENERIC_WRITE)]
    assert access_check(RESTRICTED, "S-o", both, FILE_GENERIC_WRITE)
    assert not access_check(RESTRICTED, "S-o", both[1:], FILE_GENERIC_WRITE)  # pass 1 fails
    assert not access_check(RESTRICTED, "S-o", both[:1], FILE_GENERIC_WRITE)  # pass 2 fails


def test_second_pass_honours_deny_aces_for_restricting_sids() -> None:
    dacl = [MAce("deny", CAP, 0x2), MAce("allow", G, 0x1F01FF), MAce("allow", CAP, 0x1F01FF)]
    assert not access_check(RESTRICTED, "S-o", dacl, 0x2)


def test_owner_rights_in_second_pass_only_when_owner_is_restricting() -> None:
    dacl = [MAce("allow", G, 0x1F01FF)]
    assert not access_check(RESTRICTED, U, dacl, WRITE_DAC | SYNCHRONIZE)
    restricted_owner = MToken(user=U, groups=frozenset({G}), restricting=frozenset({U}),
                              write_restricted=True)
    assert access_check(restricted_owner, U, [], WRITE_DAC)


def test_delete_child_switch() -> None:
    dacl = [MAce("allow", EVERY, 0x1F01FF)]
    assert access_check(RESTRICTED, "S-o", dacl, FILE_DELETE_CHILD, Switches())
    assert not access_check(RESTRICTED, "S-o", dacl, FILE_DELETE_CHILD,
                            Switches(delete_child_is_write=True))


def test_inheritance_flags() -> None:
    t = Tree("S-o")
    top = t.add("C:\\top", "dir", "S-o", [
        MAce("allow", "S-oi", 1, OI), MAce("allow", "S-ci", 1, CI),
        MAce("allow", "S-oici-np", 1, OI | CI | NP), MAce("allow", "S-none", 1, 0),
        MAce("allow", "S-io", 1, OI | CI | IO)])
    sub = t.add("C:\\top\\sub", "dir", "S-o")
    f = t.add("C:\\top\\f", "file", "S-o")
    deep = t.add("C:\\top\\sub\\g", "file", "S-o")
    assert {a.sid for a in t.dacl(top) if not a.flags & IO} == {
        "S-oi", "S-ci", "S-oici-np", "S-none"}
    sub_effective = {a.sid for a in t.dacl(sub) if not a.flags & IO}
    assert sub_effective == {"S-ci", "S-oici-np", "S-io"}
    assert {a.sid for a in t.dacl(f)} == {"S-oi", "S-oici-np", "S-io"}
    assert all(a.flags & INHERITED for a in t.dacl(f))
    # OI reaches files below subdirectories (as inherit-only on the way); NP stops at one level
    assert {a.sid for a in t.dacl(deep)} == {"S-oi", "S-io"}


def test_protected_dacl_inherits_nothing() -> None:
    t = Tree("S-o")
    t.add("C:\\top", "dir", "S-o", [MAce("allow", U, 0x1F01FF, OI | CI)])
    p = t.add("C:\\top\\p", "dir", "S-o", protected=True)
    assert t.dacl(p) == []


def test_explicit_deny_comes_before_inherited_allow_and_explicit_allow_beats_inherited_deny(
) -> None:
    t = Tree("S-o")
    t.add("C:\\top", "dir", "S-o", [MAce("allow", U, 0x1F01FF, OI | CI)])
    d = t.add("C:\\top\\d", "dir", "S-o")
    t.add_explicit(d, MAce("deny", U, 0x1, OI | CI))
    child = t.add("C:\\top\\d\\c", "file", "S-o")
    assert not t.can(PLAIN, child, 0x1)
    t.add_explicit(child, MAce("allow", U, 0x1))  # explicit allow on the child wins
    assert t.can(PLAIN, child, 0x1)


def test_delete_through_the_parents_delete_child() -> None:
    t = Tree("S-o")
    parent = t.add("C:\\top", "dir", "S-o", [MAce("allow", U, FILE_DELETE_CHILD)])
    f = t.add("C:\\top\\f", "file", "S-o", [MAce("deny", U, DELETE)])
    assert t.can(PLAIN, f, DELETE)
    parent.explicit = []
    assert not t.can(PLAIN, f, DELETE)
