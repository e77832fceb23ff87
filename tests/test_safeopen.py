"""``_safeopen.open_regular``: what the host's scans open of the files a command controls."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringfence._safeopen import open_regular

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify")

if sys.platform == "linux":
    from tests.inotify import OpenWatch


def _read(fd: int | None) -> bytes | None:
    if fd is None:
        return None
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_kinds(tmp_path: Path) -> None:
    """A regular file (or a link to one, when links are followed) is opened; a FIFO, a
    directory, a link with ``follow=False`` are not, and the FIFO sees no open at all."""
    (tmp_path / "reg").write_text("text\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "to-reg").symlink_to(tmp_path / "reg")
    (tmp_path / "to-fifo").symlink_to(tmp_path / "fifo")
    with OpenWatch(tmp_path / "fifo") as watch:
        assert _read(open_regular(str(tmp_path / "reg"))) == b"text\n"
        assert _read(open_regular(str(tmp_path / "to-reg"))) == b"text\n"
        assert open_regular(str(tmp_path / "to-reg"), follow=False) is None
        assert open_regular(str(tmp_path / "fifo")) is None
        assert open_regular(str(tmp_path / "to-fifo")) is None
        assert open_regular(str(tmp_path)) is None
        assert watch.opened() == 0
        os.close(os.open(tmp_path / "to-fifo", os.O_RDONLY | os.O_NONBLOCK))  # the control
        assert watch.opened() >= 1
    with pytest.raises(FileNotFoundError):
        open_regular(str(tmp_path / "missing"))


SWAP = """
import os, sys, time
path, fifo, reg = sys.argv[1:4]
end = time.monotonic() + 1.5
while time.monotonic() < end:
    for node in (fifo, reg):
        os.link(node, path + ".new")
        os.rename(path + ".new", path)
"""


def test_a_fifo_swapped_in_by_rename_is_never_opened(tmp_path: Path) -> None:
    """The placeholder check (``backends.linux._is_ours``: ``lstat``, then open) raced by a
    process that renames a FIFO and a regular file over the name in turn: a blocking open of
    the FIFO would hang the host. ``follow=False`` (the name itself, no link)."""
    fifo, reg, path = tmp_path / "fifo", tmp_path / "reg", tmp_path / "commondir"
    os.mkfifo(fifo)
    reg.write_text(".\n")
    os.link(reg, path)
    swapper = subprocess.Popen([sys.executable, "-c", SWAP, str(path), str(fifo), str(reg)])
    calls = 0
    with OpenWatch(fifo) as watch:
        while swapper.poll() is None:
            try:
                _read(open_regular(str(path), follow=False))
            except FileNotFoundError:
                pass
            calls += 1
        assert watch.opened() == 0, f"the FIFO was opened (in {calls} calls)"
    assert swapper.returncode == 0
    assert calls > 1000
