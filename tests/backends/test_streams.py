"""``backends._streams``: which standard streams become pipes, and that the copies are whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.platform == "win32":
    pytest.skip("POSIX only", allow_module_level=True)

from ringfence.backends import _streams


def _probe(**streams: object) -> str:
    code = ("import sys; from ringfence.backends._streams import guard; s = guard(); "
            "w = [n for n, fd in s.child.items() if fd != n] if s else None; "
            "open(sys.argv[1], 'w').write(repr(w))")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"probe-{os.getpid()}"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, timeout=30,
                   **streams)  # type: ignore[call-overload]
    try:
        return out.read_text()
    finally:
        out.unlink()


def test_pipes_and_devices_pass_through() -> None:
    assert _probe(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE) == "None"


def test_files_become_pipes_and_one_file_shares_one_pipe(tmp_path: Path) -> None:
    (tmp_path / "in").write_text("x")
    with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "ab") as fout:
        assert _probe(stdin=fin, stdout=fout, stderr=subprocess.PIPE) == "[0, 1]"
        assert _probe(stdin=subprocess.DEVNULL, stdout=fout, stderr=fout) == "[1, 2]"


def test_copies_are_whole(tmp_path: Path) -> None:
    """What the command writes into its pipe arrives in the file whole and in order."""
    data = os.urandom(3 << 20)
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        streams = _streams.Streams([(out, (1, 2))])
        assert streams.child[1] == streams.child[2] != 1
        writer = os.dup(streams.child[1])  # the command's end
        streams.started()
        view = memoryview(data)
        while view:
            view = view[os.write(writer, view):]
        os.close(writer)
        streams.finish()
    finally:
        os.close(out)
    assert (tmp_path / "out").read_bytes() == data
