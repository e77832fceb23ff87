"""Policy + command + host facts → the macOS plan (Seatbelt through ``/usr/bin/sandbox-exec``).

Pure, like ``plan_linux``: the facts come from ``backends.macos.gather_facts`` (or a test), so
``ringfence explain --platform macos`` and the golden tests work on any OS.

The profile is the static text in ``backends/seatbelt.sb`` plus rules generated here that name
paths only as ``(param "NAME")``; the values go to sandbox-exec as ``-D NAME=VALUE``. No path is
ever pasted into the profile text.

Darwin path facts the plan applies:
- Seatbelt matches the path the kernel resolved, so every path is made canonical first:
  ``/tmp``, ``/var`` and ``/etc`` are symbolic links into ``/private``, and links the host
  reported (``facts.realpaths``) are followed.
- APFS is case-insensitive by default: ``.GIT/Hooks`` is ``.git/hooks``. Protected and deny-read
  paths are therefore matched by regular expressions that accept every case of every letter
  (``[gG][iI][tT]``), built here from the path and passed as parameters. Writable roots are
  matched exactly (``subpath``): a case variant of a root is simply not writable (fails closed).
- Parents of protected paths inside a writable root are "pinned": the path itself cannot be
  written (renamed, removed, re-created), so ``mv .git x; mkdir -p x/hooks; mv x .git`` fails;
  what is inside them stays writable, so ``git commit`` works.
"""

from __future__ import annotations

import os

from ._dirs import sandbox_cache
from .plan import Plan, _inside, _rlimits, refuse_own_files_writable, sandbox_env
from .policy.model import DEFAULT_DENY_READ_HOME, Frozen, Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, ClassVar

SANDBOX_EXEC = "/usr/bin/sandbox-exec"
# The private temp directory is made by the backend when the command starts; the plan names it
# with this token (in the -D parameter and in TMPDIR).
TMP_DIR = "{tmp-dir}"
# sandbox-exec runs this shim first, inside the sandbox: it leaves a mark in the private temp
# directory and becomes the command. No mark after the run means sandbox-exec never got as far
# as running anything (it rejected the profile): exit 125, not the command's status. (/bin/sh
# also gives 127/126 for a command not found / not executable, as the CLI contract says.)
STARTED = TMP_DIR + "/.ringfence-started"
SHIM = ("/bin/sh", "-c", ': > "$0" && exec "$@"', STARTED)
# Where Darwin keeps what the traditional names point to.
DARWIN_LINKS = (("/tmp", "/private/tmp"), ("/var", "/private/var"), ("/etc", "/private/etc"))

# Secret stores of macOS, relative to $HOME, in addition to DEFAULT_DENY_READ_HOME.
MACOS_DENY_READ_HOME = (
    "Library/Keychains",
    "Library/Cookies",
    "Library/Safari",
    "Library/Mail",
    "Library/Messages",
    "Library/Accounts",
    "Library/Application Support/Google/Chrome",
    "Library/Application Support/Chromium",
    "Library/Application Support/Firefox",
    "Library/Application Support/BraveSoftware",
    "Library/Application Support/Microsoft Edge",
    "Library/Application Support/Vivaldi",
    "Library/Application Support/com.operasoftware.Opera",
    "Library/Application Support/1Password",
    "Library/Group Containers/2BUA8C4S2C.com.1password",
    "Library/Application Support/gcloud",
    "Library/Application Support/gh",
    "Library/Thunderbird",
)
SOCKET_ENV = ("SSH_AUTH_SOCK", "DOCKER_HOST")

WEAKER = (
    "the process limit (RLIMIT_NPROC) counts all of your processes, not only the sandbox's",
    "what the command starts in a new session (setsid, daemons) can outlive the run, still "
    "inside this sandbox; its process group is killed when the run ends",
    "the private temp directory is an ordinary directory: tmp_size is not enforced",
    "no equivalent of no_new_privs: a setuid program still gains its owner's rights, inside "
    "this same sandbox",
)


