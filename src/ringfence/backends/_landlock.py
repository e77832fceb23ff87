"""Landlock for the fallback mode: a pure rule planner and a thin ctypes wrapper over the syscalls.

The fallback mode runs where unprivileged user namespaces are not allowed, so bubblewrap cannot
build a private view of the filesystem. What remains is Landlock (this module), seccomp
(``_seccomp``), rlimits and a new session (``_fallback_exec``). Landlock can only *allow*: a
ruleset names directories and files and the rights granted beneath each, a right granted on a
directory holds for everything below it, and everything else is refused. There is no rule that
takes a right away again below. So "``/`` readable except ``~/.ssh``" has to be built from the
other side: read is granted on every sibling along the path from ``/`` down to ``~/.ssh`` instead
of on ``/`` (see ``plan_rules``), and likewise "the workspace writable except ``.git/hooks``".

Compared with the bubblewrap mode this is weaker (``LandlockPlan.weaker`` says it for one
ruleset; the fallback launcher's docstring lists the process-level part):

- metadata is not controlled: chmod, chown, utimes and extended attributes work on any file the
  command may change by ordinary permissions, outside the writable roots too;
- ``stat``, ``readlink`` and path lookup are not controlled: names, sizes and times under a
  deny-read directory can be probed one guessed name at a time (not listed, not read);
- connecting to unix sockets named in the filesystem is not controlled (seccomp's no-unix rule
  is what stops it); only TCP bind/connect is (ABI 4), not UDP or other families;
- signals and abstract unix sockets outside the sandbox are refused only from ABI 6;
  truncation of read-only files only from ABI 3; device ioctls only from ABI 5;
- /proc shows every process and its command line (Landlock refuses ptrace-style access, i.e.
  their memory, environment and file descriptors).

And stricter (``LandlockPlan.stricter``): a directory on the way to a protected path inside a
writable root (the root itself, ``.git``) stays read-only itself, because any right that creates,
removes or writes there would reach the protected path below too; directories above a deny-read
directory cannot be listed; rules bind to the files that exist at start.

Importing this module costs nothing beyond ``os``, ``sys`` and ``stat``; ``ctypes`` is imported
by the functions that make syscalls.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

__all__ = [
    "DEVICES", "HIDDEN", "KEEP_READABLE", "READ", "LandlockPlan", "abi_version", "apply",
    "describe_rights", "handled_fs", "plan_rules", "structs", "write_rights",
]

# ---------------------------------------------------------------------------------------------
# The kernel interface (include/uapi/linux/landlock.h). The syscall numbers are the same on
# every architecture but alpha (asm-generic numbering).

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2: rename and link across directories
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5: ioctl on character and block devices

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_NAMES = (
    "execute", "write_file", "read_file", "read_dir", "remove_dir", "remove_file", "make_char",
    "make_dir", "make_reg", "make_sock", "make_fifo", "make_block", "make_sym", "refer",
    "truncate", "ioctl_dev",
)

READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
# The only rights a rule on a file (not a directory) may carry; the kernel refuses others.
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
# Never granted, even in writable roots: a root caller (CAP_MKNOD) could otherwise make a device
# node for the host's disk in the workspace and open it. Nothing a build needs.
_NEVER = FS_MAKE_CHAR | FS_MAKE_BLOCK
_RW_DEVICE = FS_READ_FILE | FS_WRITE_FILE
_TERMINAL = FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV

# Host directories the bubblewrap mode replaces with empty private ones. Landlock cannot replace
# anything, so they are hidden instead: no rights from an ancestor's grant reach them. A grant
# named explicitly inside one (the private TMPDIR under /tmp, KEEP_READABLE, DEVICES) still holds.
HIDDEN = ("/tmp", "/var/tmp", "/run", "/var/run", "/dev")
# Under /run, what programs need to read (mirrors plan.RUN_KEEP and RUN_KEEP_NETWORK): NixOS keeps
# every program under /run/current-system, and /etc/resolv.conf often points into the resolvers'.
KEEP_READABLE = (
    "/run/current-system", "/run/booted-system", "/run/opengl-driver",
    "/run/systemd/resolve", "/run/resolvconf", "/run/NetworkManager",
)
# Under /dev, exactly what an ordinary program opens by name, and why. Everything else in /dev is
# out of reach: above all the disks, which a root caller could read raw (bypassing every
# deny-read rule), /dev/mem and /dev/port, the user's other terminals (their keystrokes), and
# the host's /dev/shm (other programs' shared memory).
DEVICES: tuple[tuple[str, int], ...] = (
    ("/dev", FS_READ_DIR),  # ls /dev, ls /dev/fd; names only, no device is opened by this
    ("/dev/null", _RW_DEVICE),  # `> /dev/null`, `< /dev/null`: everywhere
    ("/dev/zero", _RW_DEVICE),  # dd if=/dev/zero, mmap of /dev/zero
    ("/dev/full", _RW_DEVICE),  # tests of ENOSPC handling
    ("/dev/random", FS_READ_FILE),  # randomness; writing would only add entropy, not needed
    ("/dev/urandom", FS_READ_FILE),
    # the controlling terminal: the new session has none, so opening it fails with ENXIO anyway
    # (as in the bubblewrap mode); granted so that the failure is the kernel's usual one
    ("/dev/tty", _TERMINAL),
)


def handled_fs(abi: int) -> int:
    """Every filesystem right Landlock ABI ``abi`` knows (and this ruleset therefore controls)."""
    if abi < 1:
        return 0
    rights = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def write_rights(abi: int) -> int:
    """What a writable root grants: every right of the ABI but making device nodes."""
    return handled_fs(abi) & ~_NEVER


def describe_rights(rights: int) -> str:
    """``read_file|read_dir`` style names of a filesystem rights mask (for explain and errors)."""
    if rights & ~((1 << len(_FS_NAMES)) - 1):
        return f"{rights:#x}"
    names = [name for bit, name in enumerate(_FS_NAMES) if rights & (1 << bit)]
    return "|".join(names) or "none"


# ---------------------------------------------------------------------------------------------
# The plan.


class LandlockPlan:
    """One ruleset, ready for ``apply``: ``rules`` are (absolute path, rights) in path order.

    ``weaker`` says what this ruleset cannot guarantee that the bubblewrap mode does; ``stricter``
    what it refuses that the bubblewrap mode allows. Immutable.
    """

    __slots__ = ("rules", "stricter", "weaker")
    rules: tuple[tuple[str, int], ...]
    weaker: tuple[str, ...]
    stricter: tuple[str, ...]

    def __init__(self, rules: Iterable[tuple[str, int]], weaker: Iterable[str] = (),
                 stricter: Iterable[str] = ()) -> None:
        object.__setattr__(self, "rules", tuple(rules))
        object.__setattr__(self, "weaker", tuple(weaker))
        object.__setattr__(self, "stricter", tuple(stricter))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"LandlockPlan is immutable (cannot set {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"LandlockPlan is immutable (cannot delete {name})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LandlockPlan):
            return NotImplemented
        return (self.rules, self.weaker, self.stricter) == (other.rules, other.weaker,
                                                           other.stricter)

    def __hash__(self) -> int:
        return hash((self.rules, self.weaker, self.stricter))

    def __repr__(self) -> str:
        return (f"LandlockPlan(rules={self.rules!r}, weaker={self.weaker!r}, "
                f"stricter={self.stricter!r})")

    def rights(self) -> dict[str, int]:
        """The rules as a mapping path -> rights."""
        return dict(self.rules)


def _isdir(path: str) -> bool:
    """A directory itself, not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (both normalised absolute paths)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Exclusion:
    """A path whose subtree may receive at most ``cap`` from a grant on an ancestor."""

    __slots__ = ("cap", "is_dir", "kind", "path")

    def __init__(self, path: str, cap: int, is_dir: bool, kind: str) -> None:
        self.path = path
        self.cap = cap
        self.is_dir = is_dir
        self.kind = kind

    def ancestor_cap(self) -> int:
        """What a directory *above* this path may get: its cap, plus listing when this path is
        not a directory (listing the parent shows the name, as the bubblewrap mode does; a
        directory's own listing is what must not leak)."""
        return self.cap | (0 if self.is_dir else FS_READ_DIR)


