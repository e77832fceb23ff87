"""What a run did to the git index of a writable root: the part git on the host acts on.

A command may write ``.git/index`` (``git add`` and ``git commit`` need it). Two things it can
put there make git on the host act on what the command chose:
- a gitlink (a submodule entry, mode 160000) for a directory where it also made a repository.
  The host's next plain ``git status`` recurses into every gitlink whose directory holds a
  ``.git``, and the git it runs there obeys that repository's config (``core.fsmonitor``, a
  clean filter): a program of the command's choosing runs on the host. Whether
  ``.gitmodules`` declares the submodule makes no difference to that.
- the marks assume-unchanged and skip-worktree: git stops looking at the file, so ``git
  status`` and ``git diff`` do not show what the command changed in it (say, a script the
  project's hook runs on the next ``git commit``).

Before a run (``before``, ``protect``): the index's gitlinks are protected like declared
submodules (``_gitmodules.checkout``): their checkout's ``.git``, or the checkout itself where
there is none, so the command can neither make nor change the repository git would recurse into.
After it (``after``), if the index changed: the gitlinks the run added are taken out of the index
again (``_gitindex.drop``, under git's own lock), or, where that cannot be done safely, the
repository in their checkout is renamed aside; files newly marked are reported. Each is a
warning in the result (and on the command line's stderr).

Reading the index costs time that grows with the repository, so what it holds is remembered in
the scan memo by the index's inode, size and times: a run reads it at the start only if it
changed since the last look (what ``after`` read at the end of the last run is kept too).

Not covered: the window while the command runs (a ``git status`` on the host at that moment,
an editor's included, already recurses into what the command just made), and the indexes of
repositories more than one level below the top of a writable root (those one level down,
which editors open by themselves, are looked at like the top one).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any

MEMO_KEY = "\0index"  # no directory entry has a NUL in its name
MAX_KEPT_HIDDEN = 256  # marked files remembered by name; beyond that, by count
MAX_GITLINKS = 256
WHY = "the checkout of a gitlink in the index, or its .git (git status recurses into a " \
      "repository there)"


class IndexState:
    """One repository's index at the start of a run. ``key``: (inode, size, ctime, mtime) of
    the index, None where it does not exist; ``known``: whether it could be read (a damaged or
    unreadable index is not compared: only warned about); ``hidden``: the marked files, or None
    where there are more than MAX_KEPT_HIDDEN (then ``hidden_count`` only)."""

    __slots__ = ("top", "gitdir", "key", "known", "gitlinks", "hidden", "hidden_count",
                 "gitmodules_key", "modules", "guarded", "remember", "baseline")

    def __init__(self, top: str, gitdir: str, key: tuple[int, ...] | None, known: bool,
                 gitlinks: tuple[str, ...], hidden: tuple[str, ...] | None,
                 hidden_count: int) -> None:
        self.top = top
        self.gitdir = gitdir
        self.key = key
        self.known = known
        self.gitlinks = gitlinks
        self.hidden = hidden
        self.hidden_count = hidden_count
        # the gitlinks protected since the start (a session's sandbox keeps its mounts): what
        # is in the index beyond them is the command's, whenever a look finds it
        self.baseline = gitlinks
        # .gitmodules, and the submodule git directories in .git/modules that were protected
        # (see after): filled by before()
        self.gitmodules_key: tuple[int, ...] | None = None
        self.modules: frozenset[str] = frozenset()
        # repositories (their .git) whose internals the plan protected: never set aside
        self.guarded: frozenset[str] = frozenset()
        # keeps what the index holds after a run for the next run's before() (the scan memo)
        self.remember: Callable[[tuple[Any, ...]], None] | None = None

    def __repr__(self) -> str:
        return (f"IndexState(top={self.top!r}, gitlinks={self.gitlinks!r}, "
                f"hidden_count={self.hidden_count})")


def _gitdir(top: str) -> str | None:
    from .plan import _read_gitdir

    dotgit = os.path.join(top, ".git")
    if os.path.isdir(dotgit) and not os.path.islink(dotgit):
        return dotgit
    if os.path.isfile(dotgit):
        return _read_gitdir(dotgit)
    return None


def _key(index: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(index)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns)


def _oid_len(gitdir: str) -> int:
    """20, or 32 in a repository whose ``extensions.objectformat`` is sha256 (the config is
    protected: the command cannot change it)."""
    from ._gitconfig import _read, entries
    from .plan import _common_dir

    text = _read(os.path.join(_common_dir(gitdir) or gitdir, "config"))
    for section, name, value in entries(text or ""):
        if section == "extensions" and name == "objectformat":
            return 32 if value.lower() == "sha256" else 20
    return 20


def _read(gitdir: str, key: tuple[int, ...] | None) -> IndexState | None:
    """The index as it is now (None where it cannot be read)."""
    from ._gitindex import read, read_split

    path, oid_len = os.path.join(gitdir, "index"), _oid_len(gitdir)
    index = read(path, oid_len) or read_split(path, oid_len)
    if index is None:
        return None
    hidden = index.hidden if len(index.hidden) <= MAX_KEPT_HIDDEN else None
    return IndexState("", gitdir, key, True, index.gitlinks, hidden, len(index.hidden))


def before(top: str, memo: dict[str, Any] | None = None, memo_key: str = MEMO_KEY,
           protected: Collection[str] = ()) -> IndexState | None:
    """The index of the repository at the top of ``top`` (None: no repository there).
    ``memo``: the scan memo of the writable root, updated in place at ``memo_key``.
    ``protected``: the paths ``find_protected`` gave for that root, of which the submodule
    git directories in ``.git/modules`` it protected are taken (each one's ``hooks``)."""
    import time

    from .plan import RACY_NS

    gitdir = _gitdir(top)
    if gitdir is None:
        return None
    key = _key(os.path.join(gitdir, "index"))
    old = memo.get(memo_key) if memo is not None else None
    if key is None:
        state = IndexState(top, gitdir, None, True, (), (), 0)
    elif isinstance(old, tuple) and len(old) == 4 and old[0] == key:
        state = IndexState(top, gitdir, key, True, old[1], old[2], old[3])
    else:
        now = _read(gitdir, key)
        if now is None:
            state = IndexState(top, gitdir, key, False, (), (), 0)
        else:
            # an index changed in the last RACY_NS may change again with the same times
            if memo is not None and time.time_ns() - max(key[2], key[3]) > RACY_NS:
                memo[memo_key] = (key, now.gitlinks, now.hidden, now.hidden_count)
            state = IndexState(top, gitdir, key, True, now.gitlinks, now.hidden,
                               now.hidden_count)
    state.gitmodules_key = _key(os.path.join(top, ".gitmodules"))
    modules = os.path.join(gitdir, "modules") + os.sep
    state.modules = frozenset(os.path.dirname(p) for p in protected
                              if p.startswith(modules) and os.path.basename(p) == "hooks")
    return state


def protect(state: IndexState, protected: Collection[str] = ()) -> list[tuple[str, str]]:
    """(path, why) for each gitlink's checkout (as for a declared submodule), but those
    ``protected`` (``find_protected``'s paths) already holds: a declared submodule's."""
    if not state.gitlinks:
        return []
    from ._gitmodules import MAX_DECLARED, checkout

    budget = [MAX_DECLARED]
    out: list[tuple[str, str]] = []
    for path in state.gitlinks[:MAX_GITLINKS]:
        where = os.path.normpath(os.path.join(state.top, path))
        if where in protected or os.path.join(where, ".git") in protected or budget[0] <= 0:
            continue
        budget[0] -= 1
        out += checkout(state.top, path, WHY, budget=budget)
    return out


def after(state: IndexState) -> tuple[list[str], IndexState]:
    """What the run did to the index that git on the host would act on, undone where it can
    be: (warnings, the index's state now). Run only once the command has ended. Two ``stat``
    calls where the run changed neither the index nor ``.gitmodules``, and the index holds
    no gitlink beyond those protected since the start."""
    if _key(os.path.join(state.top, ".gitmodules")) == state.gitmodules_key \
            and _key(os.path.join(state.gitdir, "index")) in (state.key, None) \
            and set(state.gitlinks) <= set(state.baseline):
        return [], state
    from ._gitrepair import repair

    return repair(state)
