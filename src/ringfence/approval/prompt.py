"""Asking a person on the terminal (``/dev/tty``), one screen per question.

The command is shown with control characters escaped, so a command cannot repaint the question
(terminal escape sequences in its words) to hide what it is.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .gate import ApprovalRequest

_KEYS = {"o": "once", "once": "once", "y": "once", "yes": "once", "s": "session",
         "session": "session", "a": "always", "always": "always", "d": "deny", "deny": "deny",
         "n": "deny", "no": "deny", "": "deny"}


def visible(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1) and bidi overrides shown as escapes."""
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0x202A <= code <= 0x202E \
                or 0x2066 <= code <= 0x2069 or 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def screen(request: ApprovalRequest, config_path: str) -> str:
    from .gate import command_text

    cmd = request.command
    text = cmd[2] if len(cmd) == 3 and cmd[:2] == ("/bin/sh", "-c") else command_text(cmd)
    lines = [
        "",
        "ringfence: approve this command?",
        f"  command   {visible(text)}",
        f"  where     {visible(request.cwd)}",
        f"  why       {visible(request.reason)}  [{visible(request.rule)}]",
    ]
    for n, grant in enumerate(request.grants):
        lines.append(f"  {'it gets' if n == 0 else '':9} {visible(grant)}")
    if request.justification:
        lines.append(f"  asked    {visible(request.justification)}")
    # what each answer grants, no more: "session" and "always" cover exactly this command
    # (not a longer one that starts with it); "session" only in this directory
    lines.append("  [o] once")
    if request.run_time:
        # an approval of `rm -r $X/build` would cover it with every later X
        from .gate import late_words

        lines.append(f"  (no session or always: {late_words(request.run_time)} is only "
                     "known when it runs, so a lasting approval would cover any value)")
    else:
        lines.append("  [s] this session: exactly this command, run from this directory")
    if request.always_ok and not request.run_time:
        asked = dict.fromkeys(command_text(p.argv) for p in request.decision.parts
                              if p.verdict == "ask")
        what = " and ".join(f"`{visible(a)}`" for a in asked) or "this command"
        lines.append(f"  [a] always: an allow rule for exactly {what} (from any directory), "
                     f"added to {visible(config_path)}")
    lines.append("  [d] deny")
    return "\n".join(lines) + "\n"


class TerminalApprover:
    """Asks on the controlling terminal; answers ``once``/``session``/``always``/``deny``."""

    who = "user at the terminal"

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, request: ApprovalRequest) -> str:
        from ..policy.load import user_config_path

        os.write(self.fd, screen(request, user_config_path()).encode("utf-8", "replace"))
        choices = "o/D" if request.run_time else "o/s/a/D" if request.always_ok else "o/s/D"
        for _ in range(3):
            os.write(self.fd, f"answer [{choices}]: ".encode())
            line = self._readline()
            if line is None:
                os.write(self.fd, b"\n")
                return "deny"
            answer = _KEYS.get(line.strip().lower())
            if (answer == "always" and not request.always_ok) or (
                    answer in ("session", "always") and request.run_time):
                answer = None
            if answer is not None:
                return answer
        return "deny"

    def _readline(self) -> str | None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self.fd, 1)
            if not chunk:
                return None if not data else data.decode(errors="replace")
            data += chunk
            if len(data) > 4096:
                break
        return data.decode(errors="replace")

    def close(self) -> None:
        os.close(self.fd)


def terminal_approver() -> TerminalApprover | None:
    """An approver on /dev/tty, or None when this process has no controlling terminal."""
    if sys.platform == "win32":
        return None  # a console prompt (CONIN$) arrives with the Windows backend
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    return TerminalApprover(fd)
