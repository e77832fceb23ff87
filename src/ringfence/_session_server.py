"""The server inside a session's sandbox: receives commands and fork+execs each one.

Started by ``ringfence.session`` as ``python -I -S _session_server.py FD RLIMITS`` inside the same
bubblewrap sandbox a one-shot run gets. It is a standalone script: it imports nothing from
ringfence and only C modules from the standard library, so it starts in a few milliseconds.

FD is one end of a SOCK_SEQPACKET socketpair whose other end the host keeps (one message per
``sendmsg``, so no framing). The host sends marshal-encoded requests, with file descriptors
attached:

    ("run", id, argv: list[bytes], cwd: bytes, pty: bool)   + fds [stdin, stdout, stderr]
                                                              (pty: one fd, the terminal)
    ("kill", id, signum)                                      signal the command's process group

and the server answers with fixed-size records (struct ``<BIq`` + UTF-8 text), which the host
parses without trusting them (a command could kill or confuse this server; it holds nothing the
commands do not already have):

    READY   0  own pid            once, when it is ready for requests
    STARTED id pid
    FAILED  id errno  text        could not start (127/126 decided by the host from errno)
    EXIT    id wait status        the command ended; its process group is killed then

RLIMITS is ``resource=soft:hard,...``: applied to each command before exec (not to this
server, whose CPU time would otherwise add up over the session's life).

Each command gets a session of its own (``setsid``): its group is what a timeout kills, and with
``pty`` the terminal becomes its controlling terminal. Commands run concurrently; this loop never
waits for one (SIGCHLD wakes it).
"""

# ruff: noqa: E402
import sys

assert sys.platform == "linux"  # for type checkers run with --platform darwin|win32

import _signal  # type: ignore[import-not-found]  # `signal` would import enum
import _socket  # `socket` would import enum and selectors
import fcntl
import marshal
import os
import resource
import select
import struct

READY, STARTED, FAILED, EXIT = 0, 1, 2, 3
RECORD = struct.Struct("<BIq")
MAX_REQUEST = 1 << 20
SOL_SOCKET = 1
SCM_RIGHTS = 1
MSG_CMSG_CLOEXEC = 0x40000000
TIOCSCTTY = 0x540E
# SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGXFSZ, SIGCHLD: ignored or handled here; defaults for the
# command (an ignored signal stays ignored across exec)
DEFAULT_SIGNALS = (1, 2, 13, 15, 25, 17)  # the same on x86_64 and aarch64 (asm-generic)


def _send(sock: object, kind: int, ident: int, value: int, text: str = "") -> None:
    try:
        sock.send(RECORD.pack(kind, ident, value) + text.encode("utf-8", "replace")[:4000])  # type: ignore[attr-defined]
    except OSError:
        os._exit(0)  # the host is gone: bwrap's pid 1 then ends the whole namespace


def _child(argv: list[bytes], cwd: bytes, fds: list[int], pty: bool,
           limits: list[tuple[int, int, int]], errw: int) -> None:
    """In the forked child: never returns. A failure is reported on ``errw`` as
    ``<stage> <errno>`` (stage ``exec`` or ``setup``)."""
    stage = b"setup"
    try:
        for signum in DEFAULT_SIGNALS:
            _signal.signal(signum, _signal.SIG_DFL)
        os.setsid()
        if pty:
            fcntl.ioctl(fds[0], TIOCSCTTY, 0)
            fds = [fds[0], fds[0], fds[0]]
        for target, fd in enumerate(fds):
            os.dup2(fd, target)  # dup2 clears close-on-exec on the target
        os.chdir(cwd)
        for res, soft, hard in limits:
            if res == resource.RLIMIT_CPU:  # the others are the server's own, inherited
                resource.setrlimit(res, (soft, hard))
        stage = b"exec"
        os.execvp(argv[0], argv)
    except OSError as exc:
        try:
            os.write(errw, b"%s %d" % (stage, exc.errno or 0))
        finally:
            os._exit(127)
    except BaseException:
        os._exit(127)


