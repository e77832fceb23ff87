"""Denials an agent can act on: what the sandbox refused, and the smallest change that allows it.

Pure: no I/O. From how a command ended (exit status, the limits the backend saw hit, its
stderr) and the policy it ran under, ``analyse`` says which path could not be written or read,
which host could not be reached, which limit was hit, and suggests the smallest widening
(an extra writable root, the network, more time ...) as a ``Suggestion`` whose ``to_request()``
is ready to send as an escalation request to the approval engine.

Two kinds of knowledge, kept apart by ``Denial.certain``:
- **certain**: limits ringfence enforces and observes itself (the timeout it fired, the output
  cap it applied, SIGXCPU / SIGXFSZ from the rlimits, the pids cgroup's counter) and a process
  killed by SIGSYS (only the seccomp filter sends it here);
- **a guess** (``certain=False``): inferred from error messages on stderr ("Read-only file
  system", "Permission denied" + a path the policy does not let it write, "Could not resolve
  host", "Cannot allocate memory" ...). The policy is consulted, so a "Permission denied" on a
  path the policy *does* allow is not reported: that refusal was not ours.
"""

from __future__ import annotations

import os
import re

from .policy.model import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, ClassVar

    from .policy.model import Policy
    from .runner import Result

KINDS = ("write", "read", "network", "limit", "syscall")


class Suggestion(Frozen):
    """The smallest change to the policy that would allow what was refused.

    ``change`` is one of ``writable_root`` (``value``: a directory), ``network`` (``value``: the
    host, or None when it is not known), ``allow_domain`` / ``allow_port`` (a host or port the
    allowlist proxy refused), ``allow_read`` (a deny-read path; only the user can lift it), or
    a limit name: ``timeout``, ``output``, ``memory``, ``max_processes``,
    ``cpu_seconds``, ``file_size`` (``value``: the new limit in seconds or bytes).
    """

    __slots__ = ("change", "value", "why")
    change: str
    value: Any
    why: str

    def to_request(self, justification: str = "") -> dict[str, Any]:
        """An escalation request for the approval engine (``ringfence.escalation``)."""
        return {"change": self.change, "value": self.value,
                "justification": justification or self.why}


class Denial(Frozen):
    """One thing the sandbox refused (or most probably refused, when ``certain`` is False)."""

    __slots__ = ("kind", "target", "certain", "evidence", "message", "suggestion")
    kind: str  # write | read | network | limit | syscall
    target: str  # the path, host or limit name ("" when unknown)
    certain: bool
    evidence: str  # where we know it from: "ringfence enforced it", or the stderr line
    message: str  # one sentence for a model or a person
    suggestion: Suggestion | None
    _defaults: ClassVar[Mapping[str, Any]] = {"suggestion": None}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.suggestion is not None:
            out["suggestion"] = self.suggestion.to_dict()
        return out


# ---------------------------------------------------------------------------------------------
# Limits: certain.

_LIMIT_FIELD = {"timeout": "timeout", "output": "output", "cpu": "cpu_seconds",
                "file_size": "file_size", "max_processes": "max_processes",
                "memory": "memory"}
_LIMIT_WORDS = {
    "timeout": "it ran past the time limit and was killed",
    "output": "its output passed the output limit; what came after it was not kept",
    "cpu": "it used up its CPU time limit (SIGXCPU)",
    "file_size": "it tried to write a file larger than the file size limit (SIGXFSZ)",
    "max_processes": "it hit the limit on processes and threads",
    "memory": "it ran out of its data memory limit",
}


def _more(name: str, current: float | int | None) -> float | int:
    """The next step up for a limit: double it (a timeout at least to a minute)."""
    floors = {"timeout": 60, "output": 64 << 20, "cpu_seconds": 60, "file_size": 1 << 30,
              "max_processes": 256, "memory": 1 << 30}
    if not current:
        return floors[name]
    return max(current * 2, 60) if name == "timeout" else current * 2


