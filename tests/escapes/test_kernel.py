"""Attack: the kernel's surface (new namespaces, io_uring, bpf, keyrings, perf, userfaultfd,
mount, cross-process memory access), the road most local privilege escalations take.

Each call is made with ctypes in the sandbox and must fail with EPERM (the seccomp filter answers
before the kernel looks at the arguments). The controls make the same calls without the sandbox,
on arguments that are harmless: they must not fail with EPERM there, so the EPERM inside is the
guard's.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from tests.conftest import World

PY = os.path.realpath(sys.executable)


def py(world: World, code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return world.run("run", *options, "--", PY, "-c", code)


def _sysctl(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def test_unshare_user_namespace_command(world: World) -> None:
    """The command makes a new user namespace (``unshare -U``): full capabilities inside it
    unlock mount and most of the kernel's unprivileged attack surface."""
    result = world.sandbox("unshare -U true")
    assert result.returncode != 0
    control = world.unsandboxed("unshare -U true")
    assert control.returncode == 0, control.stderr


CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

UNSHARE_CODE = f"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
out = {{}}
for name, flags in (("user", {CLONE_NEWUSER}), ("user+mount", {CLONE_NEWUSER | CLONE_NEWNS}),
                    ("user+net", {CLONE_NEWUSER | CLONE_NEWNET})):
    out[name] = 0 if libc.unshare(ctypes.c_int(flags)) == 0 else ctypes.get_errno()
print(json.dumps(out))
"""


def test_unshare_syscall(world: World) -> None:
    """The same escape through the system call itself (ctypes ``unshare(CLONE_NEWUSER)``),
    alone and with a mount or network namespace: each fails with EPERM."""
    result = py(world, UNSHARE_CODE)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "user": errno.EPERM, "user+mount": errno.EPERM, "user+net": errno.EPERM}
    control = py(world, UNSHARE_CODE, "--profile", "full-access")
    assert json.loads(control.stdout)["user"] == 0, control.stdout + control.stderr


# Numbers are those of x86_64 and aarch64's generic table; the probe refuses other machines.
SYSCALLS = {
    "x86_64": {"io_uring_setup": 425, "bpf": 321, "keyctl": 250, "perf_event_open": 298,
               "userfaultfd": 323, "mount": 165},
    "aarch64": {"io_uring_setup": 425, "bpf": 280, "keyctl": 219, "perf_event_open": 241,
                "userfaultfd": 282, "mount": 40},
}

PROBE = """
import ctypes, errno, json, os, struct, sys
NR = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *args)
    if r < 0:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    if name != "keyctl":
        os.close(r)
    return "ok"
