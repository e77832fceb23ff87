"""The submodules a repository's ``.gitmodules`` declares: where git on the host will look.

A freshly cloned repository with submodules has them declared (``.gitmodules``, and a gitlink
in the index) but not yet set up: ``lib/`` is an empty directory and ``.git/modules/lib`` does
not exist. Nothing is there to protect, yet git on the host is about to use both places:
- the host's plain ``git status`` at the top recurses into every submodule whose checkout has
  a ``.git`` (a directory or a ``gitdir:`` file). A command that runs ``git init lib`` and sets
  ``core.fsmonitor`` there gets it run by that ``git status``, and ``git status`` shows nothing;
- ``git submodule update --init`` reuses an existing ``.git/modules/<name>`` instead of
  cloning: a git directory the command made there, with a ``post-checkout`` hook, runs on the
  host.
So for each declared submodule, the git directory's files that git runs or obeys are protected
whether they exist or not (a missing git directory gets a placeholder, which git takes for "not
set up"), and so is the checkout's ``.git``; where that is missing, the checkout directory
itself is (read-only, or a placeholder: a placeholder ``.git`` would make git status fail).
A checkout that has its own repository is treated like the top-level one (its internals, what
its config names, its own declared submodules).

Bounded: MAX_DECLARED declared submodules in all (the first of each ``.gitmodules`` read),
``NESTED`` levels of submodules of submodules. A path that goes through a symbolic link is
skipped: git does not look into a submodule path beyond a link either.
A gitlink in the index that ``.gitmodules`` does not declare gets the same through ``_gitguard``.
"""

from __future__ import annotations

import os

MAX_DECLARED = 256
NESTED = 3

WHY_CHECKOUT = ("the checkout of a submodule .gitmodules declares, or its .git (git status "
                "recurses into a repository there)")
WHY_GITDIR = ("the git directory of a submodule .gitmodules declares (git submodule update "
              "reuses one found there)")


def declared(top: str, limit: int = MAX_DECLARED) -> list[tuple[str, str]]:
    """(name, path) of each submodule in ``top/.gitmodules`` that has a path, as written, in
    order; at most ``limit``."""
    from ._gitconfig import _read, entries

    text = _read(os.path.join(top, ".gitmodules"))
    if not text:
        return []
    out: list[tuple[str, str]] = []
    for section, name, value in entries(text):
        if section.startswith("submodule.") and name == "path" and value:
            out.append((section[len("submodule."):], value))
            if len(out) >= limit:
                break
    return out


def _checkout(top: str, path: str) -> str | None:
    """The submodule's checkout directory, or None where git would not use it: outside
    ``top``, the top itself, inside a ``.git``, or through a symbolic link."""
    from .plan import _inside, _kind

    where = os.path.normpath(os.path.join(top, path))
    if not _inside(where, top) or where == top:
        return None
    parts = os.path.relpath(where, top).split(os.sep)
    if any(part.lower() == ".git" for part in parts):
        return None
    here = top
    for part in parts:
        here = os.path.join(here, part)
        kind = _kind(here)
        if kind == "missing":
            break
        if kind != "dir":
            return None
    return where


def protected(top: str, gitdir: str, depth: int = NESTED, budget: list[int] | None = None
              ) -> list[tuple[str, str]]:
    """(path, why) for every declared submodule of the repository at ``top`` (git directory
    ``gitdir``): its checkout's ``.git`` and its git directory's protected files, and the same
    for the repository a checkout holds. ``budget``: how many more declared submodules may be
    looked at, shared by the nested calls."""
    from .plan import _git_internal, _inside

    if budget is None:
        budget = [MAX_DECLARED]
    out: list[tuple[str, str]] = []
    modules = os.path.join(gitdir, "modules")
    found = declared(top, budget[0]) if budget[0] > 0 else []
    budget[0] -= len(found)
    for name, path in found:
        inner = os.path.normpath(os.path.join(modules, name))
        if _inside(inner, modules) and inner != modules:
            out += [(p, WHY_GITDIR) for p in _git_internal(inner)]
        out += checkout(top, path, WHY_CHECKOUT, depth, budget)
    return out


def checkout(top: str, path: str, why: str, depth: int = NESTED,
             budget: list[int] | None = None) -> list[tuple[str, str]]:
    """(path, why) for the checkout at ``path`` (relative to ``top``) of a submodule git on
    the host recurses into: its ``.git`` (or the checkout itself where that is missing) and
    what the repository there holds, as for the top-level one."""
    from .plan import (
        GIT_PROTECTED,
        _git_config_named,
        _git_internal,
        _git_nested,
        _kind,
        _read_gitdir,
    )

    if budget is None:
        budget = [MAX_DECLARED]
    where = _checkout(top, path)
    if where is None:
        return []
    out: list[tuple[str, str]] = []
    dotgit = os.path.join(where, ".git")
    kind = _kind(dotgit)
    # not set up: the checkout itself (an empty directory) stays as it is. A placeholder
    # for its .git would not do: git status fails on any .git that is not a repository
    out.append((where if kind == "missing" else dotgit, why))
    sub: str | None = None
    if kind == "file":
        sub = _read_gitdir(dotgit)
        if sub is not None:
            out += [(p, "git internals") for p in _git_internal(sub) + _git_nested(sub)]
    elif kind == "dir":
        sub = dotgit
        out += [(os.path.join(dotgit, n), "git internals") for n in GIT_PROTECTED]
        out += [(p, "git internals") for p in _git_nested(dotgit)]
    if sub is not None:
        out += _git_config_named(where, sub)
        if depth > 1 and budget[0] > 0:
            out += protected(where, sub, depth - 1, budget)
    return out
