"""Opening, on the host, a file that a sandboxed command may have replaced.

The host's scans read files inside writable roots (a ``.git`` file, ``commondir``, git config,
a project's ``.ringfence.toml``, placeholders). A command can put a FIFO there (opening it
blocks), or a link to a device, whose open alone can act (a watchdog arms, a tape rewinds, a
terminal becomes the controlling one). Checking the kind by name and then opening the name
leaves a window in which a command still running (another run, a session's command) swaps the
name; so on Linux the node is looked up once with ``O_PATH`` (which opens nothing: no device's
open runs, no FIFO blocks), checked, and that same node reopened through ``/proc/self/fd``.
Elsewhere (no ``O_PATH``): the kind by name first, then the open without blocking and checked
again on the open file. No imports beyond ``os`` and ``stat`` (the run path).
"""

from __future__ import annotations

import os
import stat

_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
          | getattr(os, "O_CLOEXEC", 0))
_O_PATH = getattr(os, "O_PATH", 0)


def open_regular(path: str, *, follow: bool = True) -> int | None:
    """A read-only descriptor of ``path`` if it is a regular file (through links unless
    ``follow`` is false), else None; never opens anything else. OSError (a missing file, no
    permission) is the caller's to handle."""
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    if _O_PATH:
        ref = os.open(path, _O_PATH | nofollow | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(ref).st_mode):
                return None
            try:
                fd = os.open(f"/proc/self/fd/{ref}", _FLAGS)
            except FileNotFoundError:  # no /proc: by name, checked again below
                fd = os.open(path, _FLAGS | nofollow)
        finally:
            os.close(ref)
    else:
        st = os.stat(path) if follow else os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        fd = os.open(path, _FLAGS | nofollow)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd
