"""Loading and layering policies: built-in < user config < project file < command line.

- The user's config is ``$XDG_CONFIG_HOME/ringfence/config.toml``; it is trusted.
- The project's file is ``<workspace>/.ringfence.toml``. Whoever wrote the repository wrote it, so
  it may only narrow the policy (a stricter profile, network off, more deny-read or protected
  paths, lower limits, extra environment settings) unless the user's config lists the workspace
  under ``[trust] workspaces``. A widening key is an error naming the file and the key.
- ``--policy FILE`` on the command line is a file the user chose: trusted, applied after the
  project's file.
- Command-line options win over everything.

Unknown keys and wrong types are errors naming the file, the key and why. Parsed files are cached
(keyed by path, inode, size and mtime) in ringfence's state directory, which no sandbox can read
or write, so start-up does not pay for importing ``tomllib`` when nothing changed.
"""

from __future__ import annotations

import math
import os

from ..errors import PolicyError
from .model import (
    APPROVAL_MODES,
    FALLBACKS,
    NETWORK_MODES,
    PROFILES,
    PROJECT_POLICY_NAME,
    Limits,
    Policy,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# key -> kind: str, strlist, strmap, bool, size, seconds, count, percent (1-100) ...
_SCHEMA: dict[str, dict[str, str]] = {
    "": {"profile": "profile"},
    "filesystem": {"writable": "strlist", "deny_read": "strlist", "protected": "protected"},
    "network": {"mode": "network", "allow": "hosts", "deny": "hosts", "presets": "presets",
                "ports": "ports", "allow_local": "bool", "allow_private": "bool",
                "ssh_agent": "bool", "unix_sockets": "bool"},
    "environment": {"allow": "strlist", "deny": "strlist", "set": "strmap"},
    "limits": {
        "timeout": "seconds", "memory": "size", "max_processes": "count",
        "cpu_seconds": "count", "file_size": "size", "output": "size", "tmp_size": "size",
        "cpu_percent": "percent",
    },
    "devices": {"gpu": "bool"},
    "sandbox": {"fallback": "fallback", "bwrap": "str"},
    "trust": {"workspaces": "strlist"},
    "approvals": {"mode": "approval_mode"},
}
# [[rules]] (approval rules) are checked by ringfence.approval.rules, which knows about trust.

MAX_SECONDS = 366 * 86400.0
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TIME_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: object, what: str) -> int | None:
    """``"512M"``, ``"4G"``, ``"1.5GiB"``, ``1048576`` → bytes; ``"none"``/0 → no limit."""
    bad = PolicyError(f"{what}: expected a size like 512M or 4G, got {text!r}")
    if isinstance(text, bool):
        raise bad
    if isinstance(text, int):
        value = text
    elif isinstance(text, str):
        raw = text.strip().lower()
        if raw in ("none", "unlimited"):
            return None
        for suffix in ("ib", "b"):  # 4GiB, 4GB and 4G mean the same
            if raw.endswith(suffix) and raw[: -len(suffix)][-1:].isalpha():
                raw = raw[: -len(suffix)]
                break
        unit = raw[-1] if raw and raw[-1].isalpha() else ""
        try:
            number = float(raw[: len(raw) - len(unit)])
            if not math.isfinite(number):
                raise bad
            value = int(number * _UNITS[unit])
        except (ValueError, KeyError, OverflowError):
            raise bad from None
    else:
        raise bad
    if value < 0:
        raise PolicyError(f"{what}: a size cannot be negative, got {text!r}")
    if value >= 1 << 63:
        raise PolicyError(f"{what}: {text!r} is too large; use none for no limit")
    return value or None


