"""Policy + command + Windows host facts → a Windows plan. Pure: runs and is tested on any OS.

How the policy is enforced on Windows (the README's Windows section repeats this):

- **Who runs the command.** Two local sandbox users made by ``ringfence windows setup``:
  ``ringfence-offline`` (network ``off``) and ``ringfence-online`` (network ``on``), both in the
  group ``ringfence-sandbox`` (``G`` below). Their SIDs come from the setup manifest.
- **The token.** The runner, started as the sandbox user, makes a restricted token with
  ``DISABLE_MAX_PRIVILEGE | LUA_TOKEN | WRITE_RESTRICTED``. Its restricting SIDs are one
  *capability SID* per writable root and the run's logon SID, nothing else (no Everyone, no
  Users: a directory that Everyone may write stays unwritable). With WRITE_RESTRICTED a write
  passes only if the sandbox user's own SIDs *and* a restricting SID are granted it; reads are
  checked against the sandbox user alone.
- **Capability SIDs.** ``S-1-5-21-a-b-c-d`` where a..d are the first 16 bytes of
  ``SHA-256("ringfence-capability-v1\\0" + install id + "\\0" + key(root))`` as four
  big-endian 32-bit numbers; the install id is 16 random bytes made once by setup; ``key`` is the
  case-folded canonical final path. The same root always gets the same SID on one machine, so
  its ACEs are made once and never again; different machines get different SIDs.
- **ACEs.** On each writable root R (once): allow ``G`` and ``C_R`` MODIFY_NO_DELETE_CHILD,
  inherited by everything below (``OI|CI``). DELETE_CHILD is left out on purpose: a protected
  path could otherwise be deleted or renamed through its parent. On every protected path P
  inside R: deny ``G`` and every ``C`` of a root containing P the write set (``OI|CI`` when P is
  a directory); on every directory between R and P: deny DELETE (it cannot be renamed away); on
  R and those directories: deny DELETE_CHILD. On every deny-read path: deny ``G`` the read set
  (and the write set), and the same on each descendant that setup's scan found with ACEs of its
  own (an explicit allow on a child comes before an inherited deny). On the user's profile
  (once): allow ``G`` read and execute, ``OI|CI``, so the command can read what the user's
  tools need; the deny-read ACEs carve the secrets out of it.
- **Missing protected paths** are covered for each run by a placeholder (an empty directory, or
  an empty file for git's own ``config``/``commondir`` and for a config file git config
  includes) carrying the deny ACEs, made before the command starts and removed after.
- **Cost.** ACEs are made once and recorded in the manifest. Each run only reads the DACLs of
  the recorded objects among its roots, protected and deny-read paths (a bounded list) and
  re-adds an ACE that is missing; nothing grows with the size of the workspace or of TEMP. (The
  first use of a root, and of the profile, rewrites the inherited ACEs of everything below it:
  that is Windows' propagation, paid once.)
- **Network.** A Windows Firewall rule blocks all outbound traffic of ``ringfence-offline``
  (LocalUserAuthorizedList naming its SID), and WFP filters on its user id block connects,
  loopback and ICMP included. ``ringfence-online`` has no rule.
- **Process.** A job object: kill on close (the tree dies with ringfence), process memory,
  active process count, per-process CPU time, UI restrictions, no breakaway; a private desktop;
  the scrubbed environment.
"""

from __future__ import annotations

from ..policy.env import scrub
from ..policy.model import DEFAULT_DENY_READ_HOME, Frozen, Policy
from . import paths as wp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, ClassVar

# ---------------------------------------------------------------------------------------------
# Access masks (winnt.h; WINDOWS-NOTES.md §1).

FILE_READ_DATA = 0x1  # FILE_LIST_DIRECTORY on directories
FILE_WRITE_DATA = 0x2  # FILE_ADD_FILE
FILE_APPEND_DATA = 0x4  # FILE_ADD_SUBDIRECTORY
FILE_READ_EA = 0x8
FILE_WRITE_EA = 0x10
FILE_EXECUTE = 0x20  # FILE_TRAVERSE
FILE_DELETE_CHILD = 0x40
FILE_READ_ATTRIBUTES = 0x80
FILE_WRITE_ATTRIBUTES = 0x100
DELETE = 0x10000
READ_CONTROL = 0x20000
WRITE_DAC = 0x40000
WRITE_OWNER = 0x80000
SYNCHRONIZE = 0x100000
FILE_GENERIC_READ = 0x120089
FILE_GENERIC_WRITE = 0x120116
FILE_GENERIC_EXECUTE = 0x1200A0

READ_EXECUTE = FILE_GENERIC_READ | FILE_GENERIC_EXECUTE
"""0x1200A9: what the sandbox users get on the user's profile."""
MODIFY_NO_DELETE_CHILD = FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE | DELETE
"""0x1301BF: what writable roots grant. Without DELETE_CHILD, deleting or renaming an entry
needs DELETE on the entry itself, which a protected path denies."""
DENY_WRITE = (FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_EA | FILE_WRITE_ATTRIBUTES
              | FILE_DELETE_CHILD | DELETE | WRITE_DAC | WRITE_OWNER)