def main() -> None:
    sock = _socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    limits: list[tuple[int, int, int]] = []
    for item in sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else ():
        name, _, rng = item.partition("=")
        low, _, high = rng.partition(":")
        limits.append((int(name), int(low), int(high)))
    fd = sock.fileno()
    os.closerange(3, fd)  # nothing bwrap passed on reaches the commands
    os.closerange(fd + 1, 1 << 20)
    cpu = None
    for res, soft, hard in limits:
        if res == resource.RLIMIT_CPU:
            cpu = (soft, hard)
        else:  # inherited by every command (posix_spawn cannot set them in the child)
            resource.setrlimit(res, (soft, hard))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(17, lambda signum, frame: None)  # SIGCHLD: wakes the poll below
    for signum in (1, 2, 15):  # SIGHUP, SIGINT, SIGTERM: the host decides when we end
        _signal.signal(signum, _signal.SIG_IGN)
    running: dict[int, int] = {}  # pid -> id
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    _send(sock, READY, 0, os.getpid())
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(null, 2)  # nothing more from us on bwrap's stderr
    os.close(null)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except OSError:
                    pass
                while running:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if not pid:
                        break
                    ident = running.pop(pid, None)
                    if ident is not None:
                        try:
                            os.killpg(pid, 9)  # what it left behind in its group
                        except OSError:
                            pass
                        _send(sock, EXIT, ident, status)
                continue
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(
                    MAX_REQUEST, _socket.CMSG_SPACE(16 * 4), MSG_CMSG_CLOEXEC)
            except InterruptedError:
                continue
            except OSError:
                os._exit(0)
            if not data:
                os._exit(0)  # the host closed the session
            fds: list[int] = []
            for level, kind, payload in ancdata:
                if level == SOL_SOCKET and kind == SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
            try:
                request = marshal.loads(data)
                op = request[0]
            except Exception:
                for fd in fds:
                    os.close(fd)
                continue
            if op == "kill":
                _, ident, signum = request
                for pid, other in running.items():
                    if other == ident:
                        try:
                            os.killpg(pid, signum)
                        except OSError:
                            pass
                continue
            if op != "run":
                for fd in fds:
                    os.close(fd)
                continue
            _, ident, argv, cwd, pty = request
            if pty:
                _fork_exec(sock, running, ident, argv, cwd, fds, limits)
            else:
                _spawn(sock, running, ident, argv, cwd, fds, cpu)


def _spawn(sock: object, running: dict[int, int], ident: int, argv: list[bytes], cwd: bytes,
           fds: list[int], cpu: tuple[int, int] | None) -> None:
    """posix_spawn (vfork + exec in glibc): ~0.6 ms where fork + exec of this interpreter
    costs ~3 ms. It has no chdir, so this single-threaded server changes its own directory
    first; the other limits were set on the server itself and are inherited; RLIMIT_CPU is
    set on the child right after (CPU time counts from its start, so nothing escapes it)."""
    try:
        try:
            os.chdir(cwd)
        except OSError as exc:
            _send(sock, FAILED, ident, exc.errno or 0, "setup")
            return
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds[:3])]
        try:
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsid=True,
                                  setsigdef=DEFAULT_SIGNALS)
        except OSError as exc:
            _send(sock, FAILED, ident, exc.errno or 0, "exec")
            return
        if cpu is not None:
            try:
                resource.prlimit(pid, resource.RLIMIT_CPU, cpu)
            except OSError:
                pass
        running[pid] = ident
        _send(sock, STARTED, ident, pid)
    finally:
        for fd in fds:
            os.close(fd)


def _fork_exec(sock: object, running: dict[int, int], ident: int, argv: list[bytes],
               cwd: bytes, fds: list[int], limits: list[tuple[int, int, int]]) -> None:
    """fork + exec, for a command on a pseudo-terminal (it must be made the controlling
    terminal in the child, which posix_spawn cannot do)."""
    errr, errw = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(errr)
        _child(argv, cwd, fds, True, limits, errw)
    os.close(errw)
    for fd in fds:
        os.close(fd)
    failure = b""
    while True:
        try:
            chunk = os.read(errr, 64)
        except InterruptedError:
            continue
        if not chunk:
            break
        failure += chunk
    os.close(errr)
    if failure:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        stage, _, number = failure.partition(b" ")
        errno = int(number) if number.isdigit() else 0
        _send(sock, FAILED, ident, errno, stage.decode("ascii", "replace"))
    else:
        running[pid] = ident
        _send(sock, STARTED, ident, pid)


if __name__ == "__main__":
    main()
