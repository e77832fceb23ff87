"""Thin, typed ctypes wrappers over the Win32 calls the Windows backend needs. Windows only.

NOT YET RUN ON A REAL WINDOWS HOST: this module is type-checked (``mypy --platform win32``)
but has never executed; see the README's Windows section. Every failure becomes a
``SandboxError`` naming the call and Windows' message, here at the boundary.
"""

from __future__ import annotations

import sys

from ..errors import SandboxError

# Windows only: this tells type checkers run with --platform linux|darwin to skip the module.
assert sys.platform == "win32"

import ctypes  # noqa: E402
from ctypes import wintypes  # noqa: E402

advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
user32 = ctypes.WinDLL("user32", use_last_error=True)
crypt32 = ctypes.WinDLL("crypt32", use_last_error=True)
netapi32 = ctypes.WinDLL("netapi32", use_last_error=True)

INVALID_HANDLE = wintypes.HANDLE(-1).value
# CreateFileW
READ_CONTROL, WRITE_DAC = 0x20000, 0x40000
FILE_SHARE_ALL = 0x7
OPEN_EXISTING = 3
FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT = 0x02000000, 0x00200000
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
# security information
SE_FILE_OBJECT = 1
DACL_SECURITY_INFORMATION = 0x4
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
UNPROTECTED_DACL_SECURITY_INFORMATION = 0x20000000
SE_DACL_PROTECTED = 0x1000
ACL_REVISION = 2
ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE = 0, 1
INHERITED_ACE = 0x10
# processes
CREATE_SUSPENDED = 0x4
CREATE_UNICODE_ENVIRONMENT = 0x400
CREATE_NEW_PROCESS_GROUP = 0x200
LOGON_WITH_PROFILE = 0x1
INFINITE = 0xFFFFFFFF
WAIT_TIMEOUT = 0x102
# tokens
TOKEN_ALL_ACCESS = 0xF01FF
TOKEN_DEFAULT_DACL_CLASS = 6
SE_PRIVILEGE_ENABLED = 0x2
# jobs
JOB_EXTENDED_LIMIT_CLASS, JOB_UI_CLASS, JOB_CPU_RATE_CLASS = 9, 4, 15
CPU_RATE_ENABLE, CPU_RATE_HARD_CAP = 0x1, 0x4
# desktops
DESKTOP_ALL_ACCESS = 0x01FF
# DPAPI
CRYPTPROTECT_UI_FORBIDDEN = 0x1


def _fail(what: str) -> SandboxError:
    err = ctypes.get_last_error()
    return SandboxError(f"{what} failed: {ctypes.FormatError(err).strip()} (error {err})")


def _ok(result: object, what: str) -> None:
    if not result:
        raise _fail(what)