"""0xD0156: every bit that changes a file or directory, and none of SYNCHRONIZE/READ_CONTROL
(denying those would break reads too)."""
DENY_READ = FILE_READ_DATA | FILE_READ_EA | FILE_EXECUTE | DENY_WRITE
"""0xD017F: reading contents, extended attributes, executing, and every write bit. Attributes
(size, times) stay readable, as on Linux, where a denied file reads as empty."""

OI, CI, NP, IO, INHERITED = 0x1, 0x2, 0x4, 0x8, 0x10

# Token flags (CreateRestrictedToken)
DISABLE_MAX_PRIVILEGE, SANDBOX_INERT, LUA_TOKEN, WRITE_RESTRICTED = 0x1, 0x2, 0x4, 0x8

# Job object limit flags (winnt.h)
JOB_LIMIT = {
    "PROCESS_TIME": 0x2, "ACTIVE_PROCESS": 0x8, "PROCESS_MEMORY": 0x100, "JOB_MEMORY": 0x200,
    "DIE_ON_UNHANDLED_EXCEPTION": 0x400, "KILL_ON_JOB_CLOSE": 0x2000,
}
UI_LIMITS = {
    "HANDLES": 0x1, "READCLIPBOARD": 0x2, "WRITECLIPBOARD": 0x4, "SYSTEMPARAMETERS": 0x8,
    "DISPLAYSETTINGS": 0x10, "GLOBALATOMS": 0x20, "DESKTOP": 0x40, "EXITWINDOWS": 0x80,
}

GROUP_NAME = "ringfence-sandbox"
USER_NAMES = {"offline": "ringfence-offline", "online": "ringfence-online"}
LOGON_SID = "{logon-sid}"
"""The run's logon SID (S-1-5-5-x-y), known when the sandbox user's logon exists."""

# Windows' own secret stores in a profile, in addition to DEFAULT_DENY_READ_HOME.
WINDOWS_DENY_READ_HOME = (
    "AppData\\Roaming\\Microsoft\\Credentials", "AppData\\Local\\Microsoft\\Credentials",
    "AppData\\Roaming\\Microsoft\\Protect", "AppData\\Roaming\\Microsoft\\Crypto",
    "AppData\\Roaming\\Microsoft\\SystemCertificates",
    "AppData\\Roaming\\Microsoft\\Windows\\PowerShell\\PSReadLine",
    "AppData\\Local\\Google\\Chrome\\User Data", "AppData\\Local\\Microsoft\\Edge\\User Data",
    "AppData\\Local\\BraveSoftware", "AppData\\Roaming\\Mozilla",
    "AppData\\Roaming\\Opera Software",
    "AppData\\Local\\Vivaldi", "AppData\\Roaming\\gcloud", "AppData\\Roaming\\GitHub CLI",
    "AppData\\Roaming\\Code\\User\\globalStorage", "AppData\\Roaming\\npm\\etc\\npmrc",
    "AppData\\Roaming\\pip\\pip.ini", "AppData\\Roaming\\NuGet", "AppData\\Local\\1Password",
    "AppData\\Roaming\\Bitwarden", "AppData\\Roaming\\KeePass", "AppData\\Local\\Packages",
    "NTUSER.DAT",
)


def capability_sid(install_id: str, root: str) -> str:
    """The capability SID of one writable root (see the module docstring)."""
    import hashlib

    data = b"ringfence-capability-v1\0" + install_id.encode() + b"\0" + wp.key(root).encode()
    digest = hashlib.sha256(data).digest()
    subs = [int.from_bytes(digest[i:i + 4], "big") for i in range(0, 16, 4)]
    return "S-1-5-21-" + "-".join(str(s) for s in subs)


# ---------------------------------------------------------------------------------------------
# The values.

class WindowsFacts(Frozen):
    """What the Windows planner needs to know about the host (``gather_facts`` on Windows; made
    up in tests). Paths are canonical (``paths.canonical``); dict keys are compared by
    ``paths.key``.

    - ``kinds``: path → ``dir``, ``file``, ``junction``, ``symlink`` or ``missing``.
    - ``final_paths``: path → its final path (``GetFinalPathNameByHandleW``: links, 8.3 names and
      case resolved); a path not listed is its own final path.
    - ``drives``: ``X:`` → ``fixed``, ``removable``, ``remote``, ``subst`` …; only ``fixed`` and
      ``removable`` drives can hold a writable root.
    - ``protected_paths``: ``(path, why)`` from ``plan.find_protected`` for each writable root.
    - ``acl_exceptions``: paths below a deny-read or protected directory that have ACEs of their
      own or do not inherit (found by a scan of those trees: small, and done at first use).
    - ``open_dirs``: directories outside the writable roots where Everyone, Users,
      Authenticated Users or INTERACTIVE hold FILE_DELETE_CHILD (found by setup's bounded scan of
      ``C:\\ProgramData``, ``C:\\Users\\Public`` and the drive roots).
    - ``sids``: ``group``, ``offline``, ``online`` → SID, from the setup manifest (empty: not set
      up); ``install_id``: the manifest's random id (empty: not set up).
    - ``aces_present``: ``(path, sddl)`` of the explicit ACEs found now on the objects the
      manifest says ringfence changed, among this run's candidate paths (bounded).
    - ``sandbox_dir``: ringfence's per-user directory for the sandbox's TEMP and caches.
    """

    __slots__ = (
        "home", "username", "environ", "kinds", "final_paths", "drives", "protected_paths",
        "acl_exceptions", "open_dirs", "sids", "install_id", "aces_present", "config_dir",
        "state_dir", "sandbox_dir", "python", "simulated",
    )
    home: str
    username: str
    environ: dict[str, str]
    kinds: dict[str, str]
    final_paths: dict[str, str]
    drives: dict[str, str]
    protected_paths: tuple[tuple[str, str], ...]
    acl_exceptions: tuple[str, ...]
    open_dirs: tuple[str, ...]
    sids: dict[str, str]
    install_id: str
    aces_present: tuple[tuple[str, str], ...]
    config_dir: str
    state_dir: str
    sandbox_dir: str
    python: str
    simulated: bool
    _defaults: ClassVar[Mapping[str, Any]] = {
        "final_paths": {}, "drives": {"C:": "fixed"}, "protected_paths": (),
        "acl_exceptions": (), "open_dirs": (), "sids": {}, "install_id": "", "aces_present": (),
        "python": "C:\\Program Files\\Python311\\python.exe", "simulated": False,
    }