class MacFacts(Frozen):
    """What the macOS planner needs to know about the host. ``kinds`` maps absolute paths to
    ``dir``, ``file``, ``link``, ``other`` or ``missing`` (from ``lstat``); ``realpaths`` maps
    links (and roots) to where they resolve; ``ttys`` are the terminals ringfence's own stdin,
    stdout and stderr are (passed through to the command)."""

    __slots__ = (
        "home", "uid", "environ", "kinds", "realpaths", "protected_paths", "config_dir",
        "state_dir", "cache_dir", "sandbox_exec", "ttys", "own_files",
    )
    home: str
    uid: int
    environ: dict[str, str]
    kinds: dict[str, str]
    realpaths: dict[str, str]
    protected_paths: tuple[tuple[str, str], ...]
    config_dir: str
    state_dir: str
    cache_dir: str
    sandbox_exec: str
    ttys: tuple[str, ...]
    own_files: tuple[tuple[str, str], ...]  # (what, path): ringfence's code and environment
    _defaults: ClassVar[Mapping[str, Any]] = {
        "realpaths": {}, "protected_paths": (), "sandbox_exec": SANDBOX_EXEC, "ttys": (),
        "own_files": (),
    }

    def kind(self, path: str) -> str:
        return self.kinds.get(path, "missing")


# ---------------------------------------------------------------------------------------------
# Paths and patterns (pure).

def darwin_path(path: str, realpaths: Mapping[str, str] | None = None) -> str:
    """``path`` as the macOS kernel reports it: known links followed, /tmp → /private/tmp."""
    path = os.path.normpath(path)
    if realpaths and path in realpaths:
        path = os.path.normpath(realpaths[path])
    for link, target in DARWIN_LINKS:
        if _inside(path, link):
            return target + path[len(link):]
    return path


_REGEX_SPECIAL = set(".[]()*+?{}|^$\\")


def _fold(path: str, *, fold: bool) -> str:
    out = []
    for ch in path:
        if fold and ch.isascii() and ch.isalpha():
            out.append(f"[{ch.lower()}{ch.upper()}]")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


class _Node:
    __slots__ = ("term", "children")

    def __init__(self) -> None:
        self.term = False
        self.children: dict[str, _Node] = {}


NO_PATH = "^$"  # the regex for an empty list: no path is empty


def path_regex(paths: Sequence[str], *, subtree: bool, fold: bool) -> str:
    """One regular expression matching any of the absolute ``paths`` (and, with ``subtree``,
    everything below them); with ``fold``, in every letter case. Regex syntax in the paths is
    escaped. Paths are merged by their leading components (a trie), which keeps the expression
    small: the secrets under $HOME share one ``/Users/u/`` prefix."""
    if not paths:
        return NO_PATH
    root = _Node()
    whole = False
    for path in paths:
        parts = [p for p in path.split("/") if p]
        if not parts:
            whole = True
            continue
        node = root
        for part in parts:
            node = node.children.setdefault(part, _Node())
        node.term = True
    if whole and subtree:
        return "^/.*$"

    def render(node: _Node) -> str:
        pieces = []
        for name, child in sorted(node.children.items()):
            piece = _fold(name, fold=fold)
            if child.children and not (child.term and subtree):
                inner = render(child)
                piece += f"(/{inner})?" if child.term else f"/{inner}"
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else "(" + "|".join(pieces) + ")"

    body = render(root)
    if whole:  # "/" itself, as an exact path
        body = f"({body})?"
    return f"^/{body}" + ("(/.*)?$" if subtree else "$")


# ---------------------------------------------------------------------------------------------
# The profile (static sections of the package data file).

_SECTIONS: dict[str, str] = {}


def profile_sections() -> dict[str, str]:
    """The sections of ``backends/seatbelt.sb`` by name (read once; static package data)."""
    if not _SECTIONS:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backends")
        with open(os.path.join(here, "seatbelt.sb"), encoding="utf-8") as fh:
            text = fh.read()
        name = "header"
        lines: dict[str, list[str]] = {name: []}
        for line in text.splitlines():
            if line.startswith(";;;; section: "):
                name = line.removeprefix(";;;; section: ").strip()
                lines[name] = []
                continue
            lines[name].append(line)
        _SECTIONS.update({k: "\n".join(v).strip() + "\n" for k, v in lines.items()})
    return dict(_SECTIONS)