def plan_rules(
    *,
    read_roots: Sequence[str],
    write_roots: Sequence[str],
    deny_read: Sequence[str],
    protected: Sequence[str],
    abi: int,
    terminals: Sequence[str] = (),
    hidden: Sequence[str] = HIDDEN,
    exists: Callable[[str], bool] = os.path.lexists,
    listdir: Callable[[str], list[str]] = os.listdir,
    isdir: Callable[[str], bool] = _isdir,
    islink: Callable[[str], bool] = os.path.islink,
    realpath: Callable[[str], str] = os.path.realpath,
) -> LandlockPlan:
    """The Landlock rules for a policy. Pure apart from the injected filesystem functions.

    - ``read_roots`` get execute, read_file and read_dir; ``write_roots`` every right of the ABI
      except making device nodes (see ``write_rights``).
    - ``deny_read``: nothing below them (existing paths only; a missing one needs nothing).
    - ``protected``: inside a writable root, read-only, and not creatable when missing.
    - ``hidden`` (default ``HIDDEN``): no rights inherited from an ancestor's grant; roots named
      inside them (and ``KEEP_READABLE``, ``DEVICES``, ``terminals``) keep theirs.
    - ``terminals``: the terminal devices the command's stdin/stdout/stderr are attached to,
      granted read, write and ioctl so ``/dev/stdout`` and friends can be reopened.

    Precedence: deny-read > protected > writable > readable > hidden. Every path is resolved
    with ``realpath`` first, because Landlock rules attach to the inode that is opened.
    ``isdir`` must not follow symbolic links; symbolic links get no rule (one would apply to the
    link's target, not to the link), and access through them is decided by the target's place.

    How a grant of rights R on a root becomes rules, when an excluded path E lies below: a
    directory D between the root and E cannot get R (R would reach E), so D gets only what E
    may have as well (for a protected E inside a writable root: read; for a deny-read E:
    nothing, or read_dir when E is a file), and every *child* of D gets R, except the child on
    the way to E, where the same split repeats. The cost is bounded: one ``listdir`` of each
    directory on the way down to each excluded path, and one rule per sibling found there, so
    O(sum of the number of entries of the ancestors of the excluded paths), never a walk of a
    tree. Example: ``/w`` writable with ``/w/.git/hooks`` protected gives every child of ``/w``
    but ``.git`` full write, every child of ``/w/.git`` but ``hooks`` full write, and ``/w``,
    ``/w/.git`` and ``/w/.git/hooks`` read only.

    Consequences, reported in ``stricter``: such a D keeps its existing files writable in place
    but nothing can be created, deleted or renamed directly in it (a new ``/w/x``, git's
    ``.git/index.lock``), since a make/remove right on D would also let the command create
    ``.git/hooks/pre-commit``, or a symlink there, or delete ``.git/config``. Directories above a
    deny-read directory cannot be listed. A sibling created after the rules were made has no
    rule, so it is unreachable (fail closed).
    """
    handled = handled_fs(abi)
    if not handled:
        return LandlockPlan((), ("Landlock is unavailable (ABI 0): nothing is enforced",))
    read = READ & handled
    write = write_rights(abi)

    def resolve(paths: Iterable[str], keep_missing: bool = False) -> list[str]:
        out: list[str] = []
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"Landlock path {path!r} is not absolute")
            real = realpath(os.path.normpath(path))
            if (keep_missing or exists(real)) and real not in out:
                out.append(real)
        return out

    denied = resolve(deny_read)
    hidden_paths = [p for p in resolve(hidden) if p != "/"]
    guarded = resolve(protected, keep_missing=True)
    exclusions = [_Exclusion(p, 0, isdir(p), "deny") for p in denied]
    exclusions += [_Exclusion(p, read, True, "protected") for p in guarded]

    grants: list[tuple[str, int, str]] = []
    grants += [(p, read, "read") for p in resolve(read_roots)]
    grants += [(p, read, "keep") for p in resolve(KEEP_READABLE)]
    grants += [(p, rights & handled, "device") for p, rights in DEVICES if exists(p)]
    grants += [(p, _TERMINAL & handled, "device") for p in resolve(terminals)]
    stricter: list[str] = []
    for root in write_roots:
        if not exists(realpath(os.path.normpath(root))):
            stricter.append(f"writable root {root} does not exist: nothing granted there")
    grants += [(p, write, "write") for p in resolve(write_roots)]

    rules: dict[str, int] = {}
    listings: dict[str, list[str]] = {}
    kinds: dict[str, bool] = {}
    split_write: list[str] = []  # directories that lost write rights for what is below them
    split_read: list[str] = []  # directories that cannot be listed
    unlisted: list[str] = []

    def is_dir(path: str) -> bool:
        if path not in kinds:
            kinds[path] = isdir(path)
        return kinds[path]

    def emit(path: str, rights: int) -> None:
        if not is_dir(path):
            rights &= FILE_RIGHTS
        if rights:
            rules[path] = rules.get(path, 0) | rights

    def children(path: str, below: list[_Exclusion]) -> list[str]:
        if path not in listings:
            try:
                names = list(listdir(path))
            except OSError:
                names = []
                unlisted.append(path)
            listings[path] = names
        names = list(listings[path])
        # the way down to an excluded path is needed even where the directory cannot be read
        prefix = path.rstrip("/") + "/"
        for ex in below:
            name = ex.path[len(prefix):].split("/", 1)[0]
            if name not in names and exists(prefix + name):
                names.append(name)
        return [prefix + name for name in sorted(names)]

    def grant(node: str, rights: int, excl: list[_Exclusion]) -> None:
        for ex in excl:
            if ex.path == node:
                rights &= ex.cap
        if not rights:
            return
        below = [ex for ex in excl if ex.path != node and rights & ~ex.cap]
        if not below or not is_dir(node):
            emit(node, rights)
            return
        safe = rights
        for ex in below:
            safe &= ex.ancestor_cap()
        emit(node, safe)
        lost = rights & ~safe
        if lost & ~read and node not in split_write:
            split_write.append(node)
        if lost & FS_READ_DIR and node not in split_read:
            split_read.append(node)
        for child in children(node, below):
            if islink(child):
                continue  # a rule would land on the target; the target's own place decides
            sub = [ex for ex in below if _inside(ex.path, child)]
            if sub:
                grant(child, rights, sub)
            else:
                emit(child, rights)

    for root, rights, kind in grants:
        winner = next((d for d in denied if _inside(root, d)), None)
        if winner is not None:
            if kind in ("write", "read"):
                stricter.append(f"{kind} root {root} is inside deny-read {winner}: deny wins, "
                                "nothing granted there")
            continue
        for ex in exclusions:
            if ex.kind == "protected" and _inside(root, ex.path) and ex.path != root:
                rights &= ex.cap  # a root inside a protected path is read-only with it
        excl = [ex for ex in exclusions if _inside(ex.path, root)]
        excl += [_Exclusion(h, 0, True, "hidden") for h in hidden_paths
                 if h != root and _inside(h, root)]
        grant(root, rights, excl)

    final = _prune(rules)
    stricter += _stricter_notes(split_write, split_read, unlisted, hidden_paths, abi)
    return LandlockPlan(final, _weaker_notes(abi), stricter)