class Ace(Frozen):
    """One access-control entry: ``action`` is ``allow`` or ``deny``; ``flags`` the
    inheritance flags (OI 1, CI 2, NP 4, IO 8)."""

    __slots__ = ("action", "sid", "mask", "flags", "why")
    action: str
    sid: str
    mask: int
    flags: int
    why: str

    def sddl(self) -> str:
        names = "".join(n for n, bit in (("OI", OI), ("CI", CI), ("NP", NP), ("IO", IO))
                        if self.flags & bit)
        return f"({'A' if self.action == 'allow' else 'D'};{names};{self.mask:#x};;;{self.sid})"


class PathAcl(Frozen):
    """ACEs ringfence puts on one object. ``phase``: ``once`` (made at setup or first use and
    recorded in the manifest; a deny is checked on each run and re-added if missing) or ``run``
    (on a placeholder made for this run)."""

    __slots__ = ("path", "aces", "phase", "why")
    path: str
    aces: tuple[Ace, ...]
    phase: str
    why: str


class Placeholder(Frozen):
    __slots__ = ("path", "kind")
    path: str
    kind: str


class FirewallRule(Frozen):
    """A Windows Firewall rule (``layer`` ``firewall``) or a WFP filter (``layer`` ``wfp``)."""

    __slots__ = ("name", "layer", "direction", "action", "user", "protocol", "remote", "ports",
                 "why")
    name: str
    layer: str
    direction: str
    action: str
    user: str
    protocol: str
    remote: str
    ports: str
    why: str


class JobLimits(Frozen):
    """The job object around the whole tree. Memory in bytes, CPU time in 100 ns units."""

    __slots__ = ("limit_flags", "limits", "active_processes", "process_memory",
                 "process_time_100ns", "cpu_rate", "ui_restrictions", "ui_flags")
    limit_flags: int
    limits: tuple[str, ...]
    active_processes: int | None
    process_memory: int | None
    process_time_100ns: int | None
    cpu_rate: int | None
    ui_restrictions: tuple[str, ...]
    ui_flags: int


class TokenSpec(Frozen):
    __slots__ = ("flags", "flags_value", "restricting_sids", "privileges_kept", "default_dacl")
    flags: tuple[str, ...]
    flags_value: int
    restricting_sids: tuple[tuple[str, str], ...]
    privileges_kept: tuple[str, ...]
    default_dacl: str


class WindowsPlan(Frozen):
    """What the Windows backend does for one command; nothing in it needs interpreting."""

    __slots__ = (
        "command", "cwd", "user", "user_sid", "group_sid", "capability_sids", "token", "acls",
        "placeholders", "firewall", "job", "desktop", "launch", "env", "env_removed",
        "timeout", "output_limit", "setup", "setup_needed", "layers", "weaker", "policy",
    )
    command: tuple[str, ...]
    cwd: str
    user: str
    user_sid: str
    group_sid: str
    capability_sids: tuple[tuple[str, str], ...]
    token: TokenSpec | None
    acls: tuple[PathAcl, ...]
    placeholders: tuple[Placeholder, ...]
    firewall: tuple[FirewallRule, ...]
    job: JobLimits
    desktop: str
    launch: tuple[str, ...]
    env: dict[str, str]
    env_removed: tuple[str, ...]
    timeout: float | None
    output_limit: int | None
    setup: tuple[str, ...]
    setup_needed: bool
    layers: tuple[str, ...]
    weaker: tuple[str, ...]
    policy: Policy


# ---------------------------------------------------------------------------------------------
# Pieces.

class _Facts:
    """Case-insensitive look-ups into WindowsFacts."""

    def __init__(self, facts: WindowsFacts) -> None:
        self.kinds = {wp.key(k): v for k, v in facts.kinds.items()}
        self.final = {wp.key(k): v for k, v in facts.final_paths.items()}

    def kind(self, path: str) -> str:
        return self.kinds.get(wp.key(path), "missing")

    def final_path(self, path: str) -> str:
        return self.final.get(wp.key(path), path)


