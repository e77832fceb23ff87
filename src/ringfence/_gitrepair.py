"""The repairs of ``_gitguard.after``, loaded only after a run that changed a repository's
index or its ``.gitmodules`` (most runs change neither; see ``_gitguard`` for why and what)."""

from __future__ import annotations

import os

from ._gitguard import IndexState, _key, _oid_len, _read


def repair(state: IndexState) -> tuple[list[str], IndexState]:
    """``_gitguard.after`` where ``.gitmodules`` or the index changed: what the run did that
    git on the host would act on, undone where it can be; (warnings, the index's state now)."""
    warnings: list[str] = []
    # .gitmodules changed since the start: every look, in a session, looks again (a later
    # command could make again what an earlier one's look moved aside)
    if _key(os.path.join(state.top, ".gitmodules")) != state.gitmodules_key:
        warnings += _new_module_dirs(state)
    key = _key(os.path.join(state.gitdir, "index"))
    if key is None or (key == state.key and set(state.gitlinks) <= set(state.baseline)):
        return warnings, state
    from .approval.prompt import visible  # (loaded only when there is something to say)

    # unchanged, but holding gitlinks a look could not take out (in a session a later command
    # can make their repositories again): what it holds is known
    now = state if key == state.key else _read(state.gitdir, key)
    top = visible(state.top)
    if now is None:
        index = os.path.join(state.gitdir, "index")
        if state.known:
            # it could be read at the start: the command made it into something ringfence
            # cannot vouch for (git would read it, or it would not). Without an index git
            # status recurses into nothing; `git reset` makes a new one from HEAD
            aside = _free(index + ".ringfence-set-aside")
            try:
                os.rename(index, aside)
            except OSError as exc:
                done = f"could not be moved aside ({exc.strerror}): do not run git there"
            else:
                done = (f"was moved to {visible(aside)}: `git reset` makes a new one from "
                        "HEAD (what was staged is then unstaged), or move it back once "
                        "`git ls-files -s | grep ^160000` shows nothing unexpected")
            warnings.append(
                f"the command left {visible(index)} in a form ringfence cannot read, so it "
                "could not check it for submodule entries (which make git status run what a "
                f"repository inside says); it {done}")
            return warnings, _carry(
                IndexState(state.top, state.gitdir, _key(index), True, (), (), 0), state)
        warnings.append(
            f"ringfence could not read {visible(index)} (at the start of the run either), so "
            "it could not check it for submodule entries (which make git status run what a "
            "repository inside says); before running git there, look at `git ls-files -s | "
            "grep ^160000`")
        return warnings, _carry(IndexState(state.top, state.gitdir, key, False, (), (), 0),
                                state)
    added = [g for g in now.gitlinks if g not in set(state.baseline)]
    if added and not state.known:
        warnings.append(f"the index of {top} has submodule entries ringfence could not compare "
                        "with the start of the run (its index was unreadable then): "
                        + ", ".join(visible(g) for g in added[:8])
                        + "; git status runs what a repository in each says")
        added = []
    kept = list(now.gitlinks)
    if added:
        from ._gitindex import drop

        names = ", ".join(visible(g) for g in added[:8]) + (
            f" and {len(added) - 8} more" if len(added) > 8 else "")
        if drop(state.gitdir, added, _oid_len(state.gitdir)):
            kept = [g for g in kept if g not in set(added)]
            warnings.append(
                f"the command added submodule entries to the index of {top} ({names}); "
                "ringfence took them out again, since your next git status would run what a "
                "repository the command made there says. Add a submodule yourself, outside "
                "ringfence, after looking at what its directory holds")
        else:
            moved = [_set_aside(state.top, g, state.guarded) for g in added]
            warnings.append(
                f"the command added submodule entries to the index of {top} ({names}), and "
                "ringfence could not take them out (git was busy, or the index uses a split "
                "or sparse form); "
                + ("; ".join(m for m in moved if m) or "none of them holds a repository yet")
                + ". Remove them with `git rm --cached PATH` after looking at what each holds")
    hidden_now = now.hidden
    marked: list[str] = []
    if state.hidden is not None and hidden_now is not None:
        before_set = set(state.hidden)
        marked = [h for h in hidden_now if h not in before_set]
        more = len(marked)
    else:
        more = now.hidden_count - state.hidden_count
    if more > 0:
        shown = ", ".join(visible(h) for h in marked[:8]) + (
            f" and {more - 8} more" if marked and more > 8 else "")
        warnings.append(
            f"the command marked {more} file{'s' if more != 1 else ''} in the index of {top} "
            "skip-worktree or assume-unchanged" + (f" ({shown})" if shown else "")
            + ": git status and git diff no longer show changes to them; `git ls-files -v "
            "| grep -v '^H '` lists them, `git update-index --no-skip-worktree "
            "--no-assume-unchanged -- FILE` undoes it")
    key = _key(os.path.join(state.gitdir, "index"))
    new = _carry(IndexState(state.top, state.gitdir, key, True, tuple(kept), hidden_now,
                            now.hidden_count), state)
    if state.remember is not None and key is not None:
        # the command has ended: nothing of it can change the index under this key any more
        state.remember((key, new.gitlinks, new.hidden, new.hidden_count))
    return warnings, new