params = ctypes.create_string_buffer(120)         # struct io_uring_params, zeroed
attr = ctypes.create_string_buffer(128)           # struct perf_event_attr
struct.pack_into("IIQ", attr, 0, 1, 128, 0)       # PERF_TYPE_SOFTWARE, size, CPU_CLOCK
struct.pack_into("Q", attr, 40, 1 | 1 << 5 | 1 << 6)  # disabled, exclude_kernel, exclude_hv
out = {
    # a one-entry ring
    "io_uring_setup": call("io_uring_setup", ctypes.c_uint(1), params),
    # BPF_MAP_CREATE with no attributes: EINVAL when the kernel gets to look
    "bpf": call("bpf", ctypes.c_int(0), None, ctypes.c_uint(0)),
    # KEYCTL_GET_KEYRING_ID of the session keyring (which is not namespaced)
    "keyctl": call("keyctl", ctypes.c_int(0), ctypes.c_long(-3), ctypes.c_int(0)),
    # count this process's own user-space CPU time
    "perf_event_open": call("perf_event_open", attr, ctypes.c_int(0), ctypes.c_int(-1),
                            ctypes.c_int(-1), ctypes.c_ulong(0)),
    # UFFD_USER_MODE_ONLY: allowed to everyone by the kernel
    "userfaultfd": call("userfaultfd", ctypes.c_int(1)),
    # onto a path that does not exist: ENOENT when the kernel gets to look
    "mount": call("mount", None, b"/nonexistent-ringfence-test", None, ctypes.c_ulong(0), None),
}
print(json.dumps(out))
"""


def test_kernel_attack_surface_syscalls(world: World) -> None:
    """The command calls io_uring_setup (its operations bypass seccomp and it is a frequent
    exploit source), bpf, keyctl (the user's keyrings outside the sandbox), perf_event_open
    (side channels), userfaultfd (widening kernel race windows) and mount (undoing the
    sandbox's view): every one fails with EPERM."""
    machine = os.uname().machine
    if machine not in SYSCALLS:
        pytest.skip(f"no syscall numbers for {machine}")
    numbers = json.dumps(SYSCALLS[machine])
    argv = ["--", PY, "-c", PROBE, numbers]
    result = world.run("run", *argv)
    assert result.returncode == 0, result.stderr
    inside = json.loads(result.stdout)
    assert inside == dict.fromkeys(SYSCALLS[machine], "EPERM")

    # Controls: without the sandbox the kernel itself answers, and not with EPERM, for the
    # calls this host allows an ordinary process (a host that disables one makes it EPERM or
    # EACCES outside too, and that control is left out).
    host = json.loads(subprocess.run([PY, "-c", PROBE, numbers], capture_output=True,
                                     text=True, check=True).stdout)
    control = json.loads(world.run("run", "--profile", "full-access", *argv).stdout)
    assert control == host
    checked = [name for name, value in host.items() if value not in ("EPERM", "EACCES")]
    assert all(control[name] != "EPERM" for name in checked)
    if _sysctl("/proc/sys/kernel/io_uring_disabled") in ("", "0"):
        assert control["io_uring_setup"] == "ok"
    assert control["mount"] in ("ENOENT", "EPERM")  # the kernel's own checks, never a mount


PROCESS_VM_CODE = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.process_vm_readv.restype = ctypes.c_ssize_t
secret = ctypes.create_string_buffer(b"CHILD-SECRET-0123456789")
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"x")
    time.sleep(10)
    os._exit(0)
os.read(r, 1)
class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(64)
local = IOVec(ctypes.cast(buf, ctypes.c_void_p), 23)
remote = IOVec(ctypes.cast(secret, ctypes.c_void_p), 23)  # same address in the forked child
n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
print(buf.value.decode() if n > 0 else "errno=%d" % ctypes.get_errno())
os.kill(pid, 9)
os.waitpid(pid, 0)
"""


def test_process_vm_readv_own_child(world: World) -> None:
    """The command reads another process's memory with process_vm_readv (no ptrace needed):
    refused even against its own child, so it cannot work against anything else."""
    result = py(world, PROCESS_VM_CODE)
    assert result.stdout.strip() == f"errno={errno.EPERM}", result.stdout + result.stderr
    control = py(world, PROCESS_VM_CODE, "--profile", "full-access")
    assert control.stdout.strip() == "CHILD-SECRET-0123456789", control.stdout + control.stderr


HOST_WIDE = ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/printk_ratelimit_burst",
             "/proc/sys/vm/drop_caches", "/proc/irq/default_smp_affinity", "/proc/sysrq-trigger")


def test_host_kernel_settings_not_writable(world: World) -> None:
    """Run by root, the command writes ``/proc/sys/kernel/core_pattern`` (``|/workspace/evil``:
    the kernel then runs that program as the host's root, outside every namespace and filter,
    the next time any process crashes), or ``drop_caches``, ``sysrq-trigger``, an irq's
    affinity. The kernel grants those writes to uid 0 by file mode alone, with no capability,
    and root's uid maps to the host's root inside. Opening each for writing (and writing
    nothing: the test never changes a setting) fails in the sandbox; as root, the control
    opens them without the sandbox."""
    code = f"""
import os
for path in {HOST_WIDE!r}:
    try:
        os.close(os.open(path, os.O_WRONLY))
        print("WRITABLE", path)
    except OSError as exc:
        print("refused", path, exc.errno)
"""
    result = py(world, code)
    assert result.returncode == 0, result.stderr
    assert "WRITABLE" not in result.stdout, result.stdout
    if os.geteuid() == 0:
        control = py(world, code, "--profile", "full-access")
        assert "WRITABLE /proc/sys/kernel/core_pattern" in control.stdout, control.stdout
