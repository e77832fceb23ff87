"""``ringfence._gitmodules``: which places of declared submodules are protected, and bounds."""

from __future__ import annotations

import os
from pathlib import Path

from ringfence._gitmodules import MAX_DECLARED, WHY_CHECKOUT, WHY_GITDIR, declared, protected


def _gitmodules(top: Path, *entries: tuple[str, str]) -> None:
    (top / ".gitmodules").write_text("".join(
        f'[submodule "{name}"]\n\tpath = {path}\n\turl = ../x\n' for name, path in entries))


def test_declared_names_and_paths(tmp_path: Path) -> None:
    (tmp_path / ".gitmodules").write_text(
        '[submodule "lib"]\n\tpath = lib\n[submodule "libs/foo"]\n\tPath = "libs/foo" ; c\n'
        '[submodule "nopath"]\n\turl = x\n')
    assert declared(str(tmp_path)) == [("lib", "lib"), ("libs/foo", "libs/foo")]
    assert declared(str(tmp_path / "missing")) == []


def test_not_set_up(tmp_path: Path) -> None:
    """An empty checkout and no git directory: the checkout itself and the git directory's
    files (the planner covers the missing ones with placeholders)."""
    gitdir = tmp_path / ".git"
    gitdir.mkdir()
    (tmp_path / "lib").mkdir()
    _gitmodules(tmp_path, ("lib", "lib"), ("gone", "not/there"))
    got = dict(protected(str(tmp_path), str(gitdir)))
    assert got[str(tmp_path / "lib")] == WHY_CHECKOUT
    assert got[str(tmp_path / "not" / "there")] == WHY_CHECKOUT
    for name in ("lib", "gone"):
        assert got[str(gitdir / "modules" / name / "hooks")] == WHY_GITDIR
        assert got[str(gitdir / "modules" / name / "config")] == WHY_GITDIR


def test_set_up_checkout_protects_its_pointer_not_the_checkout(tmp_path: Path) -> None:
    gitdir = tmp_path / ".git"
    inner = gitdir / "modules" / "lib"
    inner.mkdir(parents=True)
    (inner / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / ".git").write_text("gitdir: ../.git/modules/lib\n")
    _gitmodules(tmp_path, ("lib", "lib"))
    got = dict(protected(str(tmp_path), str(gitdir)))
    assert str(tmp_path / "lib") not in got
    assert str(tmp_path / "lib" / ".git") in got
    assert str(inner / "config") in got


def test_names_and_paths_that_git_would_not_use(tmp_path: Path) -> None:
    """A name climbing out of ``modules``, a path outside the top, inside ``.git``, the top
    itself, or through a symbolic link: nothing (git refuses or does not look there)."""
    gitdir = tmp_path / "ws" / ".git"
    gitdir.mkdir(parents=True)
    top = tmp_path / "ws"
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", top / "link")
    _gitmodules(top, ("../../x", "../out"), ("a", ".git/x"), ("b", "."), ("c", "link/lib"),
                ("d", "sub/.GIT/y"))
    got = [path for path, _ in protected(str(top), str(gitdir))]
    assert all(p.startswith(str(gitdir / "modules") + "/") for p in got), got


def test_bounded(tmp_path: Path) -> None:
    gitdir = tmp_path / ".git"
    gitdir.mkdir()
    _gitmodules(tmp_path, *((f"m{i}", f"m{i}") for i in range(MAX_DECLARED + 50)))
    checkouts = [p for p, why in protected(str(tmp_path), str(gitdir)) if why == WHY_CHECKOUT]
    assert len(checkouts) == MAX_DECLARED


def test_nested_share_the_bound(tmp_path: Path) -> None:
    """Submodules of a set-up submodule are looked at too, within the same bound."""
    gitdir = tmp_path / ".git"
    (gitdir / "modules" / "lib").mkdir(parents=True)
    lib = tmp_path / "lib"
    (lib / ".git").mkdir(parents=True)  # an embedded repository
    (lib / "deep").mkdir()
    _gitmodules(lib, ("deep", "deep"))
    _gitmodules(tmp_path, ("lib", "lib"))
    got = dict(protected(str(tmp_path), str(gitdir)))
    assert got[str(lib / "deep")] == WHY_CHECKOUT
    assert str(lib / ".git" / "modules" / "deep" / "config") in got
    assert str(lib / ".git" / "hooks") in got
