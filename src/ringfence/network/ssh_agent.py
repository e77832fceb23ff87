"""The user's ssh-agent inside the sandbox, only when the policy says so. Pure: no I/O.

By default the sandbox hides the agent: ``SSH_AUTH_SOCK`` is removed from the command's
environment and the socket it names is masked (or lies under the ``/tmp`` or ``/run`` that the
sandbox replaces with its own), so a command cannot use the user's keys to log in anywhere.
``git clone ssh://`` through the allowlist proxy still works with keys the command has itself.

``[network] ssh_agent = true`` (``--ssh-agent``) opts in: the one socket ``$SSH_AUTH_SOCK``
names on the host is bind-mounted at ``AGENT_PATH`` inside the sandbox and ``SSH_AUTH_SOCK``
points there. The command can then ask the agent to sign (it never reads the keys), so this is
only allowed where the command may reach the network (``allowlist`` or ``on``); with the network
off there is nothing to log in to and the combination is refused when the policy loads. A
project's ``.ringfence.toml`` can never turn it on.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..plan import HostFacts

AGENT_PATH = "/run/ringfence/ssh-agent.sock"
"""Where the agent's socket appears inside the sandbox (``/run`` is the sandbox's own)."""

_FIX = "start an agent (eval \"$(ssh-agent)\"; ssh-add) or drop --ssh-agent / network.ssh_agent"


def off_error() -> Exception:
    from ..errors import PolicyError

    return PolicyError(
        "network.ssh_agent (--ssh-agent) needs the network, and the network is off; use "
        "--network allowlist (with the git host and --allow-port 22) or --network on, or drop "
        "the ssh-agent option")


def unsupported(where: str) -> Exception:
    """The agent cannot be handed in on this platform or in this mode (fail closed)."""
    from ..errors import UnavailableError

    return UnavailableError(f"network.ssh_agent (--ssh-agent) is not supported {where}; drop "
                            "the option (git over ssh then needs a key the command has itself)")


def host_socket(facts: HostFacts) -> str:
    """The agent's socket on the host (a symbolic link resolved); UnavailableError naming what
    is wrong when there is none."""
    from ..errors import UnavailableError

    value = facts.environ.get("SSH_AUTH_SOCK", "")
    if not value:
        raise UnavailableError(f"--ssh-agent: SSH_AUTH_SOCK is not set, so there is no "
                               f"ssh-agent to pass in; {_FIX}")
    if not value.startswith("/"):
        raise UnavailableError(f"--ssh-agent: SSH_AUTH_SOCK={value!r} is not an absolute path; "
                               f"{_FIX}")
    path = value
    if facts.kind(path) == "link":
        path = facts.realpaths.get(path, path)
    kind = facts.kind(path)
    if kind == "missing":
        raise UnavailableError(f"--ssh-agent: SSH_AUTH_SOCK names {value}, which does not exist "
                               f"(is the agent still running?); {_FIX}")
    if kind != "other":  # a socket; lstat's other kinds are directories, files and links
        raise UnavailableError(f"--ssh-agent: SSH_AUTH_SOCK names {value}, which is a {kind}, "
                               f"not a socket; {_FIX}")
    return path
