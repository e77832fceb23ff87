"""The environment of ringfence's own helpers: what runs *before* the sandbox applies.

bubblewrap and the Landlock fallback launcher are started by ringfence outside the sandbox and
only then build it. They must not get the variables the dynamic loader and the C library act
on at start-up: a project's ``.ringfence.toml`` may set the command's environment (``[environment]
set``, allowed because it only reaches the sandbox), and ``LD_PRELOAD = "evil.so"`` there would
otherwise load the project's code into bubblewrap or into the launcher's interpreter, on the
host, before any restriction exists. So the helper gets the command's environment without them,
and the command gets them back inside: bubblewrap through ``--setenv`` (see ``plan_linux``), the
launcher through its spec, which it passes to ``execve`` after the sandbox is in place.

The names are glibc's list of variables unsafe for a program started on someone else's behalf
(``sysdeps/generic/unsecvars.h``, what it strips for setuid programs), with every ``LD_`` and
``MALLOC_`` name (musl's and older glibc's loader variables among them).

Importing this module costs nothing: it is on the run path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LOADER_NAMES", "helper_env", "is_loader_variable", "loader_variables"]

LOADER_NAMES = frozenset((
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR",
))
_PREFIXES = ("LD_", "MALLOC_")


def is_loader_variable(name: str) -> bool:
    """Whether the dynamic loader or the C library acts on ``name`` when a program starts."""
    return name in LOADER_NAMES or name.startswith(_PREFIXES)


def helper_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the loader's variables: for a helper that runs before the sandbox."""
    return {k: v for k, v in env.items() if not is_loader_variable(k)}


def loader_variables(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The loader's variables in ``env``, to be set again inside the sandbox."""
    return [(k, v) for k, v in env.items() if is_loader_variable(k)]
