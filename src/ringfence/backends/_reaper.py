"""The fallback launcher's reaper: nothing the command starts outlives the run.

Without user namespaces there is no pid namespace whose end takes every process with it, so
the fallback launcher (``_fallback_exec``) forks: the child becomes the command (Landlock,
seccomp, then exec), and the launcher itself stays outside the sandbox as its parent, the
reaper. It is ringfence's helper, not the command: not in the command's sandbox (at most in
a Landlock domain that scopes its own signals, below), it reads nothing the command sends it
except what the kernel reports (exit statuses, ``/proc`` parent pids).

- ``become_reaper`` (before the fork): a child subreaper (``PR_SET_CHILD_SUBREAPER``), so that
  whatever the command leaves behind (a double fork, ``setsid``) is reparented here and not to
  init; a parent-death signal it can catch (SIGTERM), so that ringfence's death, SIGKILL
  included, reaches it; its own process group, which ringfence's Ctrl-C reaches (forwarded to
  the command's); the signals it waits for blocked.
- ``supervise`` (after it): waits for the command to exit, for SIGTERM or SIGHUP (ringfence
  asks it to end the run: the timeout, ringfence told to stop, ringfence gone), forwarding
  SIGINT and SIGQUIT; reaps what ends meanwhile; then ``sweep`` SIGKILLs and reaps everything
  the command started, and it returns the command's wait status (the launcher exits with it,
  128+N for a signal N).

How ``sweep`` finds them. With Landlock ABI 6 (and the run's signal scoping on), the reaper
puts itself, before the fork, in a Landlock domain that restricts nothing but signals (no file
or network rights are handled): it can signal only processes of that domain, and the command's
own domain is nested in it. So ``kill(-1, SIGKILL)``, "every process I may signal", reaches
exactly the command's tree, in one call that also catches a process being forked meanwhile
(the kernel delivers signals sent to many processes to a racing fork's child too), however
fast the tree moves; the user's other processes are out of its reach. Below ABI 6 (or with
scoping off) it goes round by round: each round SIGKILLs its direct children (and the process
groups they lead), found in ``/proc``; a child is not reaped until this process reaps it, so
its pid, and a group named by it, cannot meanwhile be reused by an unrelated process. A deeper
process becomes a direct child when its parent dies, so each round goes one level further
down; the process limit bounds the rounds, though a tree that keeps moving to new pids faster
than ``/proc`` can be read may stay ahead of them.

What it cannot do: below Landlock ABI 6 the command may signal processes outside its domain,
this one too: SIGKILLed or stopped, it ends nothing (the command itself still dies with it, by
its parent-death signal). From ABI 6 the kernel refuses those signals.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

assert sys.platform == "linux"

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
END = frozenset({signal.SIGTERM, signal.SIGHUP})  # end the run (SIGTERM: ringfence died too)
PASS_ON = frozenset({signal.SIGINT, signal.SIGQUIT})  # Ctrl-C, Ctrl-\ for the command
WATCHED = END | PASS_ON | {signal.SIGCHLD}


def _prctl(libc: ctypes.CDLL, option: int, value: int) -> int:
    import ctypes

    return int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                          ctypes.c_ulong(0), ctypes.c_ulong(0)))


def become_reaper(libc: ctypes.CDLL, parent: int, scope: bool) -> set[int]:
    """Before the fork. With ``scope`` (Landlock ABI 6 and the run's scoping on), enters a
    Landlock domain that scopes signals only (see the module's docstring). Returns the signal
    mask to restore in the child. Raises OSError with what failed; ProcessLookupError when
    ``parent`` (ringfence) is gone already."""
    import ctypes

    for option, value, name in ((_PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER"),
                                (_PR_SET_PDEATHSIG, signal.SIGTERM, "PR_SET_PDEATHSIG")):
        if _prctl(libc, option, value) != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"prctl({name}) failed: {os.strerror(number)}")
    if os.getppid() != parent:  # it died before the prctl: no signal will come
        raise ProcessLookupError("ringfence exited before the command started")
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # a session leader (started with setsid): its own group already
    if scope:
        scope_signals(libc)
    return signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)


def scope_signals(libc: ctypes.CDLL) -> None:
    """Enter a Landlock domain (ABI 6) that scopes signals and takes no file or network access
    away: from now on this process, and what it forks, signals only processes of this domain
    or of domains nested in it. (Landlock denies renaming and linking across directories in
    every layer that does not handle that right, so this one handles it and grants it on /.)
    OSError when the kernel refuses."""
    import ctypes

    from ._landlock import (
        _PR_SET_NO_NEW_PRIVS,
        _RULE_PATH_BENEATH,
        FS_REFER,
        SCOPE_SIGNAL,
        _syscall_numbers,
        structs,
    )

    numbers = _syscall_numbers()
    if numbers is None:
        raise OSError(0, "Landlock has no syscall numbers here")
    create, add, restrict = numbers
    RulesetAttr, PathBeneathAttr = structs()

    def fail(call: str) -> OSError:
        number = ctypes.get_errno()
        return OSError(number, f"{call} failed: {os.strerror(number)}")

    libc.syscall.restype = ctypes.c_long
    attr = RulesetAttr(FS_REFER, 0, SCOPE_SIGNAL)
    ruleset = libc.syscall(ctypes.c_long(create), ctypes.byref(attr),
                           ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise fail("landlock_create_ruleset")
    try:
        root = os.open("/", os.O_PATH | os.O_CLOEXEC)
        try:
            if libc.syscall(ctypes.c_long(add), ctypes.c_long(ruleset),
                            ctypes.c_long(_RULE_PATH_BENEATH),
                            ctypes.byref(PathBeneathAttr(FS_REFER, root)),
                            ctypes.c_uint32(0)) != 0:
                raise fail("landlock_add_rule")
        finally:
            os.close(root)
        if _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1) != 0:
            raise fail("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(ctypes.c_long(restrict), ctypes.c_long(ruleset),
                        ctypes.c_uint32(0)) != 0:
            raise fail("landlock_restrict_self")
    finally:
        os.close(ruleset)


def supervise(command: int, scoped: bool, tmpdir: str = "") -> int:
    """After the fork, with ``WATCHED`` blocked: until the command exits or the run is ended,
    then ``sweep`` (``scoped``: ``scope_signals`` was done); ``tmpdir`` (the run's private
    TMPDIR) removed once nothing is left that could write there. Returns the command's wait
    status (SIGKILL's when it was ended)."""
    try:
        while not _exited(command):
            signum = signal.sigwaitinfo(WATCHED).si_signo
            if signum in PASS_ON:
                _signal_group(command, signum)
            elif signum in END:
                break
    finally:
        status = sweep_scoped(command) if scoped else sweep(command)
        if tmpdir:
            _remove(tmpdir)
    return status


def _exited(command: int) -> bool:
    """Whether the command has exited (left unreaped, so that its pid and process group stay
    its own for ``sweep``); others that ended meanwhile are reaped."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is None:
            return False
        if info.si_pid == command:
            return True
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            pass


def _signal_group(pid: int, signum: int) -> None:
    """``signum`` to the process group ``pid`` leads; only for an unreaped child ``pid``."""
    try:
        os.killpg(pid, signum)
    except OSError:
        pass


def sweep_scoped(command: int) -> int:
    """``sweep`` in a signal-scoping domain: ``kill(-1, SIGKILL)`` ends every process of the
    command's tree at once (and nothing else); reap until no child is left, killing again only
    when nothing more has ended (a process that was being forked, as a precaution)."""
    status = 9
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing left to signal
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            return status
        while pid:
            if pid == command:
                status = wait_status
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return status


def sweep(command: int) -> int:
    """SIGKILL and reap every child of this process until it has none; the command's wait
    status (``command`` must still be an unreaped child, or its status was lost: SIGKILL's)."""
    status = 9  # as if killed; replaced when the command is reaped here
    _signal_group(command, signal.SIGKILL)  # its group (and it) at once, before it is reaped
    while True:
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return status  # no child left, running or not
        found = children()
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _signal_group(pid, signal.SIGKILL)  # a daemon that made its own session
        for pid in found:
            try:
                _, wait_status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            if pid == command:
                status = wait_status
        if not found:  # reparented after the listing: look again shortly
            import time

            time.sleep(0.001)


def children() -> list[int]:
    """This process's children: ``/proc/self/task/*/children`` where the kernel has it
    (CONFIG_PROC_CHILDREN), else every ``/proc/PID/stat`` whose parent is this process."""
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children", "rb") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        pass
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold anything, ")" and spaces too
        fields = stat[stat.rfind(b")") + 1:].split()
        if len(fields) > 1 and fields[1] == str(me).encode():
            found.append(int(name))
    return found


def _remove(tmpdir: str) -> None:
    """The run's private TMPDIR, with what the command left there (fd-based, so a symlink
    planted inside cannot redirect the removal)."""
    try:
        os.rmdir(tmpdir)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(tmpdir, ignore_errors=True)