class Handle:
    """A Win32 handle closed exactly once."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def close(self) -> None:
        if self.value:
            kernel32.CloseHandle(wintypes.HANDLE(self.value))
            self.value = 0

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# SIDs

def sid_from_string(sid: str) -> ctypes.c_void_p:
    out = ctypes.c_void_p()
    _ok(advapi32.ConvertStringSidToSidW(wintypes.LPCWSTR(sid), ctypes.byref(out)),
        f"ConvertStringSidToSidW({sid})")
    return out


def sid_to_string(psid: ctypes.c_void_p | int) -> str:
    out = wintypes.LPWSTR()
    _ok(advapi32.ConvertSidToStringSidW(psid, ctypes.byref(out)), "ConvertSidToStringSidW")
    try:
        return str(out.value)
    finally:
        kernel32.LocalFree(out)


def lookup_account(name: str) -> str:
    """The SID string of a local account or group."""
    sid_size, dom_size, use = wintypes.DWORD(0), wintypes.DWORD(0), wintypes.DWORD(0)
    advapi32.LookupAccountNameW(None, name, None, ctypes.byref(sid_size), None,
                                ctypes.byref(dom_size), ctypes.byref(use))
    if not sid_size.value:
        raise _fail(f"LookupAccountNameW({name})")
    sid = ctypes.create_string_buffer(sid_size.value)
    dom = ctypes.create_unicode_buffer(dom_size.value)
    _ok(advapi32.LookupAccountNameW(None, name, sid, ctypes.byref(sid_size), dom,
                                    ctypes.byref(dom_size), ctypes.byref(use)),
        f"LookupAccountNameW({name})")
    return sid_to_string(ctypes.cast(sid, ctypes.c_void_p))


def sd_from_sddl(sddl: str) -> bytes:
    """The self-relative security descriptor for ``sddl`` (e.g. a WFP user condition)."""
    psd = ctypes.c_void_p()
    size = wintypes.ULONG()
    _ok(advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
        wintypes.LPCWSTR(sddl), 1, ctypes.byref(psd), ctypes.byref(size)),
        f"ConvertStringSecurityDescriptorToSecurityDescriptorW({sddl})")
    try:
        return ctypes.string_at(psd, size.value)
    finally:
        kernel32.LocalFree(psd)


# ---------------------------------------------------------------------------------------------
# Files: final paths, drive types, DACLs (never through a reparse point)

class BY_HANDLE_FILE_INFORMATION(ctypes.Structure):
    _fields_ = [("dwFileAttributes", wintypes.DWORD), ("ftCreationTime", wintypes.FILETIME),
                ("ftLastAccessTime", wintypes.FILETIME), ("ftLastWriteTime", wintypes.FILETIME),
                ("dwVolumeSerialNumber", wintypes.DWORD), ("nFileSizeHigh", wintypes.DWORD),
                ("nFileSizeLow", wintypes.DWORD), ("nNumberOfLinks", wintypes.DWORD),
                ("nFileIndexHigh", wintypes.DWORD), ("nFileIndexLow", wintypes.DWORD)]


def open_no_follow(path: str, access: int) -> Handle:
    """A handle on ``path`` itself (a reparse point is opened, not followed)."""
    h = kernel32.CreateFileW(wintypes.LPCWSTR(path), wintypes.DWORD(access),
                             wintypes.DWORD(FILE_SHARE_ALL), None, wintypes.DWORD(OPEN_EXISTING),
                             wintypes.DWORD(FILE_FLAG_BACKUP_SEMANTICS
                                            | FILE_FLAG_OPEN_REPARSE_POINT), None)
    if h is None or h == INVALID_HANDLE:
        raise _fail(f"CreateFileW({path})")
    return Handle(int(h))


def is_reparse_point(handle: Handle) -> bool:
    info = BY_HANDLE_FILE_INFORMATION()
    _ok(kernel32.GetFileInformationByHandle(wintypes.HANDLE(handle.value), ctypes.byref(info)),
        "GetFileInformationByHandle")
    return bool(info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT)


def final_path(path: str) -> str:
    """GetFinalPathNameByHandleW: links, 8.3 names and case resolved (``\\\\?\\`` removed)."""
    h = kernel32.CreateFileW(wintypes.LPCWSTR(path), wintypes.DWORD(0),
                             wintypes.DWORD(FILE_SHARE_ALL), None, wintypes.DWORD(OPEN_EXISTING),
                             wintypes.DWORD(FILE_FLAG_BACKUP_SEMANTICS), None)
    if h is None or h == INVALID_HANDLE:
        raise _fail(f"CreateFileW({path})")
    with Handle(int(h)) as handle:
        buf = ctypes.create_unicode_buffer(32768)
        n = kernel32.GetFinalPathNameByHandleW(wintypes.HANDLE(handle.value), buf, 32768, 0)
        _ok(n, f"GetFinalPathNameByHandleW({path})")
        out = str(buf.value)
    if out.startswith("\\\\?\\UNC\\"):
        return "\\\\" + out[8:]
    return out[4:] if out.startswith("\\\\?\\") else out


def drive_type(drive: str) -> str:
    kinds = {2: "removable", 3: "fixed", 4: "remote", 5: "cdrom", 6: "ramdisk"}
    return kinds.get(int(kernel32.GetDriveTypeW(wintypes.LPCWSTR(drive + "\\"))), "unknown")


class ACL_HEADER(ctypes.Structure):
    _fields_ = [("AclRevision", ctypes.c_ubyte), ("Sbz1", ctypes.c_ubyte),
                ("AclSize", wintypes.WORD), ("AceCount", wintypes.WORD),
                ("Sbz2", wintypes.WORD)]


class ACE(ctypes.Structure):
    """ACCESS_ALLOWED_ACE / ACCESS_DENIED_ACE (same layout); the SID starts at SidStart."""

    _fields_ = [("AceType", ctypes.c_ubyte), ("AceFlags", ctypes.c_ubyte),
                ("AceSize", wintypes.WORD), ("Mask", wintypes.DWORD),
                ("SidStart", wintypes.DWORD)]


AceTuple = tuple[str, int, int, str]  # (allow|deny, flags, mask, SID)


def _read_dacl(handle: Handle) -> tuple[list[AceTuple], list[AceTuple], bool]:
    """(explicit ACEs, inherited ACEs, protected) of the object's DACL."""
    pdacl, psd = ctypes.c_void_p(), ctypes.c_void_p()
    err = advapi32.GetSecurityInfo(wintypes.HANDLE(handle.value), SE_FILE_OBJECT,
                                   DACL_SECURITY_INFORMATION, None, None, ctypes.byref(pdacl),
                                   None, ctypes.byref(psd))
    if err:
        raise SandboxError(f"GetSecurityInfo failed: {ctypes.FormatError(err).strip()}")
    try:
        control, rev = wintypes.WORD(), wintypes.DWORD()
        _ok(advapi32.GetSecurityDescriptorControl(psd, ctypes.byref(control), ctypes.byref(rev)),
            "GetSecurityDescriptorControl")
        explicit: list[AceTuple] = []
        inherited: list[AceTuple] = []
        if pdacl.value:
            header = ACL_HEADER.from_address(pdacl.value)
            for i in range(header.AceCount):
                pace = ctypes.c_void_p()
                _ok(advapi32.GetAce(pdacl, i, ctypes.byref(pace)), "GetAce")
                ace = ACE.from_address(int(pace.value or 0))
                if ace.AceType not in (ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE):
                    raise SandboxError("a DACL holds an ACE type ringfence does not handle "
                                       f"({ace.AceType}); leaving it untouched")
                sid = sid_to_string(int(pace.value or 0) + ACE.SidStart.offset)
                item = ("allow" if ace.AceType == ACCESS_ALLOWED_ACE_TYPE else "deny",
                        ace.AceFlags & 0xF, int(ace.Mask), sid)
                (inherited if ace.AceFlags & INHERITED_ACE else explicit).append(item)
        return explicit, inherited, bool(control.value & SE_DACL_PROTECTED)
    finally:
        kernel32.LocalFree(psd)


