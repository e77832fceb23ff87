"""The fallback launcher: one command under Landlock + seccomp + rlimits, without namespaces.

Run as ``python -I -S /path/to/_fallback_exec.py SPEC_FD`` by the Linux backend when user
namespaces are unavailable and the user opted into ``--fallback landlock``. It is a script, not
an imported module: with ``-I -S`` neither site-packages nor the script's directory is on
``sys.path``, so it puts the directory that holds the ``ringfence`` package there itself.

It reads a JSON spec from the inherited file descriptor SPEC_FD (and closes it)::

    {"argv": [...], "cwd": "...", "env": {...}, "tmpdir": "...",
     "rlimits": {"RLIMIT_CPU": [soft, hard], ...},
     "landlock": {"read_roots": [...], "write_roots": [...], "deny_read": [...],
                  "protected": [...], "block_tcp": true, "scope": true},
     "seccomp": {"block_inet": true, "block_unix": true}}

(``landlock`` may also carry ``hidden``, replacing ``_landlock.HIDDEN``.) Then it becomes the
reaper (``_reaper.become_reaper``: child subreaper, a parent-death signal from ringfence, its
own process group, at ABI 6 a Landlock domain that scopes signals only) and forks. The parent
stays outside the command's sandbox: it supervises the command, and when the command exits,
when ringfence ends the run (SIGTERM: the timeout, ringfence stopped) or dies (SIGKILL
included: the parent-death signal), it SIGKILLs and reaps everything the command started,
removes ``tmpdir`` (the run's private TMPDIR) and exits with the command's status (128+N for a
signal N). The child, in this order: SIGPIPE and SIGXFSZ back to their defaults (Python
ignores them, and exec would keep that), a new session (so the command cannot push keystrokes
into the caller's terminal), death with the reaper, the rlimits, Landlock
(``_landlock.plan_rules`` + ``apply``, which also sets no_new_privs), every capability dropped
(bounding, ambient, effective, permitted, inheritable: for root callers, as bubblewrap's
``--cap-drop ALL`` does), the seccomp filter, ``chdir``, and ``execvpe`` with PATH looked up in
the spec's environment. Everything it needs is imported before Landlock applies.

Exit status when the command does not start: 127 and ``ringfence: CMD: command not found``;
126 and ``ringfence: CMD: permission denied`` (or another reason) when it cannot be executed;
125 and ``ringfence: MESSAGE`` when the sandbox cannot be set up. One line, no traceback.

What this mode guarantees, and what it cannot (compared with the bubblewrap mode), beyond the
ruleset's own list in ``_landlock``:

- guaranteed: writes only in the writable roots, minus protected paths; no reads of deny-read
  paths or of the host's /tmp, /run and /dev beyond a few devices; no TCP (ABI 4) and, with
  seccomp, no other network sockets; no signals to or abstract sockets of outside processes
  (ABI 6); no ptrace of outside processes; no capabilities, no privilege gain by exec; the
  seccomp deny list; the rlimits; a new session.
  Nothing the command starts outlives the run (the reaper), while the reaper lives: from ABI
  6 the command cannot signal it.
- not guaranteed: no pid namespace, so the command sees every process (but cannot trace or,
  from ABI 6, signal them); below ABI 6 the command can kill or stop the reaper (the command
  itself then dies, what it started stays) and a tree that keeps moving to new pids may outrun
  the reaper's rounds; no network namespace, so with the network on, the host's loopback
  services are reachable; the process limit (RLIMIT_NPROC) counts all of the user's processes,
  the reaper too.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import Any, NoReturn

# This script is only ever run on Linux; mypy checks the rest for Linux only.
assert sys.platform == "linux"

_MAX_SPEC = 16 << 20
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class SetupError(Exception):
    """The sandbox cannot be set up: exit 125 with this one-line message."""


def _say(message: str) -> None:
    line = message if message.startswith("ringfence: ") else f"ringfence: {message}"
    try:
        os.write(2, (line.replace("\n", " ") + "\n").encode(errors="replace"))
    except OSError:
        pass


def _exit(code: int, message: str) -> NoReturn:
    _say(message)
    os._exit(code)


# ---------------------------------------------------------------------------------------------
# The spec.

def read_spec(fd: int) -> dict[str, Any]:
    """The JSON spec from ``fd`` (read to its end, then closed), checked for shape."""
    import json

    chunks = []
    size = 0
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_SPEC:
                raise SetupError(f"the sandbox spec on fd {fd} is larger than {_MAX_SPEC} bytes")
    except OSError as exc:
        raise SetupError(f"cannot read the sandbox spec from fd {fd}: {exc.strerror}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        spec = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise SetupError(f"the sandbox spec is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise SetupError("the sandbox spec is not a JSON object")
    argv = spec.get("argv")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise SetupError("the sandbox spec's argv must be a non-empty list of strings")
    if not isinstance(spec.get("cwd"), str):
        raise SetupError("the sandbox spec's cwd must be a string")
    env = spec.get("env")
    if not (isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise SetupError("the sandbox spec's env must map strings to strings")
    for key in ("rlimits", "landlock", "seccomp"):
        if not isinstance(spec.get(key, {}), dict):
            raise SetupError(f"the sandbox spec's {key} must be an object")
    return spec


def _strings(section: dict[str, Any], key: str) -> list[str]:
    value = section.get(key, [])
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise SetupError(f"the sandbox spec's landlock.{key} must be a list of strings")
    return value


# ---------------------------------------------------------------------------------------------
# The steps.

def die_with_parent(libc: ctypes.CDLL, parent: int) -> None:
    """SIGKILL this process (the command, after exec) when its parent, the reaper, dies."""
    import ctypes

    from ringfence.backends._reaper import _prctl

    if _prctl(libc, _PR_SET_PDEATHSIG, 9) != 0:
        raise SetupError(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:
        raise SetupError("the launcher exited before the command started")


def set_rlimits(limits: dict[str, Any]) -> None:
    """{"RLIMIT_X": [soft, hard]}; null or a negative value means unlimited."""
    import resource

    for name, value in limits.items():
        which = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
        if not isinstance(which, int):
            raise SetupError(f"unknown resource limit {name!r} in the sandbox spec")
        if not (isinstance(value, list) and len(value) == 2
                and all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                        for v in value)):
            raise SetupError(f"resource limit {name} must be [soft, hard]")
        soft, hard = (resource.RLIM_INFINITY if v is None or v < 0 else v for v in value)
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            raise SetupError(f"cannot set {name} to {value}: {exc}") from None


def terminals() -> list[str]:
    """The terminal devices on stdin, stdout and stderr (granted so they can be reopened)."""
    found = []
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                found.append(os.ttyname(fd))
        except OSError:
            pass
    return found


def _capabilities() -> dict[str, int]:
    caps = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Cap"):
                    name, _, value = line.partition(":")
                    caps[name] = int(value.strip(), 16)
    except (OSError, ValueError):
        pass
    return caps


def drop_capabilities(libc: ctypes.CDLL) -> None:
    """No capabilities left, now or after exec (with no_new_privs already set, root gains none
    from exec either). Matters for root callers: CAP_SYS_RESOURCE would undo the rlimits,
    CAP_SYS_TIME set the clock, CAP_LINUX_IMMUTABLE chattr host files, CAP_NET_ADMIN
    reconfigure the host's network when it is on, CAP_KILL signal anything below ABI 6."""
    import ctypes

    def prctl(*args: int) -> int:
        return int(libc.prctl(ctypes.c_int(args[0]),
                              *(ctypes.c_ulong(a) for a in (*args[1:], 0, 0, 0, 0)[:4])))

    caps = _capabilities()
    if caps.get("CapEff", 0) >> _CAP_SETPCAP & 1:
        for cap in range(64):
            if caps.get("CapBnd", 0) >> cap & 1 and prctl(_PR_CAPBSET_DROP, cap) != 0:
                raise SetupError(f"cannot drop capability {cap} from the bounding set: "
                                 f"{os.strerror(ctypes.get_errno())}")
    if caps.get("CapAmb", 0):
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)

    class Header(ctypes.Structure):
        _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))

    class Data(ctypes.Structure):
        _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32))

    if caps.get("CapEff", 0) | caps.get("CapPrm", 0) | caps.get("CapInh", 0):
        data = (Data * 2)()
        if libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
            raise SetupError(f"cannot drop capabilities: {os.strerror(ctypes.get_errno())}")
    left = _capabilities()
    if any(left.get(k, 0) for k in ("CapEff", "CapPrm", "CapInh", "CapAmb")):
        raise SetupError("capabilities are still held after dropping them")


