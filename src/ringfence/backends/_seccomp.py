"""The seccomp filter: ``seccomp.rules`` compiled into a classic BPF program, no libseccomp.

The rules live in the data file ``seccomp.rules`` beside this module (its header explains the
line format); this module parses it with plain ``str.split`` and emits ``struct sock_filter``
records. It imports only ``os`` and ``sys`` (not even
``struct``) because it runs on the start-up path.

Program layout (all jumps are forward, as classic BPF requires)::

    ld   [arch]                            seccomp_data.arch
    jeq  #AUDIT_ARCH_<arch>, ok, -
    ret  KILL_PROCESS                      wrong ABI: i386 "int 0x80" on x86_64, arm32 on aarch64
 ok:ld   [nr]                              seccomp_data.nr
    (x86_64 only)
    jge  #0x40000000, x32, search          the x32 ABI sets bit 30 of the syscall number
 x32:jeq #0xffffffff, allow, -             nr -1 is not a syscall (the kernel answers ENOSYS)
    ret  KILL_PROCESS
    ret  ALLOW
 search:
    a binary search on the syscall number over the rules' syscalls (jge nodes; a node
    whose left half is more than 255 instructions long jumps through a "ja"), ending in
    short linear runs of

        jeq  #nr, -, next                  one block per syscall with rules:
          ret ERRNO|e                      unconditional rule, or
          ld [args[N] low word]            conditional rules, tried in file order,
          j..  #value ...                  each ending in its own "ret ERRNO|e",
          ret ERRNO|e                      and the block ending in "ret ALLOW"
          ret ALLOW
 next:...
        ret  ALLOW                         end of each linear run: not a listed syscall

Argument tests read only the low 32-bit word of ``seccomp_data.args[N]`` (both supported
architectures are little-endian, so it is at offset 16 + 8 * N). That is exact, not a
shortcut: every argument the rules test is a 32-bit parameter in the kernel, which ignores
the high word, so a filter that looked at it could be stepped around by setting high bits.

``install`` loads a program into the calling process with ``prctl``; bubblewrap's
``--seccomp FD`` takes the same bytes.
"""

from __future__ import annotations

import os
import sys

from ringfence.errors import UnavailableError

__all__ = ["RULES_PATH", "Rule", "build_filter", "compile_rules", "describe", "install",
           "load_rules"]

RULES_PATH = os.path.join(os.path.dirname(__file__), "seccomp.rules")

GROUPS = ("always", "no-inet", "no-unix")

# BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JA = 0x05  # BPF_JMP | BPF_JA
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_MAX_INSNS = 4096  # BPF_MAXINSNS
_MAX_JUMP = 255  # jt / jf are u8

# Return values (linux/seccomp.h).
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# struct seccomp_data offsets.
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

_X32_BIT = 0x40000000

# Errno values: identical on x86_64 and aarch64 (asm-generic/errno*.h).
_ERRNOS = {"EPERM": 1, "EACCES": 13, "ENOSYS": 38, "EAFNOSUPPORT": 97}

# Names the rules file may use in conditions. All are the same on x86_64 and aarch64.
_CONSTANTS = {
    "AF_UNIX": 1,
    "AF_VSOCK": 40,
    "TIOCSTI": 0x5412,
    "F_SETLEASE": 1024,
    "TIOCLINUX": 0x541C,
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "PER_LINUX": 0x0000,
    "PER_LINUX32": 0x0008,
    "UNAME26": 0x0020000,
    "ADDR_NO_RANDOMIZE": 0x0040000,
    "READ_IMPLIES_EXEC": 0x0400000,
}