def limit_denial(limit: str, policy: Policy, *, certain: bool = True,
                 evidence: str = "ringfence enforced it") -> Denial:
    field = _LIMIT_FIELD[limit]
    current = getattr(policy.limits, field)
    value = _more(field, current)
    return Denial(
        kind="limit", target=limit, certain=certain, evidence=evidence,
        message=f"{_LIMIT_WORDS[limit]} ({field} = {current})",
        suggestion=Suggestion(change=field, value=value,
                              why=f"raise {field} from {current} to {value}"),
    )


# ---------------------------------------------------------------------------------------------
# Messages on stderr: guesses.

_ROFS = "Read-only file system"
_EACCES = "Permission denied"
_ENOENT = "No such file or directory"
_NETWORK = (
    "Network is unreachable", "Could not resolve host", "Temporary failure in name resolution",
    "Name or service not known", "Address family not supported by protocol",
    "getaddrinfo failed", "Failed to establish a new connection", "No address associated with",
    "Could not resolve", "nodename nor servname", "network is unreachable",
    "dial tcp: lookup", "EAI_AGAIN", "ENOTFOUND", "ENETUNREACH",
)
_MEMORY = ("Cannot allocate memory", "MemoryError", "std::bad_alloc", "out of memory",
           "Out of memory", "ENOMEM")
_PROCESSES = ("fork: retry", "fork: Resource temporarily unavailable", "Cannot fork",
              "can't fork", "pthread_create failed", "can't start new thread",
              "fork failed", "Resource temporarily unavailable")
_FSIZE = ("File too large",)
_EPERM = "Operation not permitted"

_Q = "'\"\u2018\u2019\u201c\u201d`"  # ASCII and typographic quotes (coreutils uses both)
_QUOTED = re.compile(f"[{_Q}]([^{_Q}]+)[{_Q}]")
_PATHLIKE = re.compile(r"(?:^|[\s:(=])((?:~|\.{1,2})?/[^\s:'\"\u2018\u2019,;)]*)")
_HOST = (
    re.compile(r"Could not resolve host:?\s+([A-Za-z0-9.-]+)"),
    re.compile(r"host='([A-Za-z0-9.-]+)'"),
    re.compile(r"lookup ([A-Za-z0-9.-]+)"),
    re.compile(r"getaddrinfo \w+ ([A-Za-z0-9.-]+)"),
    re.compile(r"[a-z][a-z0-9+.-]*://(?:[^@/\s]+@)?([A-Za-z0-9.-]+)"),
    re.compile(r"unable to resolve host address '([A-Za-z0-9.-]+)'"),
)


def path_in(line: str, message: str) -> str:
    """The path a tool names in an error line carrying ``message`` ('' when none).

    Handles the shapes of coreutils (``touch: cannot touch '/x': Read-only file system``, with
    ASCII or typographic quotes), shells (``sh: 1: cannot create /x: Permission denied``),
    Python (``[Errno 30] Read-only file system: '/x'``) and ``/x: Permission denied``.
    """
    before, _, after = line.partition(message)
    tail = after.lstrip(": ")
    m = _QUOTED.match(tail)
    if m and ("/" in m.group(1) or not before.strip()):
        return m.group(1)
    quoted = _QUOTED.findall(before)
    for candidate in reversed(quoted):
        if "/" in candidate or "." in candidate:
            return str(candidate)
    # "cannot create .git/hooks/x: Read-only file system": the word right before the message
    words = before.rstrip(": ").split()
    if words and ("." in words[-1] or "/" in words[-1]):
        return words[-1].strip("'\"")
    found = _PATHLIKE.findall(before)
    if found:
        return str(found[-1]).rstrip(".")
    return ""


def _absolute(path: str, cwd: str, home: str) -> str:
    if path.startswith("~"):
        path = home + path[1:]
    return os.path.normpath(os.path.join(cwd, path))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _protected_in(path: str, policy: Policy) -> str:
    for root in policy.writable_roots():
        if not _inside(path, root):
            continue
        rel = path[len(root):].lstrip("/")
        for name in policy.protected:
            if _inside(rel, name) or _inside(rel.split("/", 1)[-1], name):
                return name
    return ""


