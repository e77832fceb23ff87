"""Test helper: Linux inotify through ctypes, to see whether anything opened a file.

``OpenWatch(path)`` watches one node for ``IN_OPEN`` (a FIFO, a device node, a regular file:
the kernel reports every successful open(2) of the inode, whichever name or link reached it).
``opened()`` drains what arrived so far. Only for tests: the package never watches files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys

assert sys.platform == "linux"

IN_OPEN = 0x00000020
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class OpenWatch:
    """An inotify watch for ``IN_OPEN`` on ``path`` (a link in ``path`` is followed: the node
    it names is watched). Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        fd = _libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd
        if _libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        self.path = os.fspath(path)

    def opened(self, wait: float = 0.2) -> int:
        """How many opens were reported since the last call (waiting up to ``wait`` seconds
        for the first, since events are queued asynchronously to the opener's return)."""
        count = 0
        ready, _, _ = select.select([self.fd], [], [], wait)
        while ready:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                if mask & IN_OPEN:
                    count += 1
                offset += _EVENT.size + length
            ready, _, _ = select.select([self.fd], [], [], 0)
        return count

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