def _sid(facts: WindowsFacts, role: str) -> str:
    name = GROUP_NAME if role == "group" else USER_NAMES[role]
    return facts.sids.get(role) or "{" + name + "}"


def firewall_rules(network: str, offline_sid: str, *, proxy_port: int | None = None
                   ) -> tuple[FirewallRule, ...]:
    """The rules for the offline user (network ``off``). With ``proxy_port`` (the allowlist mode
    to come), connects to that loopback port stay allowed and everything else is blocked."""
    if network == "on":
        return ()
    sd = f"O:LSD:(A;;CC;;;{offline_sid})"
    rules = [
        FirewallRule(name="ringfence offline: block outbound", layer="firewall",
                     direction="out", action="block", user=sd, protocol="any", remote="any",
                     ports="any", why="no traffic leaves the machine for the offline user "
                     "(LocalUserAuthorizedList; all profiles)"),
        FirewallRule(name="ringfence offline: block connect", layer="wfp", direction="out",
                     action="block", user=sd, protocol="any", remote="any, loopback included",
                     ports="any", why="ALE_AUTH_CONNECT_V4/V6 on ALE_USER_ID: also loopback "
                     "services and what the firewall rule may not cover"),
        FirewallRule(name="ringfence offline: block icmp", layer="wfp", direction="out",
                     action="block", user=sd, protocol="icmp, icmpv6", remote="any", ports="-",
                     why="ping is a way out too (ALE_AUTH_CONNECT, protocols 1 and 58)"),
        FirewallRule(name="ringfence offline: block dns", layer="wfp", direction="out",
                     action="block", user=sd, protocol="udp, tcp", remote="any", ports="53, 853",
                     why="direct DNS queries from the command (lookups through the DNS Client "
                     "service are the service's own traffic: see weaker)"),
    ]
    if proxy_port is not None:
        rules.insert(1, FirewallRule(
            name="ringfence offline: allow proxy", layer="wfp", direction="out",
            action="permit", user=sd, protocol="tcp", remote="loopback",
            ports=str(proxy_port), why="the allowlist proxy; a higher weight than the blocks"))
    return tuple(rules)


def job_limits(policy: Policy, *, cpu_rate_percent: int | None = None) -> JobLimits:
    lim = policy.limits
    names = ["KILL_ON_JOB_CLOSE", "DIE_ON_UNHANDLED_EXCEPTION"]
    if lim.max_processes:
        names.append("ACTIVE_PROCESS")
    if lim.memory:
        names.append("PROCESS_MEMORY")
    if lim.cpu_seconds:
        names.append("PROCESS_TIME")
    flags = 0
    for name in names:
        flags |= JOB_LIMIT[name]
    rate = None
    percent = lim.cpu_percent if cpu_rate_percent is None else cpu_rate_percent
    if percent is not None:
        if not 1 <= percent <= 100:
            from ..errors import PolicyError

            raise PolicyError(f"cpu rate {percent}%: use 1 to 100")
        rate = percent * 100  # JOBOBJECT_CPU_RATE_CONTROL: ENABLE|HARD_CAP, percent * 100
    ui = tuple(UI_LIMITS)
    ui_flags = 0
    for name in ui:
        ui_flags |= UI_LIMITS[name]
    return JobLimits(
        limit_flags=flags, limits=tuple(names), active_processes=lim.max_processes or None,
        process_memory=lim.memory or None,
        process_time_100ns=lim.cpu_seconds * 10_000_000 if lim.cpu_seconds else None,
        cpu_rate=rate, ui_restrictions=ui, ui_flags=ui_flags,
    )


def _deny_read_paths(policy: Policy, facts: WindowsFacts, f: _Facts) -> list[str]:
    wanted = [wp.join(facts.home, p) for p in DEFAULT_DENY_READ_HOME]
    wanted += [wp.join(facts.home, p) for p in WINDOWS_DENY_READ_HOME]
    wanted += [facts.config_dir, facts.state_dir]
    wanted += [wp.canonical(p, f"deny-read path {p}", named_stream="base")
               for p in policy.deny_read]
    out: list[str] = []
    seen: set[str] = set()
    for path in wanted:
        kind = f.kind(path)
        if kind in ("junction", "symlink"):
            path = f.final_path(path)  # the ACE goes on the object the link reaches
            kind = f.kind(path)
        else:
            path = f.final_path(path)
        if kind == "missing" or wp.key(path) in seen:
            continue
        seen.add(wp.key(path))
        out.append(path)
    return sorted(out, key=lambda p: (p.count("\\"), wp.key(p)))


