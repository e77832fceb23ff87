"""Pipes in place of standard streams that are files, so the command cannot reopen them.

On Linux a process can open ``/proc/self/fd/N`` afresh: the kernel checks only the file's own
permissions, not the mode the descriptor was opened with nor the sandbox's read-only mounts (the
file lives on a mount of the host's). A command given ``< ~/bin/tool.py`` as its standard input
could reopen it for writing and change the file; given ``>> agent.log`` it could read or
truncate the log. So a standard stream that is a regular file, a block device or a directory is
handed to the command as a pipe, and ringfence copies between the pipe and the file. Terminals,
pipes, sockets and character devices pass through unchanged (reopening those gives nothing
more than the descriptor already does).
"""

from __future__ import annotations

import os
import stat
import sys
import time

assert sys.platform != "win32"

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _thread


def _is_file(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)


def _copy(src: int, dst: int, close: int, done: _thread.LockType) -> None:
    try:
        while True:
            chunk = os.read(src, 1 << 16)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]
    except OSError:
        pass  # the reader went away (the command exited without reading everything)
    finally:
        os.close(close)
        done.release()


class Streams:
    """What the command gets as descriptors 0, 1 and 2 (``child``), and the copying threads.

    The threads are ``_thread``'s (each copy releases its lock when done, which ``finish``
    waits on): ``threading`` costs the command line ~4 ms to import."""

    __slots__ = ("child", "_ours", "_theirs", "_copies", "_started")

    def __init__(self, plan: list[tuple[int, tuple[int, ...]]]) -> None:
        import _thread

        self.child = {0: 0, 1: 1, 2: 2}
        self._ours: list[int] = []  # the child's pipe ends, closed here once it has them
        self._theirs: list[int] = []  # the copies' ends, which each copy closes when done
        # (src, dst, close, done): done is held until that copy ends
        self._copies: list[tuple[int, int, int, _thread.LockType]] = []
        self._started = False
        for fd, targets in plan:  # (our fd, the child's fds it feeds or drains)
            r, w = os.pipe()
            if fd == 0:  # the file is copied into the pipe
                self.child[0] = r
                self._ours.append(r)
                args = (0, w, w)
                self._theirs.append(w)
            else:  # the pipe is copied into the file
                for target in targets:
                    self.child[target] = w
                self._ours.append(w)
                args = (r, fd, r)
                self._theirs.append(r)
            done = _thread.allocate_lock()
            done.acquire()
            self._copies.append((*args, done))

    def spawn_actions(self) -> list[tuple[int, int, int]]:
        """``os.posix_spawn`` file actions giving the child its descriptors 0, 1 and 2."""
        return [(os.POSIX_SPAWN_DUP2, self.child[n], n) for n in (0, 1, 2)
                if self.child[n] != n]

    def started(self) -> None:
        """The child has its ends: close ours of them and start copying."""
        for fd in self._ours:
            os.close(fd)
        self._ours = []
        self._started = True
        import _thread

        for copy in self._copies:
            _thread.start_new_thread(_copy, copy)

    def finish(self, timeout: float = 1.0) -> None:
        """The command is gone: let the copies of its last output finish (bounded: a process
        that outlived it, in the fallback mode, may hold a pipe open)."""
        for fd in self._ours:
            os.close(fd)
        self._ours = []
        if not self._started:  # the command never started: close the copies' ends too
            for fd in self._theirs:
                os.close(fd)
            self._theirs = []
        deadline = time.monotonic() + timeout
        for *_, done in self._copies:
            if self._started and done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                done.release()


def guard(fds: tuple[int, ...] = (0, 1, 2)) -> Streams | None:
    """``Streams`` when any of ``fds`` (of this process, about to be inherited by the command)
    is a file; None (the usual case: a terminal or pipes) otherwise. Descriptors 1 and 2 that
    are the same file share one pipe, so their order is kept."""
    files = [fd for fd in fds if _is_file(fd)]
    if not files:
        return None
    plan: list[tuple[int, tuple[int, ...]]] = []
    if 0 in files:
        plan.append((0, (0,)))
    outs = [fd for fd in files if fd in (1, 2)]
    if len(outs) == 2 and _same(1, 2):
        plan.append((1, (1, 2)))
    else:
        plan += [(fd, (fd,)) for fd in outs]
    return Streams(plan)


def _same(a: int, b: int) -> bool:
    sa, sb = os.fstat(a), os.fstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