def dacl_info(path: str) -> tuple[list[AceTuple], bool]:
    """(explicit ACEs, protected) of ``path`` itself."""
    with open_no_follow(path, READ_CONTROL) as h:
        explicit, _, protected = _read_dacl(h)
        return explicit, protected


def read_aces(path: str) -> list[AceTuple]:
    """The explicit ACEs on ``path`` itself."""
    with open_no_follow(path, READ_CONTROL) as h:
        return _read_dacl(h)[0]


def write_aces(path: str, add: list[AceTuple], remove: list[AceTuple]) -> None:
    """Add and remove explicit ACEs on ``path`` itself, keeping canonical order (explicit deny,
    explicit allow; inherited ACEs are recomputed by Windows). Refuses a reparse point."""
    with open_no_follow(path, READ_CONTROL | WRITE_DAC) as h:
        if is_reparse_point(h):
            raise SandboxError(f"{path} is a junction or symbolic link; ringfence does not put "
                               "ACEs on links (the target would not be guarded as planned)")
        explicit, _, protected = _read_dacl(h)
        kept = [a for a in explicit if a not in remove]
        new = [a for a in add if a not in kept]
        ordered = ([a for a in new if a[0] == "deny"] + [a for a in kept if a[0] == "deny"]
                   + [a for a in kept if a[0] == "allow"] + [a for a in new if a[0] == "allow"])
        size = ctypes.sizeof(ACL_HEADER) + sum(ctypes.sizeof(ACE) - 4 + 68 for _ in ordered)
        acl = ctypes.create_string_buffer(size)
        _ok(advapi32.InitializeAcl(acl, size, ACL_REVISION), "InitializeAcl")
        for action, flags, mask, sid in ordered:
            psid = sid_from_string(sid)
            try:
                fn = (advapi32.AddAccessAllowedAceEx if action == "allow"
                      else advapi32.AddAccessDeniedAceEx)
                _ok(fn(acl, ACL_REVISION, flags, mask, psid), f"AddAccess{action}AceEx")
            finally:
                kernel32.LocalFree(psid)
        info = DACL_SECURITY_INFORMATION | (PROTECTED_DACL_SECURITY_INFORMATION if protected
                                            else UNPROTECTED_DACL_SECURITY_INFORMATION)
        err = advapi32.SetSecurityInfo(wintypes.HANDLE(h.value), SE_FILE_OBJECT, info, None,
                                       None, acl, None)
        if err:
            raise SandboxError(f"SetSecurityInfo({path}) failed: "
                               f"{ctypes.FormatError(err).strip()}")