def parse_seconds(text: object, what: str) -> float | None:
    """``30``, ``"90s"``, ``"10m"``, ``"2h"`` → seconds; ``"none"``/0 → no limit."""
    bad = PolicyError(f"{what}: expected seconds like 30 or 10m, got {text!r}")
    if isinstance(text, bool):
        raise bad
    if isinstance(text, (int, float)):
        value = float(text)
    elif isinstance(text, str):
        raw = text.strip().lower()
        if raw in ("none", "unlimited"):
            return None
        unit = raw[-1] if raw and raw[-1].isalpha() else ""
        try:
            value = float(raw[: len(raw) - len(unit)]) * _TIME_UNITS[unit]
        except (ValueError, KeyError):
            raise bad from None
    else:
        raise bad
    if not math.isfinite(value) or value < 0:
        raise PolicyError(f"{what}: expected a finite, positive number of seconds, got {text!r}")
    if value > MAX_SECONDS:
        raise PolicyError(f"{what}: {text!r} is more than a year; use none for no limit")
    return value or None


def parse_count(text: object, what: str) -> int | None:
    if isinstance(text, str) and text.strip().lower() in ("none", "unlimited"):
        return None
    if isinstance(text, bool) or not isinstance(text, int):
        raise PolicyError(f"{what}: expected a whole number, got {text!r}")
    if text < 0:
        raise PolicyError(f"{what}: expected a whole number of at least 0, got {text!r}")
    if text >= 1 << 63:
        raise PolicyError(f"{what}: {text!r} is too large; use none for no limit")
    return text or None


def _no_nul(what: str, text: str) -> str:
    if "\0" in text:
        raise PolicyError(f"{what}: {text!r} contains a NUL character; remove it")
    return text


def _protected_entry(what: str, entry: str) -> str:
    """A protected entry: a path relative to each writable root, normalised. An entry that is
    empty, ``.``, or has a ``..`` component would name the root itself or a place outside it
    (``../x`` once made the workspace's parent writable: its "pins" were read-write binds)."""
    parts = entry.replace("\\", "/").split("/")
    if not entry.strip() or ".." in parts or os.path.normpath(entry) == ".":
        raise PolicyError(f"{what}: entry {entry!r} must be a path inside the workspace "
                          "without '..' (like tools/deploy.sh); fix or remove it")
    return os.path.normpath(entry)