def _prune(rules: dict[str, int]) -> list[tuple[str, int]]:
    """Drop rules whose rights an ancestor directory's rule already grants, sort by path."""
    out = []
    for path in sorted(rules):
        rights = rules[path]
        parent = path
        redundant = False
        while parent != "/":
            parent = os.path.dirname(parent)
            if rules.get(parent, 0) & rights == rights:
                redundant = True
                break
        if not redundant:
            out.append((path, rights))
    return out


def _listing(paths: list[str], limit: int = 8) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _stricter_notes(split_write: list[str], split_read: list[str], unlisted: list[str],
                    hidden: list[str], abi: int) -> list[str]:
    notes = []
    if split_write:
        notes.append(
            "read-only directories inside writable roots (each contains a protected or "
            "deny-read path, which any create, delete or write right on it would reach too): "
            f"{_listing(split_write)}; their existing files can be rewritten in place, but "
            "nothing can be created, deleted or renamed directly in them (a new file at the top "
            "of the workspace, git's .git/index.lock, an editor's save-by-rename)")
    if split_read:
        notes.append(f"cannot be listed (they contain deny-read or hidden paths): "
                     f"{_listing(split_read)}")
    if unlisted:
        notes.append(f"could not list {_listing(unlisted)} when planning: their other entries "
                     "are unreachable")
    if hidden:
        notes.append(
            f"hidden rather than replaced by private ones: {_listing(hidden)}: programs that "
            "use them directly fail (TMPDIR is the sandbox's own); with /dev hidden, so do POSIX "
            "semaphores and shared memory in /dev/shm (Python multiprocessing locks)")
    notes += [
        "devices: only /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty and "
        "the terminal already on stdin/stdout/stderr; no new pseudo-terminals",
        "nothing under /proc or /sys is writable (e.g. /proc/self/oom_score_adj)",
        "rules bind to the files that exist at start: an entry created later beside a "
        "deny-read, hidden or protected path is unreachable",
    ]
    if abi < 2:
        notes.append("Landlock ABI 1: nothing can be renamed or hard-linked into another "
                     "directory (no refer right)")
    return notes