# ---------------------------------------------------------------------------------------------
# DPAPI (current user scope only: never CRYPTPROTECT_LOCAL_MACHINE)

class DATA_BLOB(ctypes.Structure):
    _fields_ = [("cbData", wintypes.DWORD), ("pbData", ctypes.POINTER(ctypes.c_char))]


def _blob(data: bytes) -> DATA_BLOB:
    buf = ctypes.create_string_buffer(data, len(data))
    return DATA_BLOB(len(data), ctypes.cast(buf, ctypes.POINTER(ctypes.c_char)))


def _crypt(fn_name: str, data: bytes) -> bytes:
    src, out = _blob(data), DATA_BLOB()
    fn = getattr(crypt32, fn_name)
    _ok(fn(ctypes.byref(src), None, None, None, None, CRYPTPROTECT_UI_FORBIDDEN,
           ctypes.byref(out)), fn_name)
    try:
        return ctypes.string_at(out.pbData, out.cbData)
    finally:
        kernel32.LocalFree(out.pbData)


def protect(data: bytes) -> bytes:
    return _crypt("CryptProtectData", data)


def unprotect(data: bytes) -> bytes:
    return _crypt("CryptUnprotectData", data)


# ---------------------------------------------------------------------------------------------
# Local users and groups

class USER_INFO_1(ctypes.Structure):
    _fields_ = [("name", wintypes.LPWSTR), ("password", wintypes.LPWSTR),
                ("password_age", wintypes.DWORD), ("priv", wintypes.DWORD),
                ("home_dir", wintypes.LPWSTR), ("comment", wintypes.LPWSTR),
                ("flags", wintypes.DWORD), ("script_path", wintypes.LPWSTR)]


class LOCALGROUP_INFO_1(ctypes.Structure):
    _fields_ = [("name", wintypes.LPWSTR), ("comment", wintypes.LPWSTR)]


class LOCALGROUP_MEMBERS_INFO_3(ctypes.Structure):
    _fields_ = [("domainandname", wintypes.LPWSTR)]


UF_SCRIPT, UF_DONT_EXPIRE_PASSWD, UF_PASSWD_CANT_CHANGE = 0x1, 0x10000, 0x40
USER_PRIV_USER = 1
NERR_GROUP_EXISTS, NERR_USER_EXISTS, ERROR_MEMBER_IN_ALIAS = 2223, 2224, 1378


def _net(result: int, what: str, ok: tuple[int, ...] = ()) -> None:
    if result and result not in ok:
        raise SandboxError(f"{what} failed: {ctypes.FormatError(result).strip()} ({result})")


def add_group(name: str, comment: str) -> None:
    info = LOCALGROUP_INFO_1(name, comment)
    _net(netapi32.NetLocalGroupAdd(None, 1, ctypes.byref(info), None),
         f"NetLocalGroupAdd({name})", (NERR_GROUP_EXISTS,))


