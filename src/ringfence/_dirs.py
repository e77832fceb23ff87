"""Where ringfence keeps its files on this host.

On Linux these are the XDG locations platformdirs would give (a test checks they agree); they are
computed here by hand because importing platformdirs costs ~6 ms on every command's start-up.
On other systems platformdirs decides.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

APP = "ringfence"


def _xdg(var: str, default: str) -> str:
    value = os.environ.get(var, "")
    if value and os.path.isabs(value):
        return os.path.join(value, APP)
    return os.path.join(os.path.expanduser(default), APP)


def config_dir() -> str:
    """The user's ringfence config directory (holds ``config.toml``)."""
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CONFIG_HOME", "~/.config")
    import platformdirs

    return platformdirs.user_config_dir(APP, appauthor=False)


def state_dir() -> str:
    """Private state: the parsed-policy cache, later the audit log. Never visible to a sandbox."""
    if sys.platform.startswith("linux"):
        return _xdg("XDG_STATE_HOME", "~/.local/state")
    import platformdirs

    return platformdirs.user_state_dir(APP, appauthor=False)


def cache_dir() -> str:
    """The sandbox's own package-manager caches live under here (never the user's caches)."""
    if sys.platform.startswith("linux"):
        return _xdg("XDG_CACHE_HOME", "~/.cache")
    import platformdirs

    return platformdirs.user_cache_dir(APP, appauthor=False)


_SHA256: Any = None


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` in hex, from the hash's C module (``hashlib`` costs ms to import);
    which module has it is found once (a failed import searches the whole path again)."""
    global _SHA256
    if _SHA256 is None:
        try:
            if sys.version_info >= (3, 12):
                from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]
            else:
                from _sha256 import sha256  # type: ignore[import-not-found, unused-ignore]
        except ImportError:  # pragma: no cover - CPython has the one for its version
            from hashlib import sha256
        _SHA256 = sha256
    return str(_SHA256(data).hexdigest())


def sandbox_cache(cache_dir: str, workspace: str) -> str:
    """The sandbox's package-manager caches for one workspace: ``<cache_dir>/sandbox/<key>``,
    the key the first 16 hex digits of the SHA-256 of the workspace's path. One per workspace,
    because a cache is a place to plant code: a wheel, a Go module or a pre-commit environment
    that a command in one project left there would be installed by a later run in another."""
    return os.path.join(cache_dir, "sandbox", sha256_hex(os.fsencode(workspace))[:16])

