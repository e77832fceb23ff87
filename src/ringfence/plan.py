"""Policy + command + host facts → a plan for one OS. Pure data, printed by ``ringfence explain``.

The facts come from the backend (``backends.linux.gather_facts``: a bounded number of ``lstat``
calls, never a walk of the workspace; ``find_protected`` here is the part every OS shares);
``plan_linux`` is pure, so golden tests can compare plans for made-up hosts on any OS.

How deep protected paths are found (the README repeats this):
- at the top of every writable root, every protected name, whether it exists or not (a missing
  one is covered by a read-only placeholder so it cannot be created);
- in each directory directly below a writable root, every protected name that exists (bounded:
  among the first 4,096 entries of the root, the first 64 subdirectories by name);
- inside a ``.git`` directory: ``hooks``, ``config`` and ``config.worktree`` of the repository,
  of each linked worktree (``.git/worktrees/*``) and of each submodule's git directory wherever
  it sits in ``.git/modules`` (bounded: see ``_submodule_gitdirs``), with the ``.git`` file of
  that submodule's checkout; the same for repositories one level down; and when ``.git`` is a
  file (worktree, submodule), the same inside the gitdir and the common dir it points to;
- for each submodule the ``.gitmodules`` of those repositories declares, whether it is set up
  or not: its checkout's ``.git`` and its git directory's files (``_gitmodules``).
The parents of every protected path inside a writable root are pinned (mounted on themselves), so
a protected path cannot be moved away by renaming its parent.
"""

from __future__ import annotations

import os
import time

from ._dirs import sandbox_cache
from .policy.env import scrub
from .policy.model import DEFAULT_DENY_READ_HOME, Frozen, Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, ClassVar

    from .network.rules import NetworkRules
    from .plan_macos import MacFacts

# File descriptors are chosen when the command starts; the plan names them with these tokens.
SECCOMP_FD = "{seccomp-fd}"
STATUS_FD = "{status-fd}"
SPEC_FD = "{spec-fd}"
INFO_FD = "{info-fd}"
BLOCK_FD = "{block-fd}"
PROXY_PORT = 3128
"""Where the allowlist proxy answers inside the sandbox (its own network namespace: no clash)."""

# /run holds the host's sockets (D-Bus, the Docker socket, the user's runtime dir with the
# ssh-agent and the session bus); the sandbox gets an empty /run with these few restored:
RUN_KEEP = (
    "/run/current-system",  # NixOS: every program lives under here
    "/run/booted-system",  # NixOS
    "/run/opengl-driver",  # NixOS: GPU userspace drivers
)
RUN_KEEP_NETWORK = ("/run/systemd/resolve", "/run/resolvconf", "/run/NetworkManager")
REPLACED_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run")  # each is a fresh tmpfs in the sandbox
GPU_DEVICES = ("/dev/dri", "/dev/kfd", "/dev/nvidiactl", "/dev/nvidia-uvm",
               "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia0", "/dev/nvidia1",
               "/dev/nvidia2", "/dev/nvidia3", "/dev/nvidia4", "/dev/nvidia5", "/dev/nvidia6",
               "/dev/nvidia7")
# Inside every git directory: what git on the host runs or obeys. ``commondir`` redirects git to
# another directory's config and hooks, so it is protected too (a missing one is covered by a
# placeholder that says ".", which git reads as "this directory").
GIT_PROTECTED = ("hooks", "config", "config.worktree", "commondir")


def placeholder_is_file(path: str) -> bool:
    """Placeholders are empty directories, which git ignores (``git add -A`` keeps working)
    and which nothing can be created in; git's own files inside a git directory are files,
    because git reads them (``commondir`` says ".": "this directory"). So is a missing config
    file that git config includes (see ``Plan.placeholder_files``): git fails on a directory
    there, and reads the placeholder's one comment line as no settings."""
    return os.path.basename(path) in ("config", "config.worktree", "commondir")


# Why a path is protected, for a config file that git config includes (``_gitconfig``): missing,
# it gets a file placeholder, so the command cannot create it with settings the host's git obeys.
INCLUDED_BY = "git config included by "

# The bound on the scan one level below a writable root: start-up must not grow with the
# workspace. The first MAX_TOP_ENTRIES directory entries are read, and the first MAX_SUBDIRS
# subdirectories among them (by name) are checked for existing protected names.
MAX_TOP_ENTRIES = 4096
MAX_SUBDIRS = 64
RACY_NS = 2_000_000_000
# The start gate (see backends.linux.Prepared.started): the command is exec'd by a shell that
# says it is there (a line on one pipe: the sandbox's first process has forked it, and asks to
# die with bubblewrap right after), then waits for ringfence's word on another, which ringfence
# gives only once that first process has asked. Killed before that, ringfence's ends close, the
# echo or the read fails, and the sandbox ends without running the command. (Reopening an
# anonymous pipe through /proc never waits for the other end.)
GATE_SHELL = "/bin/sh"
GATE_SCRIPT = ('echo >/proc/self/fd/{gate-ready} && read -r _ </proc/self/fd/{gate-fd} && '
               'exec "$@" {gate-close}; exit 125')