def build_profile(network: str) -> str:
    """The profile text for a network mode: the same for every path (paths are parameters)."""
    sections = profile_sections()
    parts = [sections["base"]]
    if network == "on":
        parts.append(sections["network-on"])
    elif network == "allowlist":
        parts.append(sections["network-proxy"])
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# The plan (pure).

def _deny_read(policy: Policy, facts: MacFacts) -> list[str]:
    """Deny-read paths, canonical; links also by their target. Missing ones are kept: the rule
    is by path, so a secret store created later is covered too."""
    rel = (*DEFAULT_DENY_READ_HOME, *MACOS_DENY_READ_HOME)
    wanted = [os.path.join(facts.home, p) for p in rel]
    wanted += [facts.config_dir, facts.state_dir, *policy.deny_read]
    for name in SOCKET_ENV:
        value = facts.environ.get(name, "").removeprefix("unix://")
        if value.startswith("/"):
            wanted.append(value)
    out: list[str] = []
    for path in wanted:
        for candidate in (darwin_path(path), darwin_path(path, facts.realpaths)):
            if candidate not in out:
                out.append(candidate)
    return out


def plan_macos(policy: Policy, command: Sequence[str], facts: MacFacts, *,
               cwd: str | None = None, proxy_port: int | None = None) -> Plan:
    """The plan for one command on macOS. Raises UnavailableError / PolicyError (fail closed).

    ``proxy_port`` is for the allowlist network mode (the proxy's port on localhost)."""
    from .errors import PolicyError, UnavailableError

    if not command:
        raise PolicyError("no command given; put it after --, e.g. ringfence run -- pytest -q")
    if policy.ssh_agent:
        from .network.ssh_agent import unsupported

        raise unsupported("on macOS yet")
    limits = policy.limits
    if limits.memory:
        raise UnavailableError(
            "macOS cannot enforce a per-process memory limit (it does not apply RLIMIT_DATA "
            "or RLIMIT_AS to mapped memory); remove --memory / limits.memory to run here"
        )
    cwd = cwd or policy.workspace
    cache_root = sandbox_cache(facts.cache_dir, policy.workspace)
    env, removed = sandbox_env(policy, facts, cache_root)
    if "TMPDIR" not in dict(policy.env_settings()):
        # sandboxed: the private temp directory; full-access: the host's own
        env["TMPDIR"] = (facts.environ.get("TMPDIR", "/tmp") if policy.profile == "full-access"
                         else TMP_DIR)
    common: dict[str, Any] = {
        "command": tuple(command), "env": env, "env_removed": tuple(removed), "cwd": cwd,
        "timeout": limits.timeout, "output_limit": limits.output, "policy": policy,
        "seccomp": None, "landlock": None, "pids_cgroup": None, "placeholders": (),
    }
    if policy.profile == "full-access":
        return Plan(
            mode="none", argv=tuple(command), rlimits=_rlimits(policy, nproc=False),
            layers=("environment scrubbed", "rlimits", "new session"),
            weaker=("full-access: no filesystem, network or process isolation",), **common,
        )
    nproc = bool(limits.max_processes)
    if nproc and facts.uid == 0:
        raise UnavailableError(
            "cannot limit the process count when running as root on macOS (RLIMIT_NPROC does "
            "not bind root); run as an ordinary user, or pass --max-processes 0"
        )
    if policy.network not in ("off", "on") and proxy_port is None:
        raise UnavailableError(f"network {policy.network!r} needs the allowlist proxy's port")

    deny = _deny_read(policy, facts)
    writable = [darwin_path(r, facts.realpaths) for r in policy.writable_roots()]
    if policy.profile == "workspace-write":
        writable.append(darwin_path(cache_root, facts.realpaths))
    for root in writable:
        for d in deny:
            if _inside(root, d):
                raise PolicyError(f"writable root {root} is inside deny-read path {d}; "
                                  "deny-read wins, so choose a root outside it")
    refuse_own_files_writable(
        [(what, darwin_path(path, facts.realpaths)) for what, path in facts.own_files],
        writable)
    host_roots = [os.path.normpath(r) for r in policy.writable_roots()]
    protected: list[str] = []
    pinned: list[str] = []
    for path, _ in facts.protected_paths:
        owner = next((r for r in host_roots if _inside(path, r)), None)
        if facts.kind(path) == "link":
            raise UnavailableError(
                f"protected path {path} is a symbolic link, which the sandbox cannot keep "
                "read-only; replace it with the file or directory it points to"
            )
        canonical = darwin_path(path, facts.realpaths if owner is None else None)
        if owner is not None:
            root = darwin_path(owner, facts.realpaths)
            canonical = root + path[len(owner):]
            parent = os.path.dirname(path)
            while parent != owner and _inside(parent, owner):
                if facts.kind(parent) == "link":
                    raise UnavailableError(
                        f"{parent} is a symbolic link above the protected path {path}; the "
                        "sandbox cannot stop it being replaced; replace the link with what "
                        "it points to"
                    )
                pin = root + parent[len(owner):]
                if pin not in pinned:
                    pinned.append(pin)
                parent = os.path.dirname(parent)
        if canonical not in protected:
            protected.append(canonical)
    # the roots themselves cannot be renamed or removed (their contents are the point)
    for root in writable:
        if root not in pinned:
            pinned.append(root)
    pinned.sort(key=lambda p: (p.count("/"), p))

    write = [*writable, TMP_DIR]
    params: list[tuple[str, str]] = [
        ("WRITABLE", path_regex(write, subtree=True, fold=False)),
        ("PROTECTED", path_regex(protected, subtree=True, fold=True)),
        ("PINNED", path_regex(pinned, subtree=False, fold=True)),
        ("DENY_READ", path_regex(deny, subtree=True, fold=True)),
        ("TTYS", path_regex(sorted(set(facts.ttys)), subtree=False, fold=False)),
    ]
    if policy.network == "allowlist":
        params.append(("PROXY_PORT", str(int(proxy_port or 0))))
    profile = build_profile(policy.network)
    argv: list[str] = [facts.sandbox_exec, "-p", profile]
    for name, value in params:
        argv += ["-D", f"{name}={value}"]
    argv += ["--", *SHIM, *command]
    seatbelt = {
        "profile": profile,
        "parameters": dict(params),
        "writable": write,
        "protected": protected,
        "pinned": pinned,
        "deny_read": deny,
        "ttys": sorted(set(facts.ttys)),
    }
    layers = ("seatbelt (sandbox-exec, deny by default)", "environment scrubbed", "rlimits",
              "new session", "process group killed when the run ends")
    return Plan(
        mode="seatbelt", argv=tuple(argv), rlimits=_rlimits(policy, nproc=nproc),
        layers=layers, weaker=WEAKER if nproc else WEAKER[1:], seatbelt=seatbelt, **common,
    )


def fill_tmp_dir(argv: Sequence[str], env: Mapping[str, str], tmp_dir: str
                 ) -> tuple[list[str], dict[str, str]]:
    """The argv and environment with the private temp directory made by the backend in place of
    the ``{tmp-dir}`` token (escaped where it sits inside the WRITABLE regular expression, as
    one alternative after its leading ``^/``)."""
    if not tmp_dir.startswith("/"):
        raise ValueError(f"the private temp directory must be absolute: {tmp_dir}")
    escaped_token, escaped = _fold(TMP_DIR, fold=False), _fold(tmp_dir[1:], fold=False)
    out = []
    for arg in argv:
        if arg.startswith("WRITABLE="):
            arg = arg.replace(escaped_token, escaped)
        out.append(arg.replace(TMP_DIR, tmp_dir))
    return out, {k: v.replace(TMP_DIR, tmp_dir) for k, v in env.items()}
