"""``backends.linux``'s placeholder record: read back exactly as written, old records too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the Linux backend")


def test_names_with_line_breaks_and_old_records(tmp_path: Path) -> None:
    from ringfence.backends.linux import _record_lines

    record = tmp_path / "record"
    record.write_bytes(b"/ws/a\n/elsewhere\x00/ws/b\x00")
    assert _record_lines(str(record)) == ["/ws/a\n/elsewhere", "/ws/b"]
    record.write_bytes(b"/ws/a\n/ws/b\n")  # written before the NUL
    assert _record_lines(str(record)) == ["/ws/a", "/ws/b"]
