"""The terminal question (``approval/prompt.py``) as a person sees it: a real pty, its output
rendered by a terminal emulator (pyte), so what the test reads is what the screen shows."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from typing import Any

import pytest

from tests.conftest import World

pyte = pytest.importorskip("pyte")

REAL_QUESTION = b"answer [o/s/a/D]: "  # the on-failure question (the fake below offers o/s/D)


def shown(screen: Any) -> str:
    """The screen's text as a person reads it: a cell whose colour is its background's is
    blank (pyte keeps no "concealed" flag; black on black stands for it)."""
    rows = []
    for y in range(screen.lines):
        line = screen.buffer[y]
        rows.append("".join(
            " " if line[x].fg == line[x].bg and line[x].fg != "default" else line[x].data
            for x in range(screen.columns)).rstrip())
    return "\n".join(rows)


def ask_on_a_terminal(world: World, argv: list[str], answer: bytes, timeout: float = 60
                      ) -> tuple[int, str]:
    """Run ``argv`` on a new pty (80x24) rendered by pyte; when the real question has been
    asked, take the screen and type ``answer`` as a terminal sends it (Enter is CR). Returns
    (exit status, the screen at the question); ("", if it was never asked)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(world.workspace)
            os.execve(argv[0], argv, {**world.env, "TERM": "xterm"})
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    screen = pyte.Screen(80, 24)
    stream = pyte.ByteStream(screen)
    stream.use_utf8 = False  # (in UTF-8 mode pyte ignores character sets; terminals do not)
    seen, at_question = b"", ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                stream.feed(chunk)
            if not at_question and seen.endswith(REAL_QUESTION):
                at_question = shown(screen)
                os.write(fd, answer)
            if at_question and not ready and time.monotonic() > deadline - timeout + 30:
                break
    finally:
        os.close(fd)
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
            if not status and not _:
                os.kill(pid, 9)
                _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
    return os.waitstatus_to_exitcode(status), at_question


# The sandboxed run: it fails (the write outside is refused), paints a question of its own
# that shows a harmless command, and leaves the terminal so that ringfence's question after it
# is invisible or unreadable and Enter does not end the answer.
FAKE = r"""
if ! touch "$1" 2>/dev/null; then
  printf '\033[2J\033[H\n\n\n\nringfence: approve this command?\n  command   pytest -q\n'
  printf '  why       untrusted mode  [mode:untrusted]\n  [o] once\n  [d] deny\n'
  printf 'answer [o/s/D]: '
  printf '%s' "$2"
  [ -z "$3" ] || stty $3
  exit 1
fi
"""

HIDING = {  # what the run leaves: (output, stty settings)
    "black on black": ("\033[30;40m", ""),
    "line-drawing characters": ("\033(0", ""),
    "scroll region": ("\033[1;2r", ""),
    "open title string": ("\033]2;", ""),
    "Enter sends CR": ("", "-icrnl -echo"),
    "everything": ("\033[?7l\033[30;40m\033(0\033[1;2r\033]2;", "-icrnl -echo"),
}


@pytest.mark.parametrize("how", sorted(HIDING))
def test_on_failure_question_cannot_be_hidden_by_the_failed_run(world: World, how: str
                                                                ) -> None:
    """Red team: with ``--approval-mode on-failure``, the command's first (sandboxed) run
    writes to the user's terminal, then ringfence asks whether to run it again *without* the
    sandbox. The first run painted a fake question ("pytest -q", "untrusted mode") and left
    the terminal in a state that hid the real one: black on black, the line-drawing character
    set, a scroll region of the top two lines (above the fake), or an OSC string left open
    (the question became the window title); ``stty -icrnl`` made Enter not end the answer.
    The user answered the fake and the command ran unsandboxed. The question now resets the
    terminal and the line discipline first, so it shows what it asks (no sandbox, the real
    command) and reads the answer."""
    target = world.outside / "written-without-sandbox"
    script = world.workspace / "evil.sh"
    script.write_text(FAKE)
    argv = [sys.executable, "-m", "ringfence", "run", "--approval-mode", "on-failure", "--",
            "sh", "evil.sh", str(target), *HIDING[how]]
    code, screen = ask_on_a_terminal(world, argv, b"d\r")
    assert screen, "the real question was never asked"
    assert "no sandbox" in screen and "sh evil.sh" in screen, screen
    assert code == 1 and not target.exists(), (code, screen)  # denied: read and answered


def test_a_plain_failed_run_shows_the_question(world: World) -> None:
    """Control: a failed run that leaves the terminal alone gets the same question, read and
    answered the same way."""
    target = world.outside / "written-without-sandbox"
    script = world.workspace / "evil.sh"
    script.write_text(FAKE)
    argv = [sys.executable, "-m", "ringfence", "run", "--approval-mode", "on-failure", "--",
            "sh", "evil.sh", str(target), "", ""]
    code, screen = ask_on_a_terminal(world, argv, b"o\r")
    assert "no sandbox" in screen and "sh evil.sh" in screen, screen
    assert code == 0 and target.exists()