# Deny-read for a command run by root: root keeps uid 0 inside (mapped to the host's root),
# and without any capability it still reads every file root owns by its owner bits. These hold
# the machine's secrets: password hashes, private keys of the host and its services, VPN and
# Wi-Fi keys, cluster admin credentials. (A user's own secrets are in the home list.)
ROOT_DENY_READ = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",  # password hashes
    "/etc/ssl/private",                         # TLS private keys of the host's services
    "/etc/wireguard",                           # VPN private keys
    "/etc/NetworkManager/system-connections",   # Wi-Fi and VPN secrets
    "/var/lib/tailscale",                       # the node's key
    "/etc/kubernetes/admin.conf", "/etc/rancher/k3s/k3s.yaml",  # cluster admin credentials
    "/etc/sudoers.d", "/var/lib/sss/secrets",   # rules worth knowing to plan an escalation; sssd
)
PROC_COVER = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
SOCKET_ENV = ("SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "DOCKER_HOST", "XDG_RUNTIME_DIR",
              "PULSE_SERVER", "WAYLAND_DISPLAY", "CONTAINER_HOST")


class HostFacts(Frozen):
    """What the planner needs to know about this host. ``kinds`` maps absolute paths to
    ``dir``, ``file``, ``link``, ``other`` or ``missing`` (from ``lstat``). ``overlay_lower``:
    two empty directories for read-only overlay mounts, or ``()`` where this bwrap and kernel
    cannot mount an overlay in a user namespace (see ``_hide_dir``)."""

    __slots__ = (
        "home", "uid", "environ", "bwrap", "kinds", "realpaths", "protected_paths",
        "config_dir", "state_dir", "cache_dir", "userns", "landlock_abi", "pids_cgroup",
        "python", "fallback_exec", "overlay_lower", "preset_hosts", "connect_helper",
        "own_files", "extra_deny", "git_indexes",
    )
    home: str
    uid: int
    environ: dict[str, str]
    bwrap: str
    kinds: dict[str, str]
    realpaths: dict[str, str]
    protected_paths: tuple[tuple[str, str], ...]
    config_dir: str
    state_dir: str
    cache_dir: str
    userns: str
    landlock_abi: int
    pids_cgroup: str
    python: str
    fallback_exec: str
    overlay_lower: tuple[str, ...]
    preset_hosts: tuple[tuple[str, str], ...]
    connect_helper: str
    own_files: tuple[tuple[str, str], ...]  # (what, path), resolved: see own_files()
    extra_deny: tuple[str, ...]  # deny-read paths of this host beyond the home's (see below)
    git_indexes: tuple[Any, ...]  # _gitguard.IndexState of each writable root's repository
    _defaults: ClassVar[Mapping[str, Any]] = {
        "userns": "", "landlock_abi": 0, "pids_cgroup": "", "realpaths": {},
        "python": "/usr/bin/python3", "fallback_exec": "_fallback_exec.py", "protected_paths": (),
        "overlay_lower": (), "preset_hosts": (), "connect_helper": "connect.py", "own_files": (),
        "extra_deny": (), "git_indexes": (),
    }

    def kind(self, path: str) -> str:
        return self.kinds.get(path, "missing")


AGENT_WEAKER = ("the command can use your ssh-agent (network.ssh_agent): it can sign with your "
                "keys, though not read them")


class Plan(Frozen):
    """What a backend does for one command; nothing in it needs interpreting."""

    __slots__ = (
        "mode", "command", "argv", "env", "env_removed", "cwd", "rlimits", "seccomp",
        "landlock", "pids_cgroup", "timeout", "output_limit", "placeholders", "layers",
        "weaker", "policy", "seatbelt", "network", "ssh_agent", "placeholder_files",
        "git_indexes",
    )
    mode: str
    command: tuple[str, ...]
    argv: tuple[str, ...]
    env: dict[str, str]
    env_removed: tuple[str, ...]
    cwd: str
    rlimits: tuple[tuple[str, int], ...]
    seccomp: tuple[bool, bool] | None
    landlock: dict[str, Any] | None
    pids_cgroup: int | None
    timeout: float | None
    output_limit: int | None
    placeholders: tuple[str, ...]
    layers: tuple[str, ...]
    weaker: tuple[str, ...]
    policy: Policy
    seatbelt: dict[str, Any] | None  # macOS: profile text and -D parameters (plan_macos)
    network: NetworkRules | None
    ssh_agent: str | None  # the host's agent socket handed in (network.ssh_agent)
    # placeholders that are files though placeholder_is_file says no (included config files)
    placeholder_files: tuple[str, ...]
    # the index of each writable root's repository at the start, checked after (_gitguard)
    git_indexes: tuple[Any, ...]
    _defaults: ClassVar[Mapping[str, Any]] = {"seatbelt": None, "network": None,
                                              "ssh_agent": None, "placeholder_files": (),
                                              "git_indexes": ()}


# ---------------------------------------------------------------------------------------------
# Facts (I/O, bounded).

def _kind(path: str) -> str:
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "missing"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _first_line(path: str) -> str | None:
    """The first line of a small regular file a command may have planted (see
    ``_gitconfig._read``: a FIFO there must not hang the host's scan)."""
    from ._gitconfig import _read

    text = _read(path)
    return None if text is None else text.split("\n", 1)[0].strip()


def _read_gitdir(dotgit: str) -> str | None:
    line = _first_line(dotgit)
    if line is None or not line.startswith("gitdir:"):
        return None
    target = line[7:].strip()
    return os.path.normpath(os.path.join(os.path.dirname(dotgit), target))


def _common_dir(gitdir: str) -> str | None:
    line = _first_line(os.path.join(gitdir, "commondir"))
    return os.path.normpath(os.path.join(gitdir, line)) if line else None