def _weaker_notes(abi: int) -> list[str]:
    notes = [
        "metadata is not controlled: chmod, chown, utimes and extended attributes work on every "
        "file the command owns (or, as root, any file), outside the writable roots and on "
        "protected and deny-read paths too",
        "stat, lstat, readlink and path lookup are not controlled: names, sizes and times under "
        "deny-read directories can be probed by guessing names (not listed, not read)",
        "connecting to unix sockets in the filesystem is not controlled by Landlock (only the "
        "seccomp no-unix rule refuses unix sockets)",
        "/proc shows every process and its command line; their memory, environment and file "
        "descriptors are refused (Landlock's ptrace rule)",
    ]
    if abi < 3:
        notes.append(f"Landlock ABI {abi} < 3: files outside the writable roots can be "
                     "truncated (truncate(2), open with O_TRUNC)")
    if abi < 4:
        notes.append(f"Landlock ABI {abi} < 4: TCP is not controlled by Landlock (only "
                     "seccomp's no-inet rule refuses network sockets)")
    else:
        notes.append("only TCP bind and connect are controlled by Landlock; UDP, ICMP and other "
                     "socket families are left to seccomp's no-inet rule")
    if abi < 5:
        notes.append(f"Landlock ABI {abi} < 5: ioctl on the devices that can be opened is not "
                     "controlled")
    if abi < 6:
        notes.append(f"Landlock ABI {abi} < 6: the command can signal your other processes "
                     "(kill, as root any process) and connect to abstract unix sockets outside "
                     "(X11, D-Bus) unless seccomp refuses unix sockets")
    return notes