def add_user(name: str, password: str, comment: str) -> None:
    info = USER_INFO_1(name, password, 0, USER_PRIV_USER, None, comment,
                       UF_SCRIPT | UF_DONT_EXPIRE_PASSWD | UF_PASSWD_CANT_CHANGE, None)
    _net(netapi32.NetUserAdd(None, 1, ctypes.byref(info), None), f"NetUserAdd({name})")


def set_password(name: str, password: str) -> None:
    class USER_INFO_1003(ctypes.Structure):
        _fields_ = [("password", wintypes.LPWSTR)]

    info = USER_INFO_1003(password)
    _net(netapi32.NetUserSetInfo(None, name, 1003, ctypes.byref(info), None),
         f"NetUserSetInfo({name})")


def add_to_group(group: str, user: str) -> None:
    member = LOCALGROUP_MEMBERS_INFO_3(user)
    _net(netapi32.NetLocalGroupAddMembers(None, group, 3, ctypes.byref(member), 1),
         f"NetLocalGroupAddMembers({group}, {user})", (ERROR_MEMBER_IN_ALIAS,))


def delete_user(name: str) -> None:
    _net(netapi32.NetUserDel(None, name), f"NetUserDel({name})", (2221,))  # NERR_UserNotFound


def delete_group(name: str) -> None:
    _net(netapi32.NetLocalGroupDel(None, name), f"NetLocalGroupDel({name})", (2220,))


# ---------------------------------------------------------------------------------------------
# Processes, tokens, jobs, desktops

class STARTUPINFOW(ctypes.Structure):
    _fields_ = [("cb", wintypes.DWORD), ("lpReserved", wintypes.LPWSTR),
                ("lpDesktop", wintypes.LPWSTR), ("lpTitle", wintypes.LPWSTR),
                ("dwX", wintypes.DWORD), ("dwY", wintypes.DWORD), ("dwXSize", wintypes.DWORD),
                ("dwYSize", wintypes.DWORD), ("dwXCountChars", wintypes.DWORD),
                ("dwYCountChars", wintypes.DWORD), ("dwFillAttribute", wintypes.DWORD),
                ("dwFlags", wintypes.DWORD), ("wShowWindow", wintypes.WORD),
                ("cbReserved2", wintypes.WORD), ("lpReserved2", ctypes.c_void_p),
                ("hStdInput", wintypes.HANDLE), ("hStdOutput", wintypes.HANDLE),
                ("hStdError", wintypes.HANDLE)]


class PROCESS_INFORMATION(ctypes.Structure):
    _fields_ = [("hProcess", wintypes.HANDLE), ("hThread", wintypes.HANDLE),
                ("dwProcessId", wintypes.DWORD), ("dwThreadId", wintypes.DWORD)]


def environment_block(env: dict[str, str]) -> ctypes.Array[ctypes.c_wchar]:
    text = "".join(f"{k}={v}\0" for k, v in sorted(env.items(), key=lambda kv: kv[0].upper()))
    return ctypes.create_unicode_buffer(text + "\0")


STARTF_USESTDHANDLES = 0x100
Std = tuple[int, int, int]  # stdin, stdout, stderr handles (inheritable)


def _startup(std: Std | None, desktop: str | None = None) -> STARTUPINFOW:
    si = STARTUPINFOW()
    si.cb = ctypes.sizeof(si)
    if desktop:
        si.lpDesktop = desktop
    if std is not None:
        si.dwFlags |= STARTF_USESTDHANDLES
        si.hStdInput, si.hStdOutput, si.hStdError = std
    return si


def std_handles() -> Std:
    """This process's standard handles (the runner passes them on to the command)."""
    return (int(kernel32.GetStdHandle(wintypes.DWORD(-10 & 0xFFFFFFFF)) or 0),
            int(kernel32.GetStdHandle(wintypes.DWORD(-11 & 0xFFFFFFFF)) or 0),
            int(kernel32.GetStdHandle(wintypes.DWORD(-12 & 0xFFFFFFFF)) or 0))