# Syscall numbers: x86_64 from arch/x86/entry/syscalls/syscall_64.tbl, aarch64 from
# include/uapi/asm-generic/unistd.h (numbers from 424 up are shared by every architecture).
_NR_X86_64 = {
    "ioctl": 16, "socket": 41, "clone": 56, "pivot_root": 155, "personality": 135,
    "ptrace": 101, "syslog": 103, "acct": 163, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
    "pidfd_getfd": 438, "mount_setattr": 442, "quotactl_fd": 443, "open_tree_attr": 467,
    "fcntl": 72,
}
_NR_AARCH64 = {
    "lookup_dcookie": 18, "ioctl": 29, "umount2": 39, "mount": 40, "pivot_root": 41,
    "quotactl": 60, "acct": 89, "personality": 92, "unshare": 97, "kexec_load": 104,
    "init_module": 105, "delete_module": 106, "syslog": 116, "ptrace": 117, "reboot": 142,
    "socket": 198, "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220,
    "swapon": 224, "swapoff": 225, "perf_event_open": 241, "name_to_handle_at": 264,
    "open_by_handle_at": 265, "setns": 268, "process_vm_readv": 270,
    "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "bpf": 280,
    "userfaultfd": 282, "kexec_file_load": 294, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435, "pidfd_getfd": 438,
    "mount_setattr": 442, "quotactl_fd": 443, "open_tree_attr": 467, "fcntl": 25,
}

# arch name -> (AUDIT_ARCH_* value, syscall numbers, x32 check). Both are little-endian.
ARCHES: dict[str, tuple[int, dict[str, int], bool]] = {
    "x86_64": (0xC000003E, _NR_X86_64, True),
    "aarch64": (0xC00000B7, _NR_AARCH64, False),
}


_ALL_ARCHES = tuple(ARCHES)


class Rule:
    """One rule line of the rules file.

    ``arg`` is the argument a condition tests (-1: no condition), ``op`` one of "=", "!="
    and "&", ``values`` its 32-bit operands and ``ret`` the SECCOMP_RET_* value to return.
    """

    __slots__ = ("action", "arches", "arg", "cond", "group", "lineno", "op", "ret", "syscall",
                 "values", "why")

    def __init__(self, group: str, syscall: str, cond: str, action: str,
                 arches: tuple[str, ...], why: str, lineno: int) -> None:
        self.group = group
        self.syscall = syscall
        self.cond = cond
        self.action = action
        self.arches = arches
        self.why = why
        self.lineno = lineno
        if action in _ERRNOS:
            self.ret = RET_ERRNO | _ERRNOS[action]
        elif action == "KILL":
            self.ret = RET_KILL_PROCESS
        else:
            raise ValueError(f"unknown action {action!r}")
        self.arg = -1
        self.op = ""
        self.values: tuple[int, ...] = ()
        if cond != "-":
            self._parse_cond(cond)

    def _parse_cond(self, cond: str) -> None:
        for op in ("!=", "&", "="):
            head, sep, tail = cond.partition(op)
            if sep:
                break
        else:
            raise ValueError(f"condition {cond!r} has no =, != or &")
        if head not in ("arg0", "arg1", "arg2", "arg3", "arg4", "arg5"):
            raise ValueError(f"condition {cond!r} must start with arg0 .. arg5")
        values = tuple([_value(v) for v in tail.split(",")])
        if op == "&" and len(values) != 1:
            raise ValueError(f"condition {cond!r}: & takes one mask")
        self.arg = int(head[3])
        self.op = op
        self.values = values

    def label(self) -> str:
        """How ``describe`` names the rule: the syscall, and its condition if it has one."""
        text = self.syscall if self.arg < 0 else f"{self.syscall} if {self.cond}"
        if self.arches != _ALL_ARCHES:
            text += f" ({', '.join(self.arches)} only)"
        return text


def _value(text: str) -> int:
    total = 0
    for part in text.split("|"):
        total |= _CONSTANTS[part] if part in _CONSTANTS else int(part, 0)
    if not 0 <= total <= 0xFFFFFFFF:
        raise ValueError(f"value {text!r} does not fit in 32 bits")
    return total


_cache: list[Rule] | None = None