def _check(source: str, key: str, kind: str, value: Any) -> Any:
    what = f"{source}: key {key!r}"
    if isinstance(value, str):
        _no_nul(what, value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                _no_nul(what, item)
    if kind in ("str", "profile", "network", "fallback", "approval_mode"):
        if not isinstance(value, str):
            raise PolicyError(f"{what}: expected a string, got {type(value).__name__}")
        choices = {"profile": PROFILES, "network": NETWORK_MODES, "fallback": FALLBACKS,
                   "approval_mode": APPROVAL_MODES}.get(kind)
        if choices and value not in choices:
            raise PolicyError(f"{what}: {value!r} is not one of {', '.join(choices)}")
        return value
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{what}: expected a list of strings")
        return list(value)
    if kind == "protected":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{what}: expected a list of strings")
        return [_protected_entry(what, v) for v in value]
    if kind == "strmap":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise PolicyError(f"{what}: expected a table of string values")
        for name, item in value.items():
            if not name or "=" in name or "\0" in name:
                raise PolicyError(f"{what}: {name!r} is not an environment variable name (it "
                                  "must be non-empty, without '=' or NUL); fix or remove it")
            _no_nul(f"{what}: {name}", item)
        return dict(value)
    if kind in ("hosts", "presets", "ports"):
        from ..network.rules import check_pattern, check_port, check_preset

        if not isinstance(value, list):
            raise PolicyError(f"{what}: expected a list")
        check: Any = {"hosts": check_pattern, "presets": check_preset, "ports": check_port}[kind]
        try:
            return [check(v) for v in value]
        except PolicyError as exc:
            raise PolicyError(f"{source}: {exc}") from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError(f"{what}: expected true or false, got {value!r}")
        return value
    if kind == "size":
        return parse_size(value, what)
    if kind == "seconds":
        return parse_seconds(value, what)
    if kind == "percent":
        if isinstance(value, str) and value.strip().lower() in ("none", "unlimited"):
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise PolicyError(f"{what}: expected a whole number from 1 to 100 (percent of the "
                              f"machine's CPU), or none; got {value!r}")
        return value
    return parse_count(value, what)


def validate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Flatten a parsed TOML document into ``{"section.key": value}``, checking every key."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SCHEMA and name != "":
            if not isinstance(value, dict):
                raise PolicyError(f"{source}: [{name}] must be a table")
            for key, item in value.items():
                kind = _SCHEMA[name].get(key)
                if kind is None:
                    known = ", ".join(sorted(_SCHEMA[name]))
                    raise PolicyError(
                        f"{source}: unknown key {name}.{key!r}; [{name}] accepts {known}"
                    )
                flat[f"{name}.{key}"] = _check(source, f"{name}.{key}", kind, item)
        elif name == "rules":
            if not isinstance(value, list):
                raise PolicyError(f"{source}: rules must be an array of tables ([[rules]])")
            flat["rules"] = value
        elif name in _SCHEMA[""]:
            flat[name] = _check(source, name, _SCHEMA[""][name], value)
        else:
            known = ", ".join(["profile", *(f"[{s}]" for s in _SCHEMA if s), "[[rules]]"])
            raise PolicyError(f"{source}: unknown key {name!r}; the top level accepts {known}")
    return flat


# ---------------------------------------------------------------------------------------------
# Reading files, with a cache of parsed documents.

def _cache_path() -> str:
    from .._dirs import state_dir

    return os.path.join(state_dir(), "policy-cache.marshal")


def read_toml(path: str, *, cache: bool = True) -> dict[str, Any] | None:
    """The parsed document at ``path``, or None when there is no file. Errors name the file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror}") from None
    if not os.path.isfile(path):
        if os.path.isdir(path) and not os.listdir(path):
            return None  # a running sandbox's placeholder for a missing project file
        raise PolicyError(f"{path}: a policy file must be a regular file")
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    import marshal

    entries: dict[str, Any] = {}
    cpath = _cache_path() if cache else ""
    if cache:
        try:
            with open(cpath, "rb") as fh:
                loaded = marshal.load(fh)
            entries = loaded if isinstance(loaded, dict) else {}
            hit = entries.get(path)
            if (isinstance(hit, tuple) and len(hit) == 2 and tuple(hit[0]) == key
                    and isinstance(hit[1], dict)):
                return dict(hit[1])
        except (OSError, EOFError, ValueError, TypeError):
            entries = {}
    import tomllib

    from .._safeopen import open_regular

    try:  # the project's file is the command's to replace: never open a device or a FIFO
        fd = open_regular(path)
        if fd is None:
            raise PolicyError(f"{path}: a policy file must be a regular file")
        with os.fdopen(fd, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise PolicyError(f"{path}: arrays or tables nested too deeply to read; a policy "
                          "needs at most a few levels") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc}") from None
    if cache:
        entries[path] = (key, data)
        tmp = f"{cpath}.{os.getpid()}"
        try:
            blob = marshal.dumps(entries)  # ValueError for TOML dates: then no cache, that's all
            os.makedirs(os.path.dirname(cpath), mode=0o700, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, cpath)
        except (OSError, ValueError):
            try:
                os.unlink(tmp)
            except OSError:
                pass  # a cache is an optimisation; never fail a run for it
    return data


def user_config_path() -> str:
    from .._dirs import config_dir

    return os.path.join(config_dir(), "config.toml")


# ---------------------------------------------------------------------------------------------
# Layering.

class Options:
    """What the command line (or a library caller) asks for on top of the files."""

    __slots__ = (
        "profile", "policy_file", "workspace", "writable", "deny_read", "network",
        "env_allow", "timeout", "memory", "max_processes", "fallback", "bwrap",
        "use_user_config", "use_project_file", "allow_domains", "deny_domains", "ports",
        "presets", "approval_mode", "allow", "ssh_agent", "unix_sockets",
    )

    def __init__(
        self,
        *,
        profile: str | None = None,
        policy_file: str | None = None,
        workspace: str | None = None,
        writable: tuple[str, ...] = (),
        deny_read: tuple[str, ...] = (),
        network: str | None = None,
        env_allow: tuple[str, ...] = (),
        timeout: float | None = None,
        memory: int | None = None,
        max_processes: int | None = None,
        fallback: str | None = None,
        bwrap: str | None = None,
        use_user_config: bool = True,
        use_project_file: bool = True,
        allow_domains: tuple[str, ...] = (),
        deny_domains: tuple[str, ...] = (),
        ports: tuple[int, ...] = (),
        presets: tuple[str, ...] = (),
        approval_mode: str | None = None,
        allow: tuple[str, ...] = (),
        ssh_agent: bool | None = None,
        unix_sockets: bool | None = None,
    ) -> None:
        self.profile = profile
        self.policy_file = policy_file
        self.workspace = workspace
        self.writable = writable
        self.deny_read = deny_read
        self.network = network
        self.env_allow = env_allow
        self.timeout = timeout
        self.memory = memory
        self.max_processes = max_processes
        self.fallback = fallback
        self.bwrap = bwrap
        self.use_user_config = use_user_config
        self.use_project_file = use_project_file
        self.allow_domains = allow_domains
        self.deny_domains = deny_domains
        self.ports = ports
        self.presets = presets
        self.approval_mode = approval_mode
        self.allow = allow
        self.ssh_agent = ssh_agent
        self.unix_sockets = unix_sockets


def _abspath(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _apply(state: dict[str, Any], flat: dict[str, Any], base: str) -> None:
    """Apply a trusted layer: values replace, lists add."""
    for key, value in flat.items():
        if key in ("filesystem.writable", "filesystem.deny_read"):
            state[key] = [*state[key], *(_abspath(v, base) for v in value)]
        elif key in ("filesystem.protected", "environment.allow", "environment.deny",
                     "network.allow", "network.deny", "network.presets"):
            state[key] = [*state.get(key, ()), *value]
        elif key == "environment.set":
            state[key] = {**state[key], **value}
            state["environment.set.trusted"] = {**state["environment.set.trusted"], **value}
        elif key == "trust.workspaces":
            state[key] = [*state[key], *(_abspath(v, base) for v in value)]
        else:
            state[key] = value


def _narrow(state: dict[str, Any], flat: dict[str, Any], source: str, base: str) -> None:
    """Apply an untrusted (project) layer: anything that would widen the policy is an error."""
    hint = (f"a project's file may only narrow the policy; to let it widen, list this workspace "
            f"under [trust] workspaces in {user_config_path()}")
    prior_mode = state["network.mode"]
    for key, value in flat.items():
        if key == "profile":
            if PROFILES.index(value) > PROFILES.index(state[key]):
                raise PolicyError(f"{source}: profile = {value!r} widens {state[key]!r}; {hint}")
            state[key] = value
        elif key == "network.mode":
            if NETWORK_MODES.index(value) > NETWORK_MODES.index(state[key]):
                raise PolicyError(f"{source}: network.mode = {value!r} widens it; {hint}")
            state[key] = value
            if value == "off":
                state["network.ssh_agent"] = False  # narrowed away with the network
        elif key.startswith("limits."):
            current = state.get(key, getattr(Limits(), key[7:]))
            if (value is None and current is not None) or (
                value is not None and current is not None and value > current
            ):
                raise PolicyError(f"{source}: {key} = {value!r} raises the limit; {hint}")
            state[key] = value
        elif key == "filesystem.protected":
            for entry in value:
                if entry.startswith(("/", "\\")) or entry[1:2] == ":":
                    raise PolicyError(f"{source}: filesystem.protected entry {entry!r} is "
                                      "absolute; a project names paths inside its workspace "
                                      "(like tools/deploy.sh); make it relative")
            _apply(state, {key: value}, base)
        elif key == "environment.set":
            # applied only inside a sandbox: see Policy.env_set_unsandboxed
            state[key] = {**state[key], **value}
        elif key in ("filesystem.deny_read", "environment.deny", "network.deny"):
            _apply(state, {key: value}, base)
        elif key.startswith("network."):
            _narrow_network(state, key, value, f"{source}: {key}", hint, prior_mode)
        elif key == "trust.workspaces":
            raise PolicyError(
                f"{source}: [trust] belongs in {user_config_path()}, not in a project"
            )
        elif key == "approvals.mode":
            if value not in ("untrusted", state[key]):
                raise PolicyError(f"{source}: approvals.mode = {value!r} would ask less than "
                                  f"{state[key]!r}; a project may only choose untrusted; {hint}")
            if state[key] != "never":  # never refuses what untrusted would ask about: kept
                state[key] = value
        elif key in ("devices.gpu", "sandbox.fallback"):
            weaker = value is True or value == "landlock"
            if weaker:
                raise PolicyError(f"{source}: {key} = {value!r} widens the policy; {hint}")
            state[key] = value
        else:
            raise PolicyError(f"{source}: {key} widens the policy; {hint}")


def _narrow_network(state: dict[str, Any], key: str, value: Any, what: str, hint: str,
                    prior_mode: str) -> None:
    """A project's allow list, presets, ports and opt-ins: only ever a subset of what the
    trusted layers allow (anything goes where the trusted mode is ``on``)."""
    from ..network.rules import DEFAULT_PORTS, matches

    if key == "network.ssh_agent":  # never implied by any mode: the user's keys
        if value:
            raise PolicyError(f"{what} = true widens the policy; {hint}")
        state[key] = False
        return
    if key == "network.unix_sockets":  # false narrows, whatever the mode
        if value and not state.get(key, True):
            raise PolicyError(f"{what} = true widens the policy; {hint}")
        state[key] = value
        return
    if prior_mode == "on" and key != "network.ports":
        # anything narrows "on"; but a later trusted layer (--policy, the command line) may
        # make the network an allowlist, which this must not extend: decided in resolve
        state["project.network"].append((key, value, what))
        return
    if key == "network.allow":
        trusted = state.get("network.allow", [])
        for entry in value:
            probe = entry[2:] if entry.startswith("*.") else entry
            if not any((matches(t, probe) and (not entry.startswith("*.") or t.startswith("*.")))
                       or t == entry for t in trusted):
                raise PolicyError(f"{what}: {entry!r} is not allowed by your own policy; {hint}")
        state[key] = list(value)
    elif key == "network.presets":
        for name in value:
            if name not in state.get(key, []):
                raise PolicyError(f"{what}: preset {name!r} widens the policy; {hint}")
        state[key] = list(value)
    elif key == "network.ports":
        current = state.get(key, list(DEFAULT_PORTS))
        for port in value:
            if port not in current:
                raise PolicyError(f"{what}: port {port} widens the policy; {hint}")
        state[key] = list(value)
    elif value:  # allow_local / allow_private = true
        raise PolicyError(f"{what} = true widens the policy; {hint}")
    else:
        state[key] = False


def _is_trusted(workspace: str, trusted: list[str]) -> bool:
    real = os.path.realpath(workspace)
    return any(real == os.path.realpath(t) for t in trusted)


def resolve(options: Options, *, cwd: str | None = None) -> Policy:
    """Build the policy for one command from every layer. Raises PolicyError naming the cause."""
    cwd = cwd or os.getcwd()
    state: dict[str, Any] = {
        "profile": "workspace-write",
        "filesystem.writable": [],
        "filesystem.deny_read": [],
        "filesystem.protected": [],
        "network.mode": "off",
        "environment.allow": [],
        "environment.deny": [],
        "environment.set": {},
        "environment.set.trusted": {},
        "trust.workspaces": [],
        "project.network": [],
        "approvals.mode": "on-request",
        "rules": [],
    }
    home = os.path.expanduser("~")
    if options.use_user_config:
        path = user_config_path()
        data = read_toml(path)
        if data is not None:
            _apply(state, _rules(validate(data, path), path, True, state), home)
            for root in state["filesystem.writable"]:
                if os.path.realpath(root) in ("/", os.path.realpath(home)):
                    raise PolicyError(
                        f"{path}: filesystem.writable {root!r} would make the whole "
                        f"{'filesystem' if root == '/' else 'home directory'} writable; name "
                        "a narrower directory, or pass --writable on the command line"
                    )

    if options.workspace is not None and not options.workspace.strip():
        raise PolicyError("--workspace is empty; name a directory (is a variable unset?), or "
                          "leave the option out to use the current directory")
    explicit_workspace = options.workspace is not None
    workspace = _abspath(options.workspace or cwd, cwd)
    if not os.path.exists(workspace):
        raise PolicyError(
            f"workspace {workspace}: no such directory; create it or pass --workspace DIR"
        )
    if not os.path.isdir(workspace):
        raise PolicyError(f"workspace {workspace}: not a directory; pass --workspace DIR")
    workspace = os.path.realpath(workspace)
    if not explicit_workspace and workspace in ("/", os.path.realpath(home)):
        raise PolicyError(
            f"workspace {workspace}: running in {'/' if workspace == '/' else 'your home'} "
            f"would make all of it writable; cd into a project, or pass --workspace {workspace} "
            "to mean it"
        )

    if options.use_project_file:
        project = os.path.join(workspace, PROJECT_POLICY_NAME)
        data = read_toml(project)
        if data is not None:
            flat = validate(data, project)
            if _is_trusted(workspace, state["trust.workspaces"]):
                if "trust.workspaces" in flat:
                    raise PolicyError(
                        f"{project}: [trust] belongs in {user_config_path()}, not in a project"
                    )
                _apply(state, _rules(flat, project, True, state), workspace)
            else:
                _narrow(state, _rules(flat, project, False, state), project, workspace)

    trusted_mode = ""  # the network mode a trusted layer after the project chose, if any
    if options.policy_file:
        path = _abspath(options.policy_file, cwd)
        data = read_toml(path)
        if data is None:
            raise PolicyError(f"--policy {path}: no such file")
        flat = _rules(validate(data, path), path, True, state)
        _apply(state, flat, os.path.dirname(path))
        trusted_mode = flat.get("network.mode", trusted_mode)

    # The command line.
    if options.profile is not None:
        state["profile"] = options.profile
    if options.network is not None:
        state["network.mode"] = options.network
    elif options.allow_domains or options.presets:
        state["network.mode"] = "allowlist"  # --allow-domain alone means "only these"
    if options.network is not None or options.allow_domains or options.presets:
        trusted_mode = state["network.mode"]
    for key, extra in (("network.allow", options.allow_domains),
                       ("network.deny", options.deny_domains),
                       ("network.presets", options.presets)):
        if extra:
            state[key] = [*state.get(key, ()), *extra]
    if options.ssh_agent is not None:
        state["network.ssh_agent"] = options.ssh_agent
    if options.unix_sockets is not None:
        state["network.unix_sockets"] = options.unix_sockets
    if options.ports:
        from ..network.rules import DEFAULT_PORTS

        state["network.ports"] = [*state.get("network.ports", DEFAULT_PORTS), *options.ports]
    state["filesystem.writable"] += [_abspath(p, cwd) for p in options.writable]
    state["filesystem.deny_read"] += [_abspath(p, cwd) for p in options.deny_read]
    state["environment.allow"] += list(options.env_allow)
    for key, value in (("timeout", options.timeout), ("memory", options.memory),
                       ("max_processes", options.max_processes)):
        if value is not None:
            state[f"limits.{key}"] = value or None
    if options.fallback is not None:
        state["sandbox.fallback"] = options.fallback
    if options.approval_mode is not None:
        state["approvals.mode"] = options.approval_mode
    if options.allow:
        from ..approval.rules import parse_rule

        state["rules"] += [parse_rule({"prefix": p, "decision": "allow", "name": f"--allow {p}"},
                                      "the command line", n, trusted=True)
                           for n, p in enumerate(options.allow, start=1)]
    if options.bwrap is not None:
        state["sandbox.bwrap"] = options.bwrap

    # A project's network entries taken while the trusted mode was "on" (where anything
    # narrows): kept if that is still so; where a trusted layer after it made the network an
    # allowlist, only if they narrow that allowlist too (else dropped: the user's list stands).
    for key, value, what in state["project.network"]:
        if trusted_mode in ("", "on"):
            state[key] = value
        else:
            try:
                _narrow_network(state, key, value, what, "", trusted_mode)
            except PolicyError:
                pass

    writable = []
    for root in state["filesystem.writable"]:
        if not os.path.exists(root):
            raise PolicyError(f"writable root {root}: no such directory; create it first")
        if not os.path.isdir(root):
            raise PolicyError(f"writable root {root}: is a file; a writable root is a directory")
        writable.append(os.path.realpath(root))

    rules = None
    if state["network.mode"] == "allowlist":
        from ..network.rules import DEFAULT_PORTS, NetworkRules

        rules = NetworkRules(
            allow=tuple(dict.fromkeys(state.get("network.allow", ()))),
            deny=tuple(dict.fromkeys(state.get("network.deny", ()))),
            ports=tuple(dict.fromkeys(state.get("network.ports", DEFAULT_PORTS))),
            presets=tuple(dict.fromkeys(state.get("network.presets", ()))),
            allow_local=state.get("network.allow_local", False),
            allow_private=state.get("network.allow_private", False),
        )
    # A trusted workspace's project file inside a writable root would widen the next run
    # there: Policy protects it (whatever the roots become later), given the trusted list.
    protected = [*Policy._defaults["protected"], *state["filesystem.protected"]]
    trusted = tuple(dict.fromkeys(os.path.realpath(t) for t in state["trust.workspaces"]))
    env_set = tuple(state["environment.set"].items())
    env_trusted = tuple(state["environment.set.trusted"].items())
    limits = Limits(**{
        name: state[f"limits.{name}"] for name in Limits.__slots__ if f"limits.{name}" in state
    })
    return Policy(
        profile=state["profile"],
        workspace=workspace,
        writable=tuple(writable),
        deny_read=tuple(state["filesystem.deny_read"]),
        protected=tuple(dict.fromkeys(protected)),
        network=state["network.mode"],
        env_allow=tuple(state["environment.allow"]),
        env_deny=tuple(state["environment.deny"]),
        env_set=env_set,
        env_set_unsandboxed=None if env_trusted == env_set else env_trusted,
        limits=limits,
        gpu=state.get("devices.gpu", False),
        fallback=state.get("sandbox.fallback", "refuse"),
        bwrap=state.get("sandbox.bwrap", "bundled"),
        network_rules=rules,
        approval_mode=state["approvals.mode"],
        rules=tuple(state["rules"]),
        ssh_agent=state.get("network.ssh_agent", False),
        unix_sockets=state.get("network.unix_sockets", True),
        trusted=trusted,
    )


def _rules(flat: dict[str, Any], source: str, trusted: bool, state: dict[str, Any]
           ) -> dict[str, Any]:
    """Take the [[rules]] out of a layer (checking them and their examples) into ``state``."""
    items = flat.pop("rules", None)
    if items is not None:
        from ..approval.rules import parse_rules

        state["rules"] += parse_rules(items, source, trusted=trusted)
    return flat


def load_policy(path: str, *, workspace: str | None = None) -> Policy:
    """A policy from one TOML file on top of the built-in defaults (library helper)."""
    return resolve(
        Options(policy_file=path, workspace=workspace, use_user_config=False,
                use_project_file=False)
    )