def _root(path: str, what: str, facts: WindowsFacts, f: _Facts) -> str:
    from ..errors import PolicyError, UnavailableError

    path = wp.canonical(path, what)
    final = f.final_path(path)
    shorts = wp.short_name_components(final)
    if shorts and wp.key(path) not in f.final:
        raise UnavailableError(
            f"{what} {path}: {shorts[0]!r} may be an 8.3 short name, which only Windows can "
            "resolve; name the directory by its long name"
        )
    kind = f.kind(final)
    if kind != "dir":
        raise PolicyError(f"{what} {final}: not a directory ({kind})")
    drive = final[:2].upper()
    dtype = facts.drives.get(drive, "unknown")
    if dtype not in ("fixed", "removable"):
        raise UnavailableError(
            f"{what} {final}: drive {drive} is {dtype}; the sandbox can only guard a local "
            "NTFS drive (a mapped or substituted drive is not the same for the sandbox user)"
        )
    if len(final) <= 3 or wp.key(final) == wp.key(facts.home):
        raise PolicyError(
            f"{what} {final} would make a whole {'drive' if len(final) <= 3 else 'profile'} "
            "writable (and put ACEs on all of it); name a project directory"
        )
    return final


# ---------------------------------------------------------------------------------------------
# The plan.

def plan_windows(policy: Policy, command: Sequence[str], facts: WindowsFacts, *,
                 cwd: str | None = None) -> WindowsPlan:
    """The plan for one command on Windows. Raises PolicyError / UnavailableError (fail
    closed) for what the sandbox cannot guard."""
    from ..errors import PolicyError, UnavailableError

    if not command:
        raise PolicyError("no command given; put it after --, e.g. ringfence run -- pytest -q")
    if policy.ssh_agent:
        from ..network.ssh_agent import unsupported

        raise unsupported("on Windows yet")
    f = _Facts(facts)
    group = _sid(facts, "group")
    role = "offline" if policy.network == "off" else "online"
    user_sid = _sid(facts, role)
    workspace = wp.canonical(policy.workspace, "workspace")
    cwd_path = wp.canonical(cwd, "cwd") if cwd else workspace
    install_id = facts.install_id or "{install-id}"

    env, removed = scrub(facts.environ, allow=policy.env_allow, deny=policy.env_deny)
    removed_set = set(removed)
    # Windows names are case-insensitive: a later duplicate spelling must not sneak back in.
    for name in list(env):
        if any(name.upper() == r.upper() for r in removed_set):
            del env[name]
    tmp = wp.join(facts.sandbox_dir, "tmp")
    # one cache per workspace (see ringfence._dirs.sandbox_cache)
    from .._dirs import sha256_hex

    cache = wp.join(facts.sandbox_dir, "cache",
                    sha256_hex(wp.key(policy.workspace).encode())[:16])
    common: dict[str, Any] = {
        "command": tuple(command), "cwd": cwd_path, "timeout": policy.limits.timeout,
        "output_limit": policy.limits.output, "policy": policy,
        "job": job_limits(policy),
    }
    if policy.profile == "full-access":
        env["RINGFENCE_SANDBOX"] = "1"
        env.update(policy.env_settings())
        return WindowsPlan(
            user=facts.username, user_sid="{your SID}", group_sid=group, capability_sids=(),
            token=None, acls=(), placeholders=(), firewall=(), desktop="the caller's",
            launch=("CreateProcessW in the job (your own token)",), env=env,
            env_removed=tuple(sorted(removed_set)), setup=(), setup_needed=False,
            layers=("environment scrubbed", "job object"),
            weaker=("full-access: no filesystem, network or process isolation",), **common,
        )

    if policy.network == "allowlist":
        raise UnavailableError(
            "network allowlist is not available on Windows yet (the filtering proxy is not "
            "wired to the sandbox users); use --network off, or --network on")

    # writable roots, each with its capability SID
    roots: list[str] = []
    for path in policy.writable_roots():
        what = "workspace" if path == policy.workspace else "writable root"
        root = _root(path, what, facts, f)
        if all(wp.key(root) != wp.key(r) for r in roots):
            roots.append(root)
    if policy.profile == "workspace-write":
        roots.append(facts.sandbox_dir)
        env.update({
            "TEMP": tmp, "TMP": tmp,
            "PIP_CACHE_DIR": wp.join(cache, "pip"), "npm_config_cache": wp.join(cache, "npm"),
            "YARN_CACHE_FOLDER": wp.join(cache, "yarn"), "UV_CACHE_DIR": wp.join(cache, "uv"),
            "GOCACHE": wp.join(cache, "go", "build"),
            "GOMODCACHE": wp.join(cache, "go", "mod"),
        })
    caps = tuple((r, capability_sid(install_id, r)) for r in roots)
    env["RINGFENCE_SANDBOX"] = "1"
    env.update(policy.env_settings())

    deny = _deny_read_paths(policy, facts, f)
    for root in roots:
        for d in deny:
            if wp.is_within(root, d):
                raise PolicyError(f"writable root {root} is inside deny-read path {d}; "
                                  "deny-read wins, so choose a root outside it")

    acls: list[PathAcl] = []
    # read for the sandbox users where the user's tools live; the workspace when read-only
    reads = [facts.home]
    if not roots and not wp.is_within(workspace, facts.home):
        reads.append(workspace)  # read-only: the workspace must still be readable
    for path in reads:
        acls.append(PathAcl(path=path, phase="once", why="readable by the sandbox users",
                            aces=(Ace(action="allow", sid=group, mask=READ_EXECUTE,
                                      flags=OI | CI, why="read and execute, inherited"),)))
    for root, cap in caps:
        acls.append(PathAcl(path=root, phase="once", why="writable root", aces=(
            Ace(action="deny", sid=group, mask=DELETE, flags=0,
                why="the root itself cannot be deleted or renamed"),
            Ace(action="deny", sid=cap, mask=DELETE, flags=0,
                why="the root itself cannot be deleted or renamed"),
            Ace(action="allow", sid=group, mask=MODIFY_NO_DELETE_CHILD, flags=OI | CI,
                why="first access check: the sandbox users may change what is below"),
            Ace(action="allow", sid=cap, mask=MODIFY_NO_DELETE_CHILD, flags=OI | CI,
                why="second access check: only runs whose policy has this root"),
        )))

    # protected paths inside writable roots
    placeholders: list[Placeholder] = []
    pinned: dict[str, set[int]] = {}  # path -> extra deny masks (DELETE, DELETE_CHILD)
    guarded: list[tuple[str, str, tuple[str, ...]]] = []  # (path, why, cap SIDs)
    seen: set[str] = set()
    for raw, why in facts.protected_paths:
        path = wp.canonical(raw, "protected path")
        owners = [(r, c) for r, c in caps if wp.is_within(path, r)]
        if not owners or wp.key(path) in seen:
            continue
        seen.add(wp.key(path))
        root = min((r for r, _ in owners), key=len)
        kind = f.kind(path)
        if kind in ("junction", "symlink"):
            raise UnavailableError(
                f"protected path {path} is a {kind}, which the sandbox cannot keep read-only "
                "(what it points to is not guarded); replace it with the directory itself"
            )
        up = wp.parent(path)
        while wp.is_within(up, root) and wp.key(up) != wp.key(root):
            if f.kind(up) in ("junction", "symlink"):
                raise UnavailableError(
                    f"{up} is a {f.kind(up)} above the protected path {path}; the sandbox "
                    "cannot guard what it points to; replace the link with a directory"
                )
            up = wp.parent(up)
        target = path
        if kind == "missing":
            parent = wp.parent(path)
            if f.kind(parent) == "dir":
                from ..plan import INCLUDED_BY, placeholder_is_file

                is_file = (placeholder_is_file(path.rsplit("\\", 1)[-1])
                           or why.startswith(INCLUDED_BY))  # git fails on a directory there
                placeholders.append(Placeholder(path=path, kind="file" if is_file else "dir"))
            elif f.kind(parent) == "missing" and f.kind(wp.parent(parent)) == "dir":
                target = parent  # e.g. .git/hooks without .git: keep .git from being created
                if any(wp.key(p.path) == wp.key(parent) for p in placeholders):
                    continue
                placeholders.append(Placeholder(path=parent, kind="dir"))
            else:
                continue  # below a file (a .git file): nothing can be created there
        guarded.append((target, why, tuple(c for _, c in owners)))
        # pin what lies between the root and the protected path
        up = wp.parent(target)
        pinned.setdefault(up, set()).add(FILE_DELETE_CHILD)
        while wp.is_within(up, root) and wp.key(up) != wp.key(root):
            pinned[up].add(DELETE)
            up = wp.parent(up)
            pinned.setdefault(up, set()).add(FILE_DELETE_CHILD)
    placeholder_keys = {wp.key(p.path) for p in placeholders}
    for path, why, owner_caps in guarded:
        is_dir = f.kind(path) == "dir" or any(
            wp.key(p.path) == wp.key(path) and p.kind == "dir" for p in placeholders)
        flags = OI | CI if is_dir else 0
        aces = [Ace(action="deny", sid=s, mask=DENY_WRITE, flags=flags,
                    why=f"protected ({why})") for s in (group, *owner_caps)]
        phase = "run" if wp.key(path) in placeholder_keys else "once"
        acls.append(PathAcl(path=path, aces=tuple(aces), phase=phase,
                            why="protected: read-only, cannot be deleted or renamed"))
    for path in sorted(pinned, key=lambda p: (p.count("\\"), wp.key(p))):
        mask = 0
        for bit in pinned[path]:
            mask |= bit
        what = "renamed or deleted" if mask & DELETE else "deleted through it"
        owner_caps = tuple(c for r, c in caps if wp.is_within(path, r))
        acls.append(PathAcl(path=path, phase="once", why="pinned: holds a protected path",
                            aces=tuple(Ace(action="deny", sid=s, mask=mask, flags=0,
                                           why=f"a protected path below cannot be {what}")
                                       for s in (group, *owner_caps))))

    for path in deny:
        inside = tuple(c for r, c in caps if wp.is_within(path, r))
        flags = OI | CI if f.kind(path) == "dir" else 0
        aces = [Ace(action="deny", sid=group, mask=DENY_READ, flags=flags, why="deny-read")]
        aces += [Ace(action="deny", sid=c, mask=DENY_WRITE, flags=flags,
                     why="deny-read inside a writable root") for c in inside]
        acls.append(PathAcl(path=path, aces=tuple(aces), phase="once", why="deny-read"))
    # Children with ACEs of their own below a guarded path: an explicit allow there comes before
    # the inherited deny, so each gets the deny explicitly too.
    for raw in facts.acl_exceptions:
        path = wp.canonical(raw, "ACL exception")
        flags = OI | CI if f.kind(path) == "dir" else 0
        why = "an explicit allow here would come before the inherited deny"
        aces = []
        if any(wp.is_within(path, d) for d in deny):
            aces.append(Ace(action="deny", sid=group, mask=DENY_READ, flags=flags, why=why))
        caps_here = {c for p, _, cs in guarded if wp.is_within(path, p) for c in cs}
        if caps_here:
            if not aces:
                aces.append(Ace(action="deny", sid=group, mask=DENY_WRITE, flags=flags,
                                why=why))
            aces += [Ace(action="deny", sid=c, mask=DENY_WRITE, flags=flags, why=why)
                     for c in sorted(caps_here)]
        if aces:
            acls.append(PathAcl(path=path, phase="once", aces=tuple(aces),
                                why="below a guarded path, with ACEs of its own"))

    for raw in facts.open_dirs:
        path = wp.canonical(raw, "open directory")
        if any(wp.is_within(path, r) for r in roots):
            continue
        acls.append(PathAcl(
            path=path, phase="once", why="others may fully control it",
            aces=(Ace(action="deny", sid=group, mask=FILE_DELETE_CHILD, flags=OI | CI,
                      why="FILE_DELETE_CHILD alone is not a write to a write-restricted token: "
                      "without this the command could delete here"),)))
    restricting = tuple((c, f"capability SID of {r}") for r, c in caps)
    restricting += ((LOGON_SID, "the run's logon SID: its desktop, its own objects"),)
    token = TokenSpec(
        flags=("DISABLE_MAX_PRIVILEGE", "LUA_TOKEN", "WRITE_RESTRICTED"),
        flags_value=DISABLE_MAX_PRIVILEGE | LUA_TOKEN | WRITE_RESTRICTED,
        restricting_sids=restricting, privileges_kept=("SeChangeNotifyPrivilege",),
        default_dacl=f"D:(A;;GA;;;SY)(A;;GA;;;{user_sid})(A;;GA;;;{LOGON_SID})",
    )
    setup = (
        f"local group {GROUP_NAME}; users {USER_NAMES['offline']} and {USER_NAMES['online']} "
        "in it, hidden from the sign-in screen, random passwords kept with DPAPI (user scope)",
        "Windows Firewall and WFP rules for the offline user (below)",
        "check: group policy lets local firewall rules apply (LocalPolicyModifyState == 0)",
        f"{facts.sandbox_dir}: the sandbox's TEMP and caches, a writable root of its own",
        "a manifest of everything added, for ringfence windows cleanup",
    )
    setup_needed = not (facts.sids and facts.install_id)
    layers = (
        f"runs as {USER_NAMES[role]} (a separate local user)",
        "restricted token: DISABLE_MAX_PRIVILEGE, LUA_TOKEN, WRITE_RESTRICTED",
        "capability SIDs: writes only under this run's writable roots",
        "deny ACEs on protected and deny-read paths",
        *(("firewall + WFP: no network for the offline user",) if role == "offline" else ()),
        "job object: the tree dies with ringfence; memory, process and CPU limits",
        "private desktop", "environment scrubbed",
    )
    weaker = (
        "not yet run on a real Windows host: the plan and the access model are tested on "
        "Linux only",
        "no file-size limit (Windows has no RLIMIT_FSIZE) and no size cap on TEMP",
        "max_processes counts processes, not threads",
        "name lookups made for the command by the DNS Client service are the service's "
        "traffic, which the per-user firewall rules do not see",
    )
    return WindowsPlan(
        user=USER_NAMES[role], user_sid=user_sid, group_sid=group, capability_sids=caps,
        token=token, acls=tuple(acls), placeholders=tuple(placeholders),
        firewall=firewall_rules(policy.network, _sid(facts, "offline")),
        desktop="a private desktop per run (CreateDesktopW, random name; the logon SID may use "
        "it); UI limits on the job",
        launch=(
            f"CreateProcessWithLogonW({USER_NAMES[role]}, LOGON_WITH_PROFILE, "
            "CREATE_SUSPENDED) → the runner; assigned to the job, then resumed",
            "runner: CreateRestrictedToken(own token, flags, restricting SIDs), default DACL "
            "set, SeChangeNotifyPrivilege enabled",
            "runner: CreateProcessAsUserW(restricted token, private desktop, scrubbed "
            "environment, CREATE_SUSPENDED) → the command, in the same job, then resumed",
        ),
        env=env, env_removed=tuple(sorted(removed_set)), setup=setup,
        setup_needed=setup_needed, layers=layers,
        weaker=weaker + (("setup has not run on this host: ringfence windows setup",)
                         if setup_needed else ()),
        **common,
    )