def execute(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Exec ``argv``, looking the name up on PATH from ``env`` as a shell does: 127 with one
    line when nothing is found, 126 when what was found cannot be executed.

    Like glibc's execvpe, a file without a ``#!`` line (ENOEXEC) is run by /bin/sh. Unlike it, a
    PATH directory that cannot be searched is skipped rather than reported as "permission
    denied" (a shell's behaviour, and what the bubblewrap mode reports).
    """
    import errno
    import stat

    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        candidates = [os.path.join(entry or ".", name) for entry in path.split(":")]
    failure: tuple[int, str] = (127, f"{name}: command not found")
    for candidate in candidates:
        try:
            os.execve(candidate, argv, env)
        except OSError as exc:
            number = exc.errno or 0
        if number == errno.ENOEXEC:
            try:
                os.execve("/bin/sh", ["/bin/sh", candidate, *argv[1:]], env)
            except OSError as exc:
                number = exc.errno or 0
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            mode = 0
        if number == errno.EACCES and "/" not in name and (
                not mode or stat.S_ISDIR(mode)):
            continue  # a PATH directory we may not search, or a directory of that name
        if number in (errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV):
            continue
        if number == errno.EACCES:
            reason = "is a directory" if stat.S_ISDIR(mode) else "permission denied"
        else:
            reason = f"cannot execute: {os.strerror(number)}"
        failure = (126, f"{name}: {reason}")
        if number != errno.EACCES or "/" in name:
            break  # glibc stops at any other error; an EACCES hit keeps searching
    _exit(*failure)


def reap(reaper: Any, command: int, scoped: bool, tmpdir: str) -> NoReturn:
    """The launcher's part after the fork (see ``_reaper``): let go of the caller's standard
    streams (the terminal too), supervise, exit with the command's status (128+N for a signal
    N) once nothing it started is left."""
    try:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
    try:
        status = reaper.supervise(command, scoped, tmpdir)
    except BaseException:  # its sweep has run (see supervise); no traceback: 125
        os._exit(125)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


# ---------------------------------------------------------------------------------------------

def main(args: list[str]) -> NoReturn:
    parent = os.getppid()
    if len(args) != 2 or not args[1].isdigit():
        _exit(125, "usage: python -I -S _fallback_exec.py SPEC_FD")
    try:
        spec = read_spec(int(args[1]))
    except SetupError as exc:
        _exit(125, str(exc))

    # The standard library first (everything needed later, while it is still readable), then
    # the directory holding the ringfence package in front of sys.path: nothing there can shadow
    # a standard module any more.
    import ctypes
    import errno  # noqa: F401 - used by execute()
    import resource  # noqa: F401 - used by set_rlimits()
    import stat  # noqa: F401 - used by execute()

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, package_root)
    try:
        from ringfence.backends import _landlock, _reaper, _seccomp
        from ringfence.errors import RingfenceError
    except ImportError as exc:
        _exit(125, f"cannot load the sandbox modules from {package_root}: {exc}")

    libc = ctypes.CDLL(None, use_errno=True)
    reaper = os.getpid()
    # Everything that is only computed is done before the fork, once: after it, each object
    # Python touches costs the child (and the reaper) a copied page.
    try:
        tmpdir = spec.get("tmpdir", "")
        if not isinstance(tmpdir, str):
            raise SetupError("the sandbox spec's tmpdir must be a string")
        ll = spec.get("landlock", {})
        abi = _landlock.abi_version()
        if abi < 1:
            raise SetupError("Landlock is not available on this kernel; the fallback mode "
                             "needs it (enable user namespaces instead)")
        hidden = _strings(ll, "hidden") if "hidden" in ll else _landlock.HIDDEN
        plan = _landlock.plan_rules(
            read_roots=_strings(ll, "read_roots"), write_roots=_strings(ll, "write_roots"),
            deny_read=_strings(ll, "deny_read"), protected=_strings(ll, "protected"),
            abi=abi, terminals=terminals(), hidden=hidden)
        sec = spec.get("seccomp", {})
        program = _seccomp.build_filter(block_inet=bool(sec.get("block_inet", True)),
                                        block_unix=bool(sec.get("block_unix", True)))
        scope = bool(ll.get("scope", True))
        scoped = scope and abi >= 6  # the reaper's sweep is one kill(-1) (see _reaper)
        mask = _reaper.become_reaper(libc, parent, scoped)
        command = os.fork()
    except (SetupError, RingfenceError, ValueError) as exc:
        _exit(125, str(exc))
    except OSError as exc:
        _exit(125, f"cannot start the command: {exc.strerror or exc}")
    except Exception as exc:  # not expected: still one line, and nothing runs unconfined
        _exit(125, f"the fallback sandbox failed: {type(exc).__name__}: {exc}")
    if command:  # the reaper: outside the sandbox, until nothing of the command is left
        reap(_reaper, command, scoped, tmpdir)
    # the command
    try:
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; exec keeps that
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()  # a new session: no way to push keystrokes into the caller's terminal
        die_with_parent(libc, reaper)
        set_rlimits(spec.get("rlimits", {}))
        _landlock.apply(plan, abi=abi, block_tcp=bool(ll.get("block_tcp", True)), scope=scope)
        drop_capabilities(libc)
        _seccomp.install(program)
        cwd = spec["cwd"]
        try:
            os.chdir(cwd)
        except OSError as exc:
            raise SetupError(f"cannot enter the working directory {cwd}: {exc.strerror}"
                             ) from None
    except (SetupError, RingfenceError, ValueError) as exc:
        _exit(125, str(exc))
    except Exception as exc:  # not expected: still one line, and nothing runs unconfined
        _exit(125, f"the fallback sandbox failed: {type(exc).__name__}: {exc}")
    execute(spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv)