# ---------------------------------------------------------------------------------------------
# The syscalls.

def _syscall_numbers() -> tuple[int, int, int] | None:
    if sys.platform != "linux" or os.uname().machine.startswith("alpha"):
        return None
    return _SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF


def abi_version() -> int:
    """The Landlock ABI of the running kernel; 0 when unsupported or disabled. Never raises."""
    try:
        numbers = _syscall_numbers()
        if numbers is None:
            return 0
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        result = libc.syscall(ctypes.c_long(numbers[0]), ctypes.c_void_p(None),
                              ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
        return max(int(result), 0)
    except Exception:  # a probe: any failure means "not available"
        return 0


def _errname(number: int) -> str:
    import errno

    return f"{errno.errorcode.get(number, str(number))} ({os.strerror(number)})"


def structs() -> tuple[Any, Any]:
    """The ctypes types of ``struct landlock_ruleset_attr`` and (packed)
    ``struct landlock_path_beneath_attr``."""
    import ctypes

    class RulesetAttr(ctypes.Structure):
        _fields_ = (("handled_access_fs", ctypes.c_uint64),
                    ("handled_access_net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64))

    class PathBeneathAttr(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))

    return RulesetAttr, PathBeneathAttr


def apply(plan: LandlockPlan, *, abi: int, block_tcp: bool, scope: bool) -> None:
    """Restrict the calling thread (and everything it execs or forks) to ``plan``. For good.

    Creates the ruleset (the filesystem rights of ``abi``; with ``block_tcp`` and ABI >= 4 TCP
    bind and connect with no rule allowing any, so no TCP at all; with ``scope`` and ABI >= 6
    no signals to, and no abstract unix sockets of, processes outside), opens each path with
    O_PATH|O_NOFOLLOW|O_CLOEXEC and adds its rule (masked to file rights when it is not a
    directory; skipped when it vanished or became a symbolic link since planning or cannot be
    reached, which can only take access away), sets PR_SET_NO_NEW_PRIVS and restricts itself.
    Call it single-threaded: other threads keep their freedom. Raises UnavailableError or
    SandboxError, one line each.
    """
    from ..errors import SandboxError, UnavailableError

    if sys.platform != "linux":
        raise UnavailableError("Landlock exists only on Linux")
    numbers = _syscall_numbers()
    if numbers is None:
        raise UnavailableError(f"Landlock: no syscall numbers for {os.uname().machine}")
    if abi < 1:
        raise UnavailableError("Landlock is not available on this kernel (ABI 0); enable "
                               "it (lsm=landlock) or user namespaces")
    import ctypes

    sys_create, sys_add, sys_restrict = numbers
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int

    RulesetAttr, PathBeneathAttr = structs()
    handled = handled_fs(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if block_tcp and abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if scope and abi >= 6 else 0
    attr = RulesetAttr(handled, net, scoped)
    size = 24 if scoped else 16 if net else 8  # older kernels know only the first fields
    ruleset = libc.syscall(ctypes.c_long(sys_create), ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        number = ctypes.get_errno()
        import errno

        if number in (errno.ENOSYS, errno.EOPNOTSUPP):
            raise UnavailableError(f"Landlock is not available: landlock_create_ruleset failed "
                                   f"with {_errname(number)}")
        raise SandboxError(f"landlock_create_ruleset failed with {_errname(number)}")
    try:
        flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
        for path, rights in plan.rules:
            try:
                fd = os.open(path, flags)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                # gone since planning, or behind a directory this user may not search (so
                # unreachable anyway; Landlock never grants more than file permissions do)
                continue
            except OSError as exc:
                raise SandboxError(f"cannot open {path} for its Landlock rule: "
                                   f"{_errname(exc.errno or 0)}") from None
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode):
                    continue  # replaced by a link since planning: a rule would be meaningless
                if not stat.S_ISDIR(mode):
                    rights &= FILE_RIGHTS
                rights &= handled
                if not rights:
                    continue
                beneath = PathBeneathAttr(rights, fd)
                if libc.syscall(ctypes.c_long(sys_add), ctypes.c_long(ruleset),
                                ctypes.c_long(_RULE_PATH_BENEATH), ctypes.byref(beneath),
                                ctypes.c_uint32(0)) != 0:
                    number = ctypes.get_errno()
                    raise SandboxError(
                        f"landlock_add_rule failed for {path} ({describe_rights(rights)}): "
                        f"{_errname(number)}")
            finally:
                os.close(fd)
        if libc.prctl(ctypes.c_int(_PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), ctypes.c_ulong(0),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed with "
                               f"{_errname(ctypes.get_errno())}")
        if libc.syscall(ctypes.c_long(sys_restrict), ctypes.c_long(ruleset),
                        ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_restrict_self failed with "
                               f"{_errname(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