def _writable(path: str, policy: Policy) -> bool:
    for root in (*policy.writable_roots(), "/tmp", "/var/tmp"):
        if _inside(path, root):
            return not _protected_in(path, policy)
    return False


def _root_for(path: str, exists: Callable[[str], bool] | None) -> str:
    """The smallest writable root that lets ``path`` be written: the directory itself, or the
    directory it would be created in (the nearest existing one when ``exists`` is given)."""
    parent = os.path.dirname(path) or "/"
    if exists is not None:
        if exists(path) and os.path.isdir(path):
            return path
        while parent != "/" and not exists(parent):
            parent = os.path.dirname(parent)
    return parent


def _write_denial(path: str, line: str, policy: Policy,
                  exists: Callable[[str], bool] | None) -> Denial | None:
    if _writable(path, policy):
        return None  # the policy allows it: the refusal was not ours (file mode, etc.)
    protected = _protected_in(path, policy)
    if protected:
        return Denial(
            kind="write", target=path, certain=False, evidence=line,
            message=f"{path} is protected ({protected}): the host runs or obeys it, so no "
                    "sandboxed command may change it; make this change yourself, outside "
                    "the sandbox",
            suggestion=None)
    root = _root_for(path, exists)
    return Denial(
        kind="write", target=path, certain=False, evidence=line,
        message=f"could not write {path}: it is outside every writable root",
        suggestion=Suggestion(change="writable_root", value=root,
                              why=f"make {root} writable to write {path}"))


def _read_denial(path: str, line: str, policy: Policy, home: str) -> Denial | None:
    from .policy.model import DEFAULT_DENY_READ_HOME

    denied = [os.path.join(home, p) for p in DEFAULT_DENY_READ_HOME] + list(policy.deny_read)
    hit = next((d for d in denied if _inside(path, d)), None)
    if hit is None:
        return None
    return Denial(
        kind="read", target=path, certain=False, evidence=line,
        message=f"could not read {path}: {hit} is deny-read (hidden from the sandbox, it holds "
                "secrets)",
        suggestion=Suggestion(change="allow_read", value=hit,
                              why=f"only the user can lift deny-read on {hit}, in their own "
                                  "policy"))


def host_in(text: str) -> str:
    """The host name an error or a command line names ('' when none)."""
    for pattern in _HOST:
        m = pattern.search(text)
        if m:
            host = m.group(1).strip(".")
            if host and not host.replace(".", "").isdigit() and host != "localhost":
                return host
    return ""


def from_stderr(stderr: str, policy: Policy, *, cwd: str, command: Sequence[str] = (),
                home: str = "", exists: Callable[[str], bool] | None = None) -> list[Denial]:
    """Guesses from error messages (each ``certain=False``). Pure unless ``exists`` is given
    (used to find the nearest existing directory for a writable-root suggestion)."""
    home = home or os.path.expanduser("~")
    out: list[Denial] = []
    seen: set[tuple[str, str]] = set()

    def add(d: Denial | None) -> None:
        if d is not None and (d.kind, d.target) not in seen:
            seen.add((d.kind, d.target))
            out.append(d)

    network_line = ""
    for raw in stderr.splitlines()[-200:]:  # the end of a long log is where errors are
        line = raw.strip()[:500]
        if not line:
            continue
        if _ROFS in line or _EACCES in line:
            message = _ROFS if _ROFS in line else _EACCES
            path = path_in(line, message)
            if path:
                add(_write_denial(_absolute(path, cwd, home), line, policy, exists))
                continue
        if _ENOENT in line:
            path = path_in(line, _ENOENT)
            if path:
                add(_read_denial(_absolute(path, cwd, home), line, policy, home))
                continue
        if policy.network == "off" and not network_line and any(w in line for w in _NETWORK):
            network_line = line
        if policy.limits.memory and any(w in line for w in _MEMORY):
            add(limit_denial("memory", policy, certain=False, evidence=line))
        if policy.limits.max_processes and any(w in line for w in _PROCESSES) and (
                "fork" in line or "thread" in line):
            add(limit_denial("max_processes", policy, certain=False, evidence=line))
        if policy.limits.file_size and any(w in line for w in _FSIZE):
            add(limit_denial("file_size", policy, certain=False, evidence=line))
    if network_line:
        host = host_in(network_line) or host_in(" ".join(command))
        add(Denial(
            kind="network", target=host, certain=False, evidence=network_line,
            message=(f"could not reach {host}: the network is off" if host else
                     "could not reach the network: it is off"),
            suggestion=Suggestion(change="network", value=host or None,
                                  why=f"allow the network{' to ' + host if host else ''}")))
    return out


