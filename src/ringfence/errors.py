"""The one error family ringfence raises.

Every expected failure reaches the user as one of these, with a message that names the thing,
the problem and the fix. The command line prints ``str(error)`` on one line and exits with
``error.exit_code``; it never shows a traceback for them.
"""

from __future__ import annotations


class RingfenceError(Exception):
    """Base of every error ringfence raises on purpose."""

    exit_code = 125


class PolicyError(RingfenceError):
    """A policy file, option or value is wrong (names the file or option, the key and why)."""


class UnavailableError(RingfenceError):
    """The host cannot enforce what the policy asks for (says what is missing and how to get it)."""


class CommandError(RingfenceError):
    """The command itself cannot be started: not found (127) or not executable (126)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class SandboxError(RingfenceError):
    """The sandbox failed while setting up (an OS call failed at the backend boundary)."""


class SessionError(SandboxError):
    """A session's sandbox is gone (closed, or ended unexpectedly); start a new session."""
