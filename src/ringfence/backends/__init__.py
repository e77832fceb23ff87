"""OS backends: the only modules that make OS-specific calls.

Each backend applies a ``Plan`` and reports an ``Outcome``; nothing outside ``backends`` imports
OS-specific code.
"""

from __future__ import annotations


class Outcome:
    """How the command ended, before the public ``Result`` is built from it."""

    __slots__ = ("exit_code", "duration", "limits_hit", "stdout", "stderr", "setup_failed",
                 "network", "git_warnings")

    def __init__(self) -> None:
        self.exit_code = 0
        self.duration = 0.0
        self.limits_hit: list[str] = []
        self.stdout: bytes | None = None
        self.stderr: bytes | None = None
        self.setup_failed = False
        self.network: list[object] = []  # network.proxy.Connection records (allowlist mode)
        self.git_warnings: list[str] = []  # what the command left in a git index (_gitguard)


def collect_again() -> None:
    """Turn cyclic garbage collection back on if the command line's start-up turned it off
    (see ``ringfence.__main__``), leaving out the objects of the start-up (frozen: a collection
    need not walk them, and nearly all of them live as long as the process)."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()