def create_process(command_line: str, cwd: str, env: dict[str, str], std: Std
                   ) -> tuple[Handle, Handle, int]:
    """A process with this process's own token (full-access), suspended, ``std`` inherited."""
    si = _startup(std)
    pi = PROCESS_INFORMATION()
    cmd = ctypes.create_unicode_buffer(command_line)
    _ok(kernel32.CreateProcessW(None, cmd, None, None, True,
                                CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT,
                                environment_block(env), cwd, ctypes.byref(si),
                                ctypes.byref(pi)), "CreateProcessW")
    return Handle(int(pi.hProcess or 0)), Handle(int(pi.hThread or 0)), int(pi.dwProcessId)


def create_process_with_logon(user: str, password: str, command_line: str, cwd: str,
                              env: dict[str, str], std: Std | None = None
                              ) -> tuple[Handle, Handle, int]:
    """The runner, started suspended as ``user`` (with its profile). (process, thread, pid).
    ``std``: handles the secondary logon service duplicates into it (as .NET's Process.Start
    does with a user name and redirected streams)."""
    si = _startup(std)
    pi = PROCESS_INFORMATION()
    cmd = ctypes.create_unicode_buffer(command_line)
    _ok(advapi32.CreateProcessWithLogonW(
        user, ".", password, LOGON_WITH_PROFILE, None, cmd,
        CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT | CREATE_NEW_PROCESS_GROUP,
        environment_block(env), cwd, ctypes.byref(si), ctypes.byref(pi)),
        f"CreateProcessWithLogonW({user})")
    return Handle(int(pi.hProcess or 0)), Handle(int(pi.hThread or 0)), int(pi.dwProcessId)


class SID_AND_ATTRIBUTES(ctypes.Structure):
    _fields_ = [("Sid", ctypes.c_void_p), ("Attributes", wintypes.DWORD)]


def restricted_token(flags: int, restricting_sids: list[str], default_dacl_sddl: str) -> Handle:
    """A restricted primary token from this process's token (the runner's)."""
    own = wintypes.HANDLE()
    _ok(advapi32.OpenProcessToken(kernel32.GetCurrentProcess(), TOKEN_ALL_ACCESS,
                                  ctypes.byref(own)), "OpenProcessToken")
    sids = [sid_from_string(s) for s in restricting_sids]
    try:
        arr = (SID_AND_ATTRIBUTES * len(sids))(*[SID_AND_ATTRIBUTES(s, 0) for s in sids])
        new = wintypes.HANDLE()
        _ok(advapi32.CreateRestrictedToken(own, flags, 0, None, 0, None, len(sids), arr,
                                           ctypes.byref(new)), "CreateRestrictedToken")
    finally:
        for s in sids:
            kernel32.LocalFree(s)
        kernel32.CloseHandle(own)
    token = Handle(int(new.value or 0))
    psd = ctypes.c_void_p()
    _ok(advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
        default_dacl_sddl, 1, ctypes.byref(psd), None), "ConvertStringSecurityDescriptor")
    try:
        present, pdacl, defaulted = wintypes.BOOL(), ctypes.c_void_p(), wintypes.BOOL()
        _ok(advapi32.GetSecurityDescriptorDacl(psd, ctypes.byref(present), ctypes.byref(pdacl),
                                               ctypes.byref(defaulted)),
            "GetSecurityDescriptorDacl")
        dacl = ctypes.c_void_p(pdacl.value)
        _ok(advapi32.SetTokenInformation(wintypes.HANDLE(token.value), TOKEN_DEFAULT_DACL_CLASS,
                                         ctypes.byref(dacl), ctypes.sizeof(dacl)),
            "SetTokenInformation(TokenDefaultDacl)")
    finally:
        kernel32.LocalFree(psd)
    return token