def _git_internal(gitdir: str) -> list[str]:
    """Paths inside one git directory that the host executes or obeys."""
    found = [os.path.join(gitdir, n) for n in GIT_PROTECTED]
    common = _common_dir(gitdir)
    if common is not None:
        found += [os.path.join(common, n) for n in GIT_PROTECTED]
    return found


BARE_GUARD = "keeps git from taking the root for a bare repository"

# Submodules' git directories live in ``<gitdir>/modules/<name>``, and a submodule's name is its
# path by default, slashes and all (``git submodule add URL libs/foo`` keeps it in
# ``modules/libs/foo``). Bounds, so that start-up does not grow with what a command can create
# inside .git: names a few directories deep, MAX_SUBMODULES git directories in one repository,
# and submodules of submodules NESTED_SUBMODULES levels deep.
MAX_SUBMODULES = 256
NAME_DEPTH = 4
NESTED_SUBMODULES = 3


def _is_gitdir(path: str) -> bool:
    """A real directory (not a link to one: a command could point one back at ``.git`` or
    its parents, and make the scan go round) with a ``HEAD``."""
    return _kind(path) == "dir" and _kind(os.path.join(path, "HEAD")) in ("file", "link")


def _submodule_gitdirs(gitdir: str, budget: list[int]) -> list[str]:
    """The git directories under ``gitdir/modules``. First those the repository's config
    names (``[submodule "NAME"]``; that config is read-only in the sandbox, so a command cannot
    add names, nor push these past the bound), then whatever else is a git directory there,
    looking through directories that are parts of a name with slashes. ``budget``: how many
    more git directories may be found, shared by the nested calls (at most MAX_SUBMODULES in
    all)."""
    from ._gitconfig import _read, entries

    modules = os.path.join(gitdir, "modules")
    if _kind(modules) != "dir":
        return []
    found: list[str] = []
    limit = budget[0]
    text = _read(os.path.join(gitdir, "config")) or ""
    for section, _, _ in entries(text):
        if section.startswith("submodule.") and len(found) < limit:
            path = os.path.normpath(os.path.join(modules, section[len("submodule."):]))
            if _inside(path, modules) and path != modules and path not in found \
                    and _is_gitdir(path):
                found.append(path)
    stack = [(modules, 1)]
    while stack and len(found) < limit:
        where, depth = stack.pop()
        try:
            names = sorted(os.listdir(where))[:MAX_SUBMODULES]
        except OSError:
            continue
        below = []
        for name in names:
            path = os.path.join(where, name)
            if _is_gitdir(path):
                if path not in found and len(found) < limit:
                    found.append(path)
            elif depth < NAME_DEPTH and _kind(path) == "dir":
                below.append((path, depth + 1))
        stack.extend(reversed(below))
    budget[0] -= len(found)
    return found


def _git_nested(gitdir: str, depth: int = NESTED_SUBMODULES,
                budget: list[int] | None = None) -> list[str]:
    """hooks/config of linked worktrees and submodules kept inside ``gitdir``, and each
    submodule checkout's ``.git`` file (which says which git directory its git obeys)."""
    if budget is None:
        budget = [MAX_SUBMODULES]
    found: list[str] = []
    try:
        worktrees = os.listdir(os.path.join(gitdir, "worktrees"))
    except OSError:
        worktrees = []
    for name in worktrees:
        found += _git_internal(os.path.join(gitdir, "worktrees", name))
    from ._gitconfig import _read, entries

    for inner in _submodule_gitdirs(gitdir, budget):
        found += _git_internal(inner)
        for section, name, value in entries(_read(os.path.join(inner, "config")) or ""):
            if section == "core" and name == "worktree" and value:
                pointer = os.path.join(os.path.normpath(os.path.join(inner, value)), ".git")
                if _kind(pointer) == "file":
                    found.append(pointer)
        if depth > 1 and budget[0] > 0:
            found += _git_nested(inner, depth - 1, budget)
    return found


def _git_config_named(top: str, gitdir: str, within: str | None = None
                      ) -> list[tuple[str, str]]:
    """What the repository's config (and the user's and the system's git config, and
    GIT_CONFIG_COUNT's) names inside ``within`` (default: ``top``, the working tree's top)
    that the host's git runs or reads: the hooks and templates directories and included
    config files (protected whether they exist or not: a missing included file gets a file
    placeholder), and commands' scripts (when they exist: any word of a command is a
    candidate, so a missing one is no sign of a script)."""
    from ._gitconfig import config_files, env_config, named_paths

    common = _common_dir(gitdir) or gitdir
    home = os.environ.get("HOME") or os.path.expanduser("~")
    files = config_files(common, gitdir, os.environ, home)
    out = []
    for path, why, is_dir in named_paths(top, files, home, within, env_config(os.environ)):
        kind = _kind(path)
        if is_dir or kind in ("file", "link") or (kind == "missing" and why.startswith(
                INCLUDED_BY)):
            out.append((path, why))
    return out


def _enclosing_repository(root: str) -> tuple[str, str] | None:
    """(top, gitdir) of the repository ``root`` lies inside (a workspace that is a package of
    a larger repository), found as git finds it: the nearest parent with a ``.git``."""
    parent = os.path.dirname(root)
    while True:
        dotgit = os.path.join(parent, ".git")
        kind = _kind(dotgit)
        if kind == "dir":
            return parent, dotgit
        if kind == "file":
            gitdir = _read_gitdir(dotgit)
            return (parent, gitdir) if gitdir else None
        up = os.path.dirname(parent)
        if up == parent:
            return None
        parent = up