def require_setup(plan: WindowsPlan) -> None:
    """Fail closed before running a plan whose sandbox users do not exist yet."""
    if plan.setup_needed:
        from ..errors import UnavailableError

        raise UnavailableError(
            "the Windows sandbox is not set up on this host (no sandbox users, firewall rule or "
            "WFP filters yet); run ringfence windows setup once, as administrator, or use "
            "--profile full-access to run without the sandbox")


# ---------------------------------------------------------------------------------------------
# Explain.

def explain_windows(plan: WindowsPlan) -> dict[str, Any]:
    """JSON-ready data of a Windows plan."""
    data: dict[str, Any] = {
        "platform": "windows",
        "policy": plan.policy.to_dict(),
        "command": list(plan.command),
        "cwd": plan.cwd,
        "user": plan.user,
        "user_sid": plan.user_sid,
        "group_sid": plan.group_sid,
        "layers": list(plan.layers),
        "weaker": list(plan.weaker),
        "setup_needed": plan.setup_needed,
        "setup": list(plan.setup),
        "capability_sids": [{"root": r, "sid": s} for r, s in plan.capability_sids],
        "token": None if plan.token is None else {
            "flags": list(plan.token.flags), "flags_value": plan.token.flags_value,
            "restricting_sids": [{"sid": s, "why": w} for s, w in plan.token.restricting_sids],
            "privileges_kept": list(plan.token.privileges_kept),
            "default_dacl": plan.token.default_dacl,
        },
        "acls": [{"path": a.path, "phase": a.phase, "why": a.why,
                  "aces": [{**ace.to_dict(), "sddl": ace.sddl()} for ace in a.aces]}
                 for a in plan.acls],
        "placeholders": [p.to_dict() for p in plan.placeholders],
        "firewall": [r.to_dict() for r in plan.firewall],
        "job": plan.job.to_dict(),
        "desktop": plan.desktop,
        "launch": list(plan.launch),
        "environment": dict(sorted(plan.env.items())),
        "environment_removed": list(plan.env_removed),
        "timeout": plan.timeout,
        "output_limit": plan.output_limit,
    }
    return data


