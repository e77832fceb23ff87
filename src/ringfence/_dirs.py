"""Where ringfence keeps its files on this host.

On Linux these are the XDG locations platformdirs would give (a test checks they agree); they are
computed here by hand because importing platformdirs costs ~6 ms on every command's start-up.
On other systems platformdirs decides.
"""

from __future__ import annotations

import os
import sys

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