def load_rules(path: str | None = None) -> list[Rule]:
    """Parse a rules file (default: the one shipped with ringfence; parsed once, then cached).

    A malformed line raises ValueError naming the file and line.
    """
    global _cache
    if path is None and _cache is not None:
        return _cache
    where = RULES_PATH if path is None else path
    with open(where, "rb") as handle:  # binary + decode: no text-layer set-up cost
        lines = handle.read().decode("utf-8").split("\n")
    rules: list[Rule] = []
    for index, line in enumerate(lines):
        if not line or line[0] == "#":
            continue
        body, _, why = line.partition("#")
        fields = body.split()
        if not fields:
            continue
        try:
            if len(fields) == 4:
                arches = _ALL_ARCHES
            elif len(fields) == 5:
                arches = tuple(fields.pop().split(","))
            else:
                raise ValueError("expected GROUP SYSCALL CONDITION ACTION [ARCHES] # WHY")
            group, syscall, cond, action = fields
            if group not in GROUPS:
                raise ValueError(f"unknown group {group!r}")
            for arch in arches:
                if arch not in ARCHES:
                    raise ValueError(f"unknown architecture {arch!r}")
                if syscall not in ARCHES[arch][1]:
                    raise ValueError(f"no {arch} number for {syscall!r}")
            why = why.strip()
            if not why:
                raise ValueError("missing '# why' comment")
            rules.append(Rule(group, syscall, cond, action, arches, why, index + 1))
        except ValueError as error:
            raise ValueError(f"{where}:{index + 1}: {error}") from None
    if path is None:
        _cache = rules
    return rules


def _groups(block_inet: bool, block_unix: bool) -> tuple[str, ...]:
    return ("always",) + (("no-inet",) if block_inet else ()) + (
        ("no-unix",) if block_unix else ())


def describe(*, block_inet: bool, block_unix: bool) -> list[tuple[str, str, str]]:
    """(what, action, why) for every rule in force, the ABI check first, for ``explain``."""
    groups = _groups(block_inet, block_unix)
    rows = [("any syscall through another ABI (i386 int 0x80 or x32 on x86_64, arm32 on "
             "aarch64)", "KILL", "32-bit syscall tables have other numbers, so they would "
             "slip past every rule below")]
    rows.extend([(r.label(), r.action, r.why) for r in load_rules() if r.group in groups])
    return rows


# Instructions are kept as the 64-bit little-endian word of struct sock_filter
# {u16 code; u8 jt; u8 jf; u32 k;}: code | jt << 16 | jf << 24 | k << 32. Jump offsets count
# instructions after the jump, as in BPF. (Packing with int.to_bytes instead of struct: importing
# struct costs more than building the whole program.)
def _ret(value: int) -> int:
    return _RET | value << 32


def _jump(code: int, k: int, jt: int, jf: int) -> int:
    return code | jt << 16 | jf << 24 | k << 32


def _load(offset: int) -> int:
    return _LD_W_ABS | offset << 32


_RET_ALLOW = _ret(RET_ALLOW)


def _syscall_block(rules: list[Rule]) -> list[int]:
    """The code run once the syscall number matched: the rules in order, then ALLOW."""
    out: list[int] = []
    loaded = -1
    for rule in rules:
        if rule.arg < 0:
            out.append(_ret(rule.ret))
            return out
        if rule.arg != loaded:
            out.append(_load(_OFF_ARGS + 8 * rule.arg))
            loaded = rule.arg
        values = rule.values
        last = len(values) - 1
        if rule.op == "&":  # any common bit: fall into the ret
            out.append(_jump(_JSET, values[0], 0, 1))
        elif rule.op == "=":  # any equal: jump to the ret, none: skip it
            out += [_jump(_JEQ, v, last - i, 0 if i < last else 1) for i, v in enumerate(values)]
        else:  # "!=": any equal skips the ret, none: fall into it
            out += [_jump(_JEQ, v, last + 1 - i, 0) for i, v in enumerate(values)]
        out.append(_ret(rule.ret))
    out.append(_RET_ALLOW)
    return out