def _carry(new: IndexState, state: IndexState) -> IndexState:
    """``new`` (the index as a look found it) with what holds since the start: the protected
    gitlinks, .gitmodules and submodule git directories, and where to remember it."""
    new.gitmodules_key, new.modules, new.guarded, new.remember, new.baseline = (
        state.gitmodules_key, state.modules, state.guarded, state.remember, state.baseline)
    return new


def _new_module_dirs(state: IndexState) -> list[str]:
    """The command changed ``.gitmodules``: a name it now declares may lead to a git directory
    in .git/modules that the command made (only the names declared at the start were
    protected). The host's ``git submodule update --init`` would take that directory for the
    submodule's and run its hooks. Each such directory is moved out of .git/modules."""
    from ._gitmodules import declared
    from .approval.prompt import visible
    from .plan import _inside

    modules = os.path.join(state.gitdir, "modules")
    moved: list[str] = []
    for name, _path in declared(state.top, 1 << 20):
        inner = os.path.normpath(os.path.join(modules, name))
        if not _inside(inner, modules) or inner == modules or inner in state.modules:
            continue
        parts = os.path.relpath(inner, state.gitdir).split(os.sep)  # "modules", then name's
        fd = -1
        try:
            # through no link, by descriptors: a link on the way (.git/modules/x -> a
            # repository elsewhere) would have the rename move what it points at, outside
            # the workspace included. git follows it, so the link itself is what goes aside
            fd, last, where = _no_link_to(state.gitdir, parts)
            # git reuses it only if it is a git directory (a link included): anything else
            # there (say, a protected submodule's own objects/, named by a crafted name) stays
            if not (where != inner or _is_link_at(fd, last) or _is_gitdir_at(fd, last)):
                continue
            aside = _move_aside(fd, last, state.gitdir, name.replace("/", "%2F"))
        except (OSError, NotImplementedError) as exc:
            if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                continue
            moved.append(f"{visible(inner)} could not be moved ({_why(exc)}): do not run "
                         "git submodule commands there")
        else:
            moved.append(f"{visible(where)} was moved to {visible(aside)}")
        finally:
            if fd >= 0:
                os.close(fd)
    if not moved:
        return []
    return [f"the command declared submodules in {visible(state.top)}/.gitmodules whose git "
            "directories it made itself (git submodule update would run their hooks): "
            + "; ".join(moved[:8]) + (f"; and {len(moved) - 8} more" if len(moved) > 8 else "")]