def render_windows_text(data: dict[str, Any]) -> str:
    import shlex

    policy = data["policy"]
    lines = [
        "platform: windows" + ("   (setup needed: ringfence windows setup)"
                               if data["setup_needed"] else ""),
        f"profile: {policy['profile']}   network: {policy['network']}",
        f"workspace: {policy['workspace']}",
        f"cwd: {data['cwd']}",
        *(["simulated: this host's paths shown on drive C:, users and SIDs not set up"]
          if data.get("simulated") else []),
        f"runs as: {data['user']} ({data['user_sid']}), group {data['group_sid']}",
        "command: " + shlex.join(data["command"]),
        "limits: " + ", ".join(f"{k}={v}" for k, v in policy["limits"].items() if v is not None),
        "",
        "layers:",
        *(f"  {x}" for x in data["layers"]),
    ]
    if data["weaker"]:
        lines += ["", "weaker:", *(f"  {x}" for x in data["weaker"])]
    if data["token"]:
        tok = data["token"]
        lines += ["", f"token: {' | '.join(tok['flags'])} ({tok['flags_value']:#x}); keeps "
                  f"{', '.join(tok['privileges_kept'])}", "  restricting SIDs:"]
        lines += [f"    {r['sid']}  {r['why']}" for r in tok["restricting_sids"]]
        lines += [f"  default DACL: {tok['default_dacl']}"]
    if data["acls"]:
        lines += ["", "ACEs (phase once: made at first use, recorded, denies re-checked each "
                  "run; phase run: on this run's placeholders):"]
        for acl in data["acls"]:
            lines.append(f"  {acl['path']}  [{acl['phase']}] {acl['why']}")
            lines += [f"    {a['sddl']}  {a['why']}" for a in acl["aces"]]
    if data["placeholders"]:
        lines += ["", "placeholders (missing protected paths, made for the run):"]
        lines += [f"  {p['path']} ({p['kind']})" for p in data["placeholders"]]
    if data["firewall"]:
        lines += ["", "network rules:"]
        for r in data["firewall"]:
            lines.append(f"  [{r['layer']}] {r['name']}: {r['action']} {r['direction']} "
                         f"{r['protocol']} to {r['remote']} ports {r['ports']}")
            lines.append(f"      user {r['user']}; {r['why']}")
    job = data["job"]
    lines += ["", f"job object: {', '.join(job['limits'])} ({job['limit_flags']:#x})"]
    for name in ("active_processes", "process_memory", "process_time_100ns"):
        if job[name] is not None:
            lines.append(f"  {name} = {job[name]}")
    if job["cpu_rate"] is not None:
        lines.append(f"  cpu_rate = {job['cpu_rate']} ({job['cpu_rate'] // 100}% of the machine, "
                     "hard cap: JOBOBJECT_CPU_RATE_CONTROL_INFORMATION ENABLE|HARD_CAP)")
    lines.append(f"  ui restrictions: {', '.join(job['ui_restrictions'])} "
                 f"({job['ui_flags']:#x})")
    lines += ["", f"desktop: {data['desktop']}", "", "launch:"]
    lines += [f"  {x}" for x in data["launch"]]
    if data["setup"]:
        lines += ["", "setup (once, elevated):", *(f"  {x}" for x in data["setup"])]
    lines += ["", "environment removed: " + (", ".join(data["environment_removed"]) or "-")]
    lines += ["environment set:"] + [f"  {k}={v}" for k, v in data["environment"].items()]
    return "\n".join(lines) + "\n"