def declared_submodules(top: str, gitdir: str) -> list[tuple[str, str]]:
    """``_gitmodules.protected``, loaded only for a repository that has a ``.gitmodules``
    (most have none: the command line's start-up stays one module shorter)."""
    if not os.path.lexists(os.path.join(top, ".gitmodules")):
        return []
    from ._gitmodules import protected

    return protected(top, gitdir)


def find_protected(root: str, names: Sequence[str],
                   memo: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(path, why) for every protected path of one writable root, as deep as documented above.

    ``memo`` (optional, updated in place) remembers which protected names each subdirectory
    had, keyed by the subdirectory's inode and change time: adding, removing or renaming an
    entry changes a directory's ctime, and unlike mtime no process can set ctime back. A
    subdirectory whose key is unchanged is not looked into again (one stat instead of 14).
    A directory changed in the last RACY_NS is not remembered: timestamps come from a coarse
    clock, so a change in the same tick as the scan could leave the key as it was.
    """
    out: list[tuple[str, str]] = []
    tops = sorted(set(names))
    for name in tops:
        out.append((os.path.join(root, name), "protected name"))
    # Where .git is missing or not a repository (say, its HEAD was broken), git takes the
    # directory itself for a bare repository if it has HEAD, objects/ and refs/: a planted
    # config there (core.fsmonitor) would run on the host's next `git status`. One of the
    # three that cannot be created stops that: `objects` (an empty directory, which nothing
    # sees), else `refs`, else `HEAD` (a placeholder named HEAD makes `git diff HEAD`
    # ambiguous, so it is the last choice). Where the root has a HEAD, the root may itself be
    # a git directory: the HEAD, its hooks and its config are protected too.
    head = os.path.join(root, "HEAD")
    if _kind(head) != "missing":
        out.append((head, BARE_GUARD))
        out += [(os.path.join(root, n), "git internals") for n in GIT_PROTECTED]
    else:
        for name in ("objects", "refs", "HEAD"):
            guard = os.path.join(root, name)
            if name == "HEAD" or _kind(guard) == "missing":
                out.append((guard, BARE_GUARD))
                break
    dotgit = os.path.join(root, ".git")
    gitdir = _read_gitdir(dotgit) if os.path.isfile(dotgit) else None
    if gitdir is not None:
        out.append((dotgit, "points git at its directory"))
        out += [(p, "git internals") for p in _git_internal(gitdir) + _git_nested(gitdir)]
    elif os.path.isdir(dotgit):
        gitdir = dotgit
        out += [(p, "git internals") for p in _git_nested(dotgit)]
    if gitdir is not None:
        out += _git_config_named(root, gitdir)
        out += declared_submodules(root, gitdir)
    elif _kind(dotgit) == "missing":
        enclosing = _enclosing_repository(root)
        if enclosing is not None:  # a package of a larger repository: its config counts too
            out += _git_config_named(*enclosing, within=root)
            out += [(p, why) for p, why in declared_submodules(*enclosing)
                    if _inside(p, root) and p != root]
    subdirs: list[os.DirEntry[str]] = []
    try:
        with os.scandir(root) as it:
            for seen_entries, entry in enumerate(it):
                if seen_entries >= MAX_TOP_ENTRIES:
                    break
                if entry.name != ".git" and entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry)
    except OSError:
        pass
    # Subdirectories that held a protected name at the last look come first, whatever their
    # names: a command cannot push a real pkg/.envrc out of the bounded scan by creating
    # MAX_SUBDIRS directories whose names sort before it.
    held = {name for name, item in (memo or {}).items()
            if isinstance(item, (tuple, list)) and len(item) == 2 and item[1]}
    subdirs.sort(key=lambda e: (e.name not in held, e.name))
    seen_memo: dict[str, Any] = {}
    now = time.time_ns()
    for entry in subdirs[:MAX_SUBDIRS]:
        key: tuple[int, int] | None = None
        present: list[tuple[str, str]] | None = None
        if memo is not None:
            try:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_ino, st.st_ctime_ns)
            except OSError:
                key = None
            old = memo.get(entry.name)
            if key is not None and old is not None and old[0] is not None \
                    and tuple(old[0]) == key:
                present = [tuple(item) for item in old[1]]
        if present is None:
            present = []
            for name in (*tops, ".git"):
                kind = _kind(os.path.join(entry.path, name))
                if kind != "missing":
                    present.append((name, kind))
        if key is not None and now - key[1] > RACY_NS:
            seen_memo[entry.name] = (key, present)
        elif present:  # changed just now: looked at afresh next time, but still first
            seen_memo[entry.name] = (None, present)
        for name, kind in present:
            path = os.path.join(entry.path, name)
            if name == ".git":
                if kind == "file":
                    sub = _read_gitdir(path)  # read afresh: its content is not in the key
                    out.append((path, "points git at its directory"))
                    if sub:
                        out += [(p, "git internals")
                                for p in _git_internal(sub) + _git_nested(sub)]
                        out += _git_config_named(entry.path, sub)
                        out += declared_submodules(entry.path, sub)
                elif kind == "dir":
                    out += [(os.path.join(path, n), "git internals") for n in GIT_PROTECTED]
                    out += [(p, "git internals") for p in _git_nested(path)]
                    out += _git_config_named(entry.path, path)
                    out += declared_submodules(entry.path, path)
            else:
                out.append((path, "protected name"))
    if memo is not None:
        memo.clear()
        memo.update(seen_memo)
    # de-duplicate, keep order
    seen: set[str] = set()
    unique = []
    for path, why in out:
        if path not in seen:
            seen.add(path)
            unique.append((path, why))
    return unique


# ---------------------------------------------------------------------------------------------
# The plan (pure).

def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def sandbox_env(policy: Policy, facts: HostFacts | MacFacts, cache_root: str
                ) -> tuple[dict[str, str], list[str]]:
    env, removed = scrub(facts.environ, allow=policy.env_allow, deny=policy.env_deny)
    for name in ("XDG_RUNTIME_DIR",):
        if name in env and name not in policy.env_allow:
            del env[name]
            removed.append(name)
    env.update({"TMPDIR": "/tmp", "RINGFENCE_SANDBOX": "1"})
    # Only workspace-write writes the sandbox's cache. Every other profile gets the user's own
    # caches: a full-access run (or an approved rerun without the sandbox) pointed at a cache
    # that sandboxed commands can write would run what they planted there.
    if policy.profile == "workspace-write":
        env.update(_cache_env(cache_root))
    env.update(policy.env_settings())
    return env, sorted(set(removed))


def _cache_env(cache_root: str) -> dict[str, str]:
    return {
        "XDG_CACHE_HOME": os.path.join(cache_root, "xdg"),
        "PIP_CACHE_DIR": os.path.join(cache_root, "pip"),
        "npm_config_cache": os.path.join(cache_root, "npm"),
        "YARN_CACHE_FOLDER": os.path.join(cache_root, "yarn"),
        "GOMODCACHE": os.path.join(cache_root, "go", "mod"),
        "GOCACHE": os.path.join(cache_root, "go", "build"),
        "UV_CACHE_DIR": os.path.join(cache_root, "uv"),
        "POETRY_CACHE_DIR": os.path.join(cache_root, "poetry"),
    }


def _rlimits(policy: Policy, *, nproc: bool) -> tuple[tuple[str, int], ...]:
    lim = policy.limits
    out = []
    if nproc and lim.max_processes:
        out.append(("RLIMIT_NPROC", lim.max_processes))
    if lim.memory:
        out.append(("RLIMIT_DATA", lim.memory))
    if lim.cpu_seconds:
        out.append(("RLIMIT_CPU", lim.cpu_seconds))
    if lim.file_size:
        out.append(("RLIMIT_FSIZE", lim.file_size))
    return tuple(out)


def _hide_dir(path: str, facts: HostFacts) -> list[str]:
    """bwrap arguments that cover directory ``path`` with an empty, read-only file system.

    A read-only overlay of two empty directories where the host allows it: one mount, no
    remount. (Every bind or remount makes bwrap 0.11 re-read the whole mount table, ~0.3 ms
    each; a workspace has ~10 placeholders.) Otherwise a tmpfs remounted read-only. Either way
    nothing can be read or created there, and the mount point cannot be renamed or removed.
    """
    if len(facts.overlay_lower) == 2:
        lower, upper = facts.overlay_lower
        return ["--overlay-src", lower, "--overlay-src", upper, "--ro-overlay", path]
    return ["--tmpfs", path, "--remount-ro", path]


def plan_linux(policy: Policy, command: Sequence[str], facts: HostFacts, *,
               cwd: str | None = None) -> Plan:
    """The plan for one command on Linux. Raises UnavailableError / PolicyError (fail closed)."""
    from .errors import PolicyError, UnavailableError

    if not command:
        raise PolicyError("no command given; put it after --, e.g. ringfence run -- pytest -q")
    cwd = cwd or policy.workspace
    cache_root = sandbox_cache(facts.cache_dir, policy.workspace)
    env, removed = sandbox_env(policy, facts, cache_root)
    agent = None
    if policy.ssh_agent:  # opted in: the one socket, at a fixed path inside (network/ssh_agent)
        from .network.ssh_agent import AGENT_PATH, host_socket

        agent = host_socket(facts)
        env["SSH_AUTH_SOCK"] = agent if policy.profile == "full-access" else AGENT_PATH
        removed = [name for name in removed if name != "SSH_AUTH_SOCK"]
    common: dict[str, Any] = {
        "command": tuple(command), "env": env, "env_removed": tuple(removed), "cwd": cwd,
        "timeout": policy.limits.timeout, "output_limit": policy.limits.output,
        "policy": policy, "ssh_agent": agent, "git_indexes": facts.git_indexes,
    }
    if policy.network == "allowlist":
        if policy.profile == "full-access":
            raise PolicyError("network allowlist needs the sandbox: full-access has no network "
                              "isolation; use --profile workspace-write or read-only")
        if facts.userns:
            raise UnavailableError(
                f"network allowlist needs a network namespace, and this host cannot create "
                f"one ({facts.userns}); enable user namespaces, or use --network off or on")
        from .network.environment import proxy_env

        env.update(proxy_env(PROXY_PORT, facts.python, facts.connect_helper))
        env.update(policy.env_settings())  # the user's own settings still win
    if policy.profile == "full-access":
        return Plan(
            mode="none", argv=tuple(command), rlimits=_rlimits(policy, nproc=False),
            seccomp=None, landlock=None, pids_cgroup=None, placeholders=(),
            layers=("environment scrubbed", "rlimits", "new session"),
            weaker=("full-access: no filesystem, network or process isolation",),
            **{**common, "git_indexes": ()},  # what it does to a git index is the user's call
        )

    writable = list(policy.writable_roots())
    if policy.profile == "workspace-write":
        writable.append(cache_root)
    bound = [*writable, *([policy.workspace] if policy.profile == "read-only" else [])]
    deny = _deny_read(policy, facts, bound)
    for root in writable:
        for d in deny:
            if _inside(root, d):
                raise PolicyError(f"writable root {root} is inside deny-read path {d}; "
                                  "deny-read wins, so choose a root outside it")
    _refuse_own_files_writable(facts, writable)
    protected = _strictly_inside(facts.protected_paths, writable)
    for path, _ in protected:
        if facts.kind(path) == "link":
            raise UnavailableError(
                f"protected path {path} is a symbolic link, which the sandbox cannot keep "
                "read-only; replace it with the file or directory it points to"
            )
        owner = next((r for r in writable if _inside(path, r)), None)
        parent = os.path.dirname(path)
        while owner is not None and parent != owner and _inside(parent, owner):
            if facts.kind(parent) == "link":
                raise UnavailableError(
                    f"{parent} is a symbolic link above the protected path {path}; the sandbox "
                    "cannot stop it being replaced; replace the link with what it points to"
                )
            parent = os.path.dirname(parent)

    nproc_by_rlimit = facts.uid != 0
    pids_cgroup = None
    limits = policy.limits
    if limits.max_processes and not nproc_by_rlimit:
        if not facts.pids_cgroup:
            raise UnavailableError(
                "cannot limit the process count when running as root without a writable pids "
                "cgroup (RLIMIT_NPROC does not bind root); run as an ordinary user, or mount "
                "the cgroup pids controller, or pass --max-processes 0 to run without a limit"
            )
        pids_cgroup = limits.max_processes

    if facts.userns:
        if policy.fallback != "landlock":
            raise UnavailableError(
                f"cannot create the sandbox: {facts.userns}. Enable them, or pass "
                "--fallback landlock to accept the weaker Landlock mode (see ringfence doctor)"
            )
        if facts.landlock_abi < 1:
            raise UnavailableError(
                f"cannot create the sandbox: {facts.userns}, and this kernel has no Landlock "
                "for the fallback mode; enable user namespaces (see ringfence doctor)"
            )
        if agent is not None:
            from .network.ssh_agent import unsupported

            raise unsupported("in the Landlock fallback (it cannot hand in a single socket)")
        return _plan_landlock(policy, facts, deny, writable, protected, pids_cgroup, common)

    args: list[str] = [
        facts.bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup-try",
    ]
    if policy.network != "on":
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL",
             "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    if facts.uid == 0:
        # root's uid maps to the host's root inside, and the kernel lets the host's root write
        # /proc/sys (core_pattern: a program the kernel runs as root outside every namespace),
        # sysrq-trigger and irq affinities by file mode alone, no capability needed. bwrap's
        # --proc covers these only when it finds them writable, and /proc/sys is mode 555.
        for path in PROC_COVER:
            if facts.kind(path) != "missing":
                args += ["--ro-bind", path, path]
    if policy.gpu:
        for dev in GPU_DEVICES:
            if facts.kind(dev) != "missing":
                args += ["--dev-bind", dev, dev]
    # bwrap's /dev is a tmpfs of half the RAM, and /dev/shm a directory in it: shared memory
    # gets its own tmpfs bounded like /tmp, and the rest of /dev is read-only (its device
    # nodes still work), so neither can take the machine's memory
    args += ["--size", str(limits.tmp_size or 2 << 30), "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev"]
    args += ["--size", str(limits.tmp_size or 2 << 30), "--tmpfs", "/tmp"]
    if facts.kind("/var/tmp") == "dir":
        args += ["--size", str(limits.tmp_size or 2 << 30), "--tmpfs", "/var/tmp"]
    keep = [path for path in RUN_KEEP + (RUN_KEEP_NETWORK if policy.network == "on" else ())
            if facts.kind(path) != "missing"]
    run_dirs = ["/run", *(["/var/run"] if facts.kind("/var/run") == "dir" else [])]
    if keep or agent is not None:
        for path in run_dirs:
            args += ["--tmpfs", path]
        for path in keep:
            args += ["--ro-bind", path, path]
        if agent is not None:
            from .network.ssh_agent import AGENT_PATH

            # only this socket; its host path stays masked
            args += ["--ro-bind", agent, AGENT_PATH]
        args += ["--remount-ro", "/run"]
    else:  # nothing of /run is kept: empty and read-only in one mount (see _hide_dir)
        for path in run_dirs:
            args += _hide_dir(path, facts)
    if policy.profile == "read-only" and any(_inside(policy.workspace, d) for d in REPLACED_DIRS):
        args += ["--ro-bind", policy.workspace, policy.workspace]  # visible under the new /tmp
    for root in writable:
        args += ["--bind", root, root]
    # pins: the parents of protected paths (inside a writable root) become mount points, so they
    # cannot be renamed or removed
    pins: list[str] = []
    placeholders: list[str] = []
    # ringfence's own config and state (the audit log) are hidden; where a writable root holds
    # them (say --writable ~/.local), every directory above them inside it is pinned too:
    # renaming ~/.local/state away would make ringfence start a new log, the old one unseen
    for path in (facts.state_dir, facts.config_dir, *(p for p, _ in protected)):
        owner = next((r for r in writable if _inside(path, r) and path != r), None)
        if owner is None:
            continue  # outside every writable root: read-only already
        parent = os.path.dirname(path)
        while parent != owner and _inside(parent, owner):
            if parent not in pins and facts.kind(parent) == "dir":
                pins.append(parent)
            parent = os.path.dirname(parent)
    for pin in sorted(pins, key=len):
        args += ["--bind", pin, pin]
    def owner_of(path: str) -> str:
        return next((r for r in writable if _inside(path, r)), "/")

    for path, _ in protected:
        kind = facts.kind(path)
        inside = any(_inside(path, r) for r in writable)
        if kind in ("dir", "file", "other"):
            args += ["--ro-bind", path, path]
        elif not inside:
            continue  # missing and outside every writable root: cannot be created anyway
        elif kind == "placeholder" or facts.kind(os.path.dirname(path)) == "dir":
            placeholders.append(path)
        elif facts.kind(os.path.dirname(path)) in ("missing", "placeholder"):
            # e.g. .git/hooks without .git: cover the highest missing ancestor itself, so no
            # repository (and no hook) can be created there. (A parent that is a file, like the
            # .git file of a worktree, needs nothing: nothing can be created below a file.)
            parent = os.path.dirname(path)
            while (facts.kind(os.path.dirname(parent)) in ("missing", "placeholder")
                   and _inside(os.path.dirname(parent), owner_of(parent))
                   and os.path.dirname(parent) != owner_of(parent)):
                parent = os.path.dirname(parent)
            if facts.kind(os.path.dirname(parent)) == "dir" and parent not in placeholders:
                placeholders.append(parent)
    included = {p for p, why in protected if why.startswith(INCLUDED_BY)}
    placeholder_files = tuple(p for p in placeholders
                              if p in included and not placeholder_is_file(p))
    # Bind mounts first, then the overlays: bubblewrap re-reads the whole mount table for each
    # bind (~3 us per mount already there), and an overlay needs no such read. None of the binds
    # below lies inside one of the overlays (a placeholder is a missing path, so nothing is
    # inside it; a deny-read path inside a deny-read directory is dropped by _deny_read).
    covers: list[str] = []
    for path in placeholders:
        # ringfence creates each placeholder (see placeholder_is_file) before the sandbox
        # starts; it is mounted read-only onto itself, or a directory is covered by an overlay
        if facts.overlay_lower and not placeholder_is_file(path) \
                and path not in placeholder_files:
            covers += _hide_dir(path, facts)
        else:
            args += ["--ro-bind", path, path]
    for path in deny:
        kind = facts.kind(path)
        if kind == "dir":
            covers += _hide_dir(path, facts)
        elif kind in ("file", "other"):
            args += ["--ro-bind", "/dev/null", path]
    args += covers
    # the sandbox waits on the block fd until ringfence has set its rlimits, moved it into the
    # pids cgroup and attached the allowlist proxy (backends.linux.Prepared.started)
    args += ["--info-fd", INFO_FD, "--block-fd", BLOCK_FD]
    network = None
    if policy.network == "allowlist":
        assert policy.network_rules is not None
        network = policy.network_rules.replace(preset_hosts=facts.preset_hosts)
    gate: list[str] = []
    if facts.kind(GATE_SHELL) != "missing":
        gate = [GATE_SHELL, "-c", GATE_SCRIPT, "ringfence-gate"]
    # the loader's variables reach the command only from inside: bubblewrap itself is started
    # without them (a project's LD_PRELOAD would run in it, on the host; see _helper_env)
    from ._helper_env import loader_variables

    for name, value in loader_variables(env):
        args += ["--setenv", name, value]
    args += ["--chdir", cwd, "--seccomp", SECCOMP_FD, "--json-status-fd", STATUS_FD,
             "--", *gate, *command]
    layers = ["user, pid, ipc, uts and mount namespaces" +
              (", network namespace" if policy.network != "on" else ""),
              "no capabilities", "no_new_privs", "seccomp", "rlimits",
              "new session", "dies with ringfence"]
    if pids_cgroup:
        layers.append("pids cgroup")
    if network is not None:
        layers.append(f"allowlist proxy on 127.0.0.1:{PROXY_PORT} (the only way out)")
    if not policy.unix_sockets:
        layers.append("no unix sockets (socketpair only)")
    return Plan(
        mode="bwrap", argv=tuple(args), rlimits=_rlimits(policy, nproc=nproc_by_rlimit),
        seccomp=(policy.network == "off", not policy.unix_sockets), landlock=None,
        pids_cgroup=pids_cgroup,
        placeholders=tuple(placeholders), placeholder_files=placeholder_files,
        layers=tuple(layers), network=network,
        weaker=(AGENT_WEAKER,) if agent is not None else (),
        **common,
    )


def _strictly_inside(paths: Iterable[tuple[str, str]], writable: Sequence[str]
                     ) -> list[tuple[str, str]]:
    """The protected paths, normalised, that lie strictly below a writable root; the rest are
    read-only already, or the root itself. Only these are pinned and covered: a name like
    ``../x`` once joined onto a root passed the string test of ``_inside``, and every
    "parent" up to the root, the workspace's own parent among them, got a read-write bind."""
    from .errors import PolicyError

    out: list[tuple[str, str]] = []
    seen: set[str] = set()  # an absolute entry comes once per root
    for path, why in paths:
        norm = os.path.normpath(path)
        if norm in seen or not any(norm != r and _inside(norm, r) for r in writable):
            continue
        seen.add(norm)
        if norm != path:  # the host facts were read for the path as written: fail closed
            raise PolicyError(f"protected path {path!r} is not in normal form; write it "
                              f"as {norm!r}")
        out.append((path, why))
    return out


def _refuse_own_files_writable(facts: HostFacts, writable: Sequence[str]) -> None:
    refuse_own_files_writable(
        (("ringfence", os.path.dirname(os.path.dirname(facts.fallback_exec))),
         ("the Python environment ringfence runs in",
          os.path.dirname(os.path.dirname(facts.python))),
         ("bubblewrap", facts.bwrap), *facts.own_files), writable)


def own_files(package_dir: str, bwrap: str = "") -> tuple[tuple[str, str], ...]:
    """(what, path) for everything whose change would change ringfence itself, each as
    written and resolved (a virtualenv reached through a symlink is still inside the root
    it resolves into): its package, its interpreter's prefixes (a ``.pth`` file or
    ``sitecustomize`` there runs at every start) and its bubblewrap. I/O: for gather_facts."""
    import sys

    items = [("ringfence", package_dir), ("bubblewrap", bwrap)]
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix,
                                 sys.base_exec_prefix, os.path.dirname(os.path.dirname(
                                     sys.executable)))):
        items.append(("the Python environment ringfence runs in", prefix))
    out: list[tuple[str, str]] = []
    for what, path in items:
        if path:
            out += [(what, path), (what, os.path.realpath(path))]
    return tuple(dict.fromkeys(out))


