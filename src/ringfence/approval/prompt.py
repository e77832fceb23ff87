"""Asking a person on the terminal (``/dev/tty``), one screen per question.

The command is shown with control characters escaped, so a command cannot repaint the question
(terminal escape sequences in its words) to hide what it is.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .gate import ApprovalRequest

_KEYS = {"o": "once", "once": "once", "y": "once", "yes": "once", "s": "session",
         "session": "session", "a": "always", "always": "always", "d": "deny", "deny": "deny",
         "n": "deny", "no": "deny", "": "deny"}


def visible(text: str) -> str:
    """``text`` for a terminal, on one line: control characters (C0, DEL, C1), bidi overrides
    and marks, invisible characters (Unicode formats such as zero-width spaces, line and
    paragraph separators, spaces other than the ASCII one) shown as escapes, and a long run
    of spaces (which wraps to look like a line of its own, or pushes text off the screen)
    shown as its length."""
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0xDC80 <= code <= 0xDCFF or (
                code >= 0xA0 and _invisible(ch)):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
                       if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    shown = "".join(out)
    if " " * _SPACES in shown:
        import re

        shown = re.sub(f" {{{_SPACES},}}", lambda m: f" [{len(m.group())} spaces] ", shown)
    return shown


_SPACES = 16  # a run this long is shown as its length


def _invisible(ch: str) -> bool:
    import unicodedata

    # Cf: formats (bidi marks, overrides and isolates, zero-width characters, tags, the BOM);
    # Zs/Zl/Zp: spaces and separators that are not the ASCII space; Co/Cn: nothing shown
    return unicodedata.category(ch) in ("Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Cs")


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


# What a command that ran on this terminal before the question (the sandboxed run that
# ``on-failure`` asks about, an earlier command) may have left in its state to hide or fake
# the question, undone before it is shown: a string left open (OSC, DCS: the question would
# become a window title) or a sequence cut short, ended by ST and CAN; colours and concealed
# text (SGR 8, black on black); a line-drawing character set (ESC ( 0, SO); insert mode;
# origin mode; lines cut at the margin instead of wrapped (DECAWM off); a hidden cursor;
# left/right margins; a scroll region (DECSTBM homes the cursor: saved and restored around
# it); an open hyperlink.
SANE = ("\x1b\\\x18" "\x1b[0m" "\x1b(B\x0f" "\x1b[4l" "\x1b[?6l" "\x1b[?7h" "\x1b[?25h"
        "\x1b[?69l" "\x1b7\x1b[r\x1b8" "\x1b]8;;\x1b\\")


def _sane_terminal(fd: int) -> list[Any] | None:
    """Ready the terminal for a question: reset what a command's output may have changed
    (``SANE``), set line editing, echo, signals and CR to NL on again (a command may have left
    it raw, so that Enter never ends the answer), and discard type-ahead (keys typed before
    the question, or replies the terminal sent to the command's queries). The old settings,
    to restore, or None when they could not be read."""
    if os.environ.get("TERM") != "dumb":
        os.write(fd, SANE.encode())
    if sys.platform == "win32":
        return None
    import termios

    try:
        saved: list[Any] = termios.tcgetattr(fd)
    except (OSError, termios.error):
        return None
    mode = list(saved)
    mode[0] = (mode[0] | termios.ICRNL) & ~(termios.INLCR | termios.IGNCR)
    mode[1] = mode[1] | termios.OPOST | termios.ONLCR
    mode[3] = mode[3] | termios.ICANON | termios.ECHO | termios.ISIG
    try:
        termios.tcsetattr(fd, termios.TCSAFLUSH, mode)  # (TCSAFLUSH: type-ahead discarded)
    except (OSError, termios.error):
        pass
    return saved


class TerminalApprover:
    """Asks on the controlling terminal; answers ``once``/``session``/``always``/``deny``."""

    who = "user at the terminal"

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, request: ApprovalRequest) -> str:
        from ..policy.load import user_config_path

        saved = _sane_terminal(self.fd)
        try:
            os.write(self.fd, screen(request, user_config_path()).encode("utf-8", "replace"))
            return self._ask(request)
        finally:
            if saved is not None and sys.platform != "win32":
                import termios

                try:
                    termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
                except (OSError, termios.error):
                    pass

    def _ask(self, request: ApprovalRequest) -> str:
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