def from_proxy(connections: Iterable[Any]) -> list[Denial]:
    """Certain network denials: the connections the allowlist proxy refused (its records in
    ``Result.network``), one per host and port. The suggestion is the narrowest widening the
    refusing rule allows: the host added to the allow list for a name that was not in it, the
    port for a refused port; a deny entry, an IP literal or a local/private address gets none
    from here (the user decides those in the policy)."""
    out: list[Denial] = []
    seen: set[tuple[str, int]] = set()
    for conn in connections:
        if getattr(conn, "allowed", True) or getattr(conn, "rule", "") in ("malformed", "", "more"):
            continue
        host, port, rule = str(conn.host), int(conn.port), str(conn.rule)
        if (host, port) in seen:
            continue
        seen.add((host, port))
        suggestion = None
        if rule == "default":
            suggestion = Suggestion(change="allow_domain", value=host,
                                    why=f"add {host} to the allow list (--allow-domain {host})")
        elif rule == "ports":
            suggestion = Suggestion(change="allow_port", value=port,
                                    why=f"allow port {port} (--allow-port {port})")
        out.append(Denial(
            kind="network", target=f"{host}:{port}", certain=True,
            evidence=f"the allowlist proxy refused {host}:{port} [{rule}]",
            message=f"could not reach {host}:{port}: {conn.reason}", suggestion=suggestion))
    return out


def analyse(exit_code: int, limits_hit: Iterable[str], stderr: bytes | str | None,
            policy: Policy, *, cwd: str = "", command: Sequence[str] = (), home: str = "",
            exists: Callable[[str], bool] | None = None,
            network: Iterable[Any] = ()) -> tuple[Denial, ...]:
    """Every denial we can name for one finished command: certain ones first."""
    out: list[Denial] = from_proxy(network)
    hit = list(dict.fromkeys(limits_hit))
    for limit in hit:
        if limit in _LIMIT_FIELD:
            out.append(limit_denial(limit, policy))
    if exit_code == 128 + 31:  # SIGSYS: only the seccomp filter kills with it here
        out.append(Denial(
            kind="syscall", target="", certain=True, evidence="killed by SIGSYS",
            message="the seccomp filter killed it for a forbidden system call (or a 32-bit "
                    "program); it cannot run in the sandbox", suggestion=None))
    if stderr and exit_code != 0:
        text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        for d in from_stderr(text, policy, cwd=cwd or policy.workspace, command=command,
                             home=home, exists=exists):
            if d.kind == "limit" and d.target in hit:
                continue  # already known for certain
            if d.kind == "network" and out and any(o.kind == "network" for o in out):
                continue  # the proxy said exactly which host
            out.append(d)
    return tuple(out)


def attach(result: Result, policy: Policy, *, cwd: str = "") -> Result:
    """``result`` with its ``denials`` filled in (I/O: looks up which directories exist)."""
    denials = analyse(result.exit_code, result.limits_hit, result.stderr, policy, cwd=cwd,
                      command=result.command, exists=os.path.exists, network=result.network)
    return result.replace(denials=denials) if denials else result