def refuse_own_files_writable(own: Sequence[tuple[str, str]], writable: Sequence[str]) -> None:
    """ringfence, the Python environment it runs in and its sandbox program must not lie
    inside a writable root: a command could change them (a ``.pth`` file in a virtualenv
    runs at every interpreter start), and with them every later run. ``own``: (what, path)."""
    from .errors import UnavailableError

    for what, path in own:
        root = next((r for r in writable if path and _inside(path, r)), None)
        if root is not None:
            raise UnavailableError(
                f"{what} ({path}) is inside the writable root {root}, so a command could change "
                "it and every later run; install ringfence outside it (pipx install ringfence, "
                "or a virtualenv elsewhere)")


def _deny_read(policy: Policy, facts: HostFacts, bound: Sequence[str] = ()) -> list[str]:
    """Existing deny-read paths (where they really are, for those that are links or lie under
    one), longest last. ``bound``: the roots the sandbox shows again inside the directories it
    replaces (a workspace under /tmp): a deny-read path inside one of them is kept."""
    wanted = [os.path.join(facts.home, p) for p in DEFAULT_DENY_READ_HOME]
    wanted += [facts.config_dir, facts.state_dir, *policy.deny_read, *facts.extra_deny]
    for name in SOCKET_ENV:  # sockets named by the environment: the agent, the bus, the daemon
        value = facts.environ.get(name, "").removeprefix("unix:path=")
        value = value.removeprefix("unix://").split(",")[0]
        if value.startswith("/") and name != "WAYLAND_DISPLAY":
            wanted.append(value)
    found: list[str] = []
    for path in dict.fromkeys(wanted):
        kind = facts.kind(path)
        if kind != "missing":  # a link, or a path under one: where it really is (gather_facts)
            path = facts.realpaths.get(path, path)
            kind = facts.kind(path)
        if kind != "missing" and path not in found:
            found.append(path)
    # The sandbox gets empty /tmp, /var/tmp and /run of its own: nothing under them is visible,
    # and a mask there could not even be mounted (/run is read-only), except inside the roots
    # bound back into them (HOME and the workspace under /tmp: ~/.ssh, ringfence's own config
    # and audit log must stay hidden there too). A path inside another deny-read directory is
    # hidden with it.
    out: list[str] = []
    for path in sorted(found, key=lambda p: (p.count("/"), p)):
        if any(_inside(path, hidden) for hidden in REPLACED_DIRS) and not any(
                _inside(path, root) for root in bound):
            continue
        if any(_inside(path, d) for d in out):
            continue
        out.append(path)
    return out


