"""Test helper: run a command in a private mount namespace with the test's own directories
bind-mounted over system paths (the account's home, ``/etc/shadow``), so an escape test can aim
at "the account's real ``~/.ssh``" while every byte it could read is a fake the test wrote.

As root: a new mount namespace (``unshare(CLONE_NEWNS)``). As anyone else: a new user namespace
that maps the caller's own uid and gid to themselves (so ``getuid()``, ``pwd`` and everything
ringfence decides from them stay what they are outside) and a mount namespace it owns. Either
way every mount is made private first, so nothing propagates to the host's mount table; the
mounts vanish with the namespace's last process. The commands are exec'd in it (no
``preexec_fn``: a wrapper process does the set-up and reports failures in words).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

assert sys.platform == "linux"

UNAVAILABLE = 77  # the wrapper's exit status when the host will not give it the namespace

_WRAPPER = r"""
import ctypes, ctypes.util, json, os, sys
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]

def fail(what, status=1):
    err = ctypes.get_errno()
    sys.stderr.write(f"mountns: {what}: {os.strerror(err)}\n")
    sys.exit(status)

spec = json.loads(sys.argv[1])
uid, gid = os.geteuid(), os.getegid()
if uid == 0:
    if libc.unshare(CLONE_NEWNS) != 0:
        fail("unshare(CLONE_NEWNS)", 77)
else:
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        fail("unshare(CLONE_NEWUSER | CLONE_NEWNS)", 77)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
    fail("making every mount private", 77)
for source, target in spec["binds"]:
    if libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None) != 0:
        fail(f"bind {source} over {target}")
os.chdir(spec["cwd"])
os.execve(spec["argv"][0], spec["argv"], spec["env"])
"""


def binds_over(source: str, target: str, keep: list[str]) -> list[tuple[str, str]]:
    """Binds that put ``source`` over ``target``, with every directory of ``keep`` that lies
    under ``target`` (the project, its venv, the test root) first bound into ``source`` at the
    same place, so the test's own files are still there through the covered path."""
    out: list[tuple[str, str]] = []
    tops: set[str] = set()
    for path in keep:
        path = os.path.realpath(path)
        rel = os.path.relpath(path, target)
        if rel == "." or rel.startswith(".."):
            if rel == ".":
                raise ValueError(f"{path} is {target} itself: nothing could cover it")
            continue
        tops.add(rel.split(os.sep)[0])
    for top in sorted(tops):
        inside = os.path.join(source, top)
        if os.path.isdir(os.path.join(target, top)):
            os.makedirs(inside, exist_ok=True)
        else:
            open(inside, "a").close()
        out.append((os.path.join(target, top), inside))
    out.append((source, target))
    return out


def run(argv: list[str], binds: list[tuple[str, str]], *, env: dict[str, str], cwd: str,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``argv`` in a fresh private mount namespace with ``binds`` ((source, target), in order)
    mounted; status UNAVAILABLE if the host does not allow the namespace."""
    spec = json.dumps({"binds": binds, "argv": argv, "env": env, "cwd": cwd})
    return subprocess.run([os.path.realpath(sys.executable), "-c", _WRAPPER, spec],
                          capture_output=True, text=True, timeout=timeout)


def mount_table() -> list[str]:
    """This process's mount table (mount points and sources), to show nothing leaked."""
    with open("/proc/self/mountinfo") as fh:
        return sorted(" ".join(line.split()[3:5]) for line in fh)