def create_process_as_user(token: Handle, command_line: str, cwd: str, env: dict[str, str],
                           desktop: str, std: Std | None = None) -> tuple[Handle, Handle, int]:
    si = _startup(std, desktop)
    pi = PROCESS_INFORMATION()
    cmd = ctypes.create_unicode_buffer(command_line)
    _ok(advapi32.CreateProcessAsUserW(
        wintypes.HANDLE(token.value), None, cmd, None, None, True,
        CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT, environment_block(env), cwd,
        ctypes.byref(si), ctypes.byref(pi)), "CreateProcessAsUserW")
    return Handle(int(pi.hProcess or 0)), Handle(int(pi.hThread or 0)), int(pi.dwProcessId)


def resume(thread: Handle) -> None:
    if kernel32.ResumeThread(wintypes.HANDLE(thread.value)) == 0xFFFFFFFF:
        raise _fail("ResumeThread")


def wait(process: Handle, timeout: float | None) -> int | None:
    """The exit code, or None on timeout."""
    ms = INFINITE if timeout is None else max(0, int(timeout * 1000))
    if kernel32.WaitForSingleObject(wintypes.HANDLE(process.value), ms) == WAIT_TIMEOUT:
        return None
    code = wintypes.DWORD()
    _ok(kernel32.GetExitCodeProcess(wintypes.HANDLE(process.value), ctypes.byref(code)),
        "GetExitCodeProcess")
    return int(code.value)


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_longlong),
                ("PerJobUserTimeLimit", ctypes.c_longlong), ("LimitFlags", wintypes.DWORD),
                ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t),
                ("ActiveProcessLimit", wintypes.DWORD), ("Affinity", ctypes.c_size_t),
                ("PriorityClass", wintypes.DWORD), ("SchedulingClass", wintypes.DWORD)]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
                ("IoInfo", IO_COUNTERS), ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t)]


def create_job(limit_flags: int, active_processes: int | None, process_memory: int | None,
               process_time_100ns: int | None, ui_flags: int, cpu_rate: int | None) -> Handle:
    h = kernel32.CreateJobObjectW(None, None)
    _ok(h, "CreateJobObjectW")
    job = Handle(int(h))
    info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
    info.BasicLimitInformation.LimitFlags = limit_flags
    info.BasicLimitInformation.ActiveProcessLimit = active_processes or 0
    info.BasicLimitInformation.PerProcessUserTimeLimit = process_time_100ns or 0
    info.ProcessMemoryLimit = process_memory or 0
    _ok(kernel32.SetInformationJobObject(wintypes.HANDLE(job.value), JOB_EXTENDED_LIMIT_CLASS,
                                         ctypes.byref(info), ctypes.sizeof(info)),
        "SetInformationJobObject(limits)")
    ui = wintypes.DWORD(ui_flags)
    _ok(kernel32.SetInformationJobObject(wintypes.HANDLE(job.value), JOB_UI_CLASS,
                                         ctypes.byref(ui), ctypes.sizeof(ui)),
        "SetInformationJobObject(UI restrictions)")
    if cpu_rate:
        rate = (wintypes.DWORD * 2)(CPU_RATE_ENABLE | CPU_RATE_HARD_CAP, cpu_rate)
        _ok(kernel32.SetInformationJobObject(wintypes.HANDLE(job.value), JOB_CPU_RATE_CLASS,
                                             ctypes.byref(rate), ctypes.sizeof(rate)),
            "SetInformationJobObject(CPU rate)")
    return job


def assign(job: Handle, process: Handle) -> None:
    _ok(kernel32.AssignProcessToJobObject(wintypes.HANDLE(job.value),
                                          wintypes.HANDLE(process.value)),
        "AssignProcessToJobObject")


def terminate_job(job: Handle, code: int) -> None:
    _ok(kernel32.TerminateJobObject(wintypes.HANDLE(job.value), code), "TerminateJobObject")


def create_desktop(name: str) -> int:
    h = user32.CreateDesktopW(name, None, None, 0, DESKTOP_ALL_ACCESS, None)
    _ok(h, f"CreateDesktopW({name})")
    return int(h)


def close_desktop(handle: int) -> None:
    user32.CloseDesktop(wintypes.HANDLE(handle))


def is_elevated() -> bool:
    return bool(ctypes.windll.shell32.IsUserAnAdmin())