def _set_aside(top: str, gitlink: str, guarded: frozenset[str] = frozenset()) -> str:
    """Rename the repository in a gitlink's checkout aside (``.git`` →
    ``.git.ringfence-set-aside``); '' where there is none, or where it is one whose internals
    were protected during the run (``guarded``: a repository of the user's, which git may
    recurse into). Said in one clause."""
    from ._gitmodules import _checkout
    from .approval.prompt import visible

    where = _checkout(top, gitlink)
    if where is None:
        return ""
    dotgit = os.path.join(where, ".git")
    if dotgit in guarded:
        return (f"{visible(dotgit)} is a repository whose settings were protected during the "
                "run, left as it is")
    parts = [*os.path.relpath(where, top).split(os.sep), ".git"]
    fd = -1
    try:
        # by descriptors, through no link: with a link swapped in on the way (a session's
        # background process can still run), the rename would reach outside the workspace
        fd, _last, at = _no_link_to(top, parts)
        if at != dotgit:
            return ""
        aside = _free_at(fd, ".git.ringfence-set-aside")
        os.rename(".git", aside, src_dir_fd=fd, dst_dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except (OSError, NotImplementedError) as exc:
        return (f"{visible(dotgit)} could not be renamed aside ({_why(exc)}): do not run "
                "git in that repository")
    finally:
        if fd >= 0:
            os.close(fd)
    return f"{visible(dotgit)} was renamed to {visible(os.path.join(where, aside))}"


def _free(path: str) -> str:
    """``path``, or where something is there already, ``path`` with a random suffix: a
    command could make beforehand every name it can guess (a directory, which no rename
    replaces) and so keep what it left from being set aside."""
    out = path
    while os.path.lexists(out):
        out = f"{path}-{os.urandom(8).hex()}"
    return out


_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _no_link_to(base: str, parts: list[str]) -> tuple[int, str, str]:
    """(a descriptor of the directory holding it, its name, its path) for ``base/parts...``,
    or for the first of those that is a link, reached through no link. OSError where
    something on the way is missing or not a directory. ``base``: a directory the command
    could not replace (a writable root, or the ``.git`` the plan protects)."""
    import stat

    fd = os.open(base, _DIR)
    try:
        for i, part in enumerate(parts):
            if i == len(parts) - 1 or stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                return fd, part, os.path.join(base, *parts[:i + 1])
            inner = os.open(part, _DIR | getattr(os, "O_NOFOLLOW", 0), dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    raise FileNotFoundError(base)  # no parts


def _is_link_at(fd: int, name: str) -> bool:
    import stat

    return stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode)


def _is_gitdir_at(fd: int, name: str) -> bool:
    """A directory (not a link) with a ``HEAD``, as ``plan._is_gitdir`` says."""
    try:
        inner = os.open(name, _DIR | getattr(os, "O_NOFOLLOW", 0), dir_fd=fd)
    except OSError:
        return False
    try:
        os.lstat("HEAD", dir_fd=inner)
    except OSError:
        return False
    finally:
        os.close(inner)
    return True


def _free_at(fd: int, name: str) -> str:
    """``name``, or with a random suffix where something is there already in ``fd``."""
    out = name
    while True:
        try:
            os.lstat(out, dir_fd=fd)
        except FileNotFoundError:
            return out
        out = f"{name}-{os.urandom(8).hex()}"


def _move_aside(fd: int, name: str, gitdir: str, flat: str) -> str:
    """Rename ``name`` in ``fd`` into ``gitdir/ringfence-set-aside`` (a real directory: one
    the command left there as a link, or as anything else, is not used) as ``flat``; its path
    now."""
    import stat

    g = os.open(gitdir, _DIR)
    try:
        aside_name = "ringfence-set-aside"
        while True:
            try:
                os.mkdir(aside_name, 0o700, dir_fd=g)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(aside_name, dir_fd=g).st_mode):
                    aside_name = _free_at(g, "ringfence-set-aside")
                    continue
            break
        aside = os.open(aside_name, _DIR | getattr(os, "O_NOFOLLOW", 0), dir_fd=g)
    finally:
        os.close(g)
    try:
        target = _free_at(aside, flat)
        os.rename(name, target, src_dir_fd=fd, dst_dir_fd=aside)
    finally:
        os.close(aside)
    return os.path.join(gitdir, aside_name, target)


def _why(exc: BaseException) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else "not supported here"