def _plan_landlock(policy: Policy, facts: HostFacts, deny: list[str], writable: list[str],
                   protected: Iterable[tuple[str, str]], pids_cgroup: int | None,
                   common: dict[str, Any]) -> Plan:
    spec: dict[str, Any] = {
        "read_roots": ["/"],
        "write_roots": writable,
        "deny_read": deny,
        "protected": [p for p, _ in protected],
        "block_tcp": policy.network == "off",
        "scope": True,
    }
    from .backends._landlock import _weaker_notes

    weaker = (
        "no user, pid or network namespace: Landlock, seccomp and rlimits only",
        *([] if facts.landlock_abi >= 6 else [
            f"Landlock ABI {facts.landlock_abi} < 6: the command can kill or stop the reaper "
            "that ends everything it started when the run ends (then what it started in the "
            "background outlives the run), and a process tree that keeps moving to new "
            "process ids may stay ahead of the reaper"]),
        "the process limit counts all of your processes, not only the sandbox's",
        *_weaker_notes(facts.landlock_abi),
        "stricter than the bubblewrap mode: nothing can be created, deleted or renamed at the "
        "top of a writable root or inside .git (git commit fails), and the host's /tmp, /run "
        "and /dev/shm are out of reach (TMPDIR is a private directory)",
    )
    return Plan(
        mode="landlock",
        argv=(facts.python, "-I", "-S", facts.fallback_exec, SPEC_FD),
        rlimits=_rlimits(policy, nproc=True), seccomp=(
            policy.network == "off", policy.network == "off" or not policy.unix_sockets),
        landlock=spec, pids_cgroup=pids_cgroup, placeholders=(),
        layers=("landlock", "seccomp", "no_new_privs", "no capabilities", "rlimits",
                "new session", "a reaper: everything the command starts ends with the run"),
        weaker=weaker, **common,
    )