def _search(numbers: list[int], blocks: dict[int, list[int]]) -> list[int]:
    """Binary search over sorted syscall numbers, linear runs of at most 4 at the leaves."""
    if len(numbers) <= 4:
        out: list[int] = []
        for number in numbers:
            block = blocks[number]
            if len(block) > _MAX_JUMP:
                raise ValueError(f"rules for syscall {number} compile to too long a block")
            out.append(_jump(_JEQ, number, 0, len(block)))
            out += block
        out.append(_RET_ALLOW)
        return out
    middle = len(numbers) // 2
    low = _search(numbers[:middle], blocks)
    high = _search(numbers[middle:], blocks)
    if len(low) <= _MAX_JUMP:
        return [_jump(_JGE, numbers[middle], len(low), 0), *low, *high]
    return [_jump(_JGE, numbers[middle], 0, 1), _JA | len(low) << 32, *low, *high]


def compile_rules(rules: list[Rule], arch: str) -> bytes:
    """Compile rules (already chosen by group) for one architecture into sock_filter bytes."""
    audit_arch, numbers, x32 = ARCHES[arch]
    by_number: dict[int, list[Rule]] = {}
    for rule in rules:
        if arch in rule.arches:
            by_number.setdefault(numbers[rule.syscall], []).append(rule)
    prog = [
        _load(_OFF_ARCH),
        _jump(_JEQ, audit_arch, 1, 0),
        _ret(RET_KILL_PROCESS),
        _load(_OFF_NR),
    ]
    if x32:
        prog += [
            _jump(_JGE, _X32_BIT, 0, 3),
            _jump(_JEQ, 0xFFFFFFFF, 1, 0),
            _ret(RET_KILL_PROCESS),
            _RET_ALLOW,
        ]
    blocks = {number: _syscall_block(group) for number, group in by_number.items()}
    prog += _search(sorted(blocks), blocks)
    if len(prog) > _MAX_INSNS:
        raise ValueError(f"seccomp program has {len(prog)} instructions, over {_MAX_INSNS}")
    return b"".join([word.to_bytes(8, "little") for word in prog])


def build_filter(*, block_inet: bool, block_unix: bool, arch: str | None = None) -> bytes:
    """The sandbox's seccomp program as raw ``struct sock_filter[]`` bytes, native endian.

    ``arch`` is a ``uname -m`` name and defaults to this machine's. Raises UnavailableError
    for an architecture other than x86_64 and aarch64.
    """
    if arch is None:
        if sys.platform != "linux":
            raise UnavailableError(f"seccomp filters exist only on Linux, not on {sys.platform}")
        arch = os.uname().machine
    if arch not in ARCHES or sys.byteorder != "little":
        raise UnavailableError(
            f"seccomp filters are only built for x86_64 and aarch64, not {arch}; "
            "run ringfence on one of those")
    groups = _groups(block_inet, block_unix)
    return compile_rules([r for r in load_rules() if r.group in groups], arch)


def install(program: bytes) -> None:
    """Load ``program`` as a seccomp filter on the calling thread (and all it execs or forks).

    Sets PR_SET_NO_NEW_PRIVS first, as the kernel requires of an unprivileged caller. The
    filter cannot be removed afterwards. Raises SandboxError naming the errno on failure.
    """
    import ctypes
    import errno

    from ringfence.errors import SandboxError

    count, rest = divmod(len(program), 8)
    if rest or not 0 < count <= _MAX_INSNS:
        raise SandboxError(
            f"seccomp program is {len(program)} bytes; it must be 1 to {_MAX_INSNS} "
            "8-byte instructions")

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(count, ctypes.addressof(buffer))
    calls = (
        ("prctl(PR_SET_NO_NEW_PRIVS)", (38, 1, 0, 0, 0)),
        ("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)", (22, 2, ctypes.addressof(fprog), 0, 0)),
    )
    for name, args in calls:
        if libc.prctl(*(ctypes.c_ulong(a) for a in args)) != 0:
            number = ctypes.get_errno()
            raise SandboxError(
                f"could not install the seccomp filter: {name} failed with "
                f"{errno.errorcode.get(number, str(number))} ({os.strerror(number)})")
