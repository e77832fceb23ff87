"""Fixtures for the Windows host suite: a workspace and an outside directory the test makes,
and helpers that run ``ringfence windows run`` (sandboxed) or the same command unsandboxed.

Run on Windows, from an elevated-once set-up machine (see the README):

    py -m ringfence windows setup
    py -m pytest tests/windows_host -v

Everywhere else the whole directory is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.platform == "win32":
        return
    skip = pytest.mark.skip(reason="Windows host suite: runs on Windows only "
                            "(py -m pytest tests/windows_host after ringfence windows setup)")
    for item in items:
        if "windows_host" in str(item.fspath):
            item.add_marker(skip)


class Host:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.workspace = base / "ws"
        self.outside = base / "outside"
        self.extra = base / "extra"
        for d in (self.workspace, self.outside, self.extra):
            d.mkdir(parents=True)
        (self.outside / "target.txt").write_text("ORIGINAL\n")
        git = self.workspace / ".git"
        (git / "hooks").mkdir(parents=True)
        (git / "config").write_text("[core]\n")

    def run(self, script: str, *options: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        """``cmd /d /c SCRIPT`` in the sandbox (workspace-write unless options say)."""
        return subprocess.run(
            [sys.executable, "-m", "ringfence", "windows", "run", "--workspace",
             str(self.workspace), *options, "--", "cmd", "/d", "/c", script],
            cwd=self.workspace, capture_output=True, text=True, timeout=timeout)

    def ps(self, script: str, *options: str, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ringfence", "windows", "run", "--workspace",
             str(self.workspace), *options, "--", "powershell", "-NoProfile", "-Command",
             script], cwd=self.workspace, capture_output=True, text=True, timeout=timeout)

    def unsandboxed(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["cmd", "/d", "/c", script], cwd=self.workspace,
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def host() -> Iterator[Host]:
    root = Path(os.environ.get("RINGFENCE_TEST_ROOT", ROOT / ".test-tmp"))
    base = root / f"win-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True)
    try:
        yield Host(base)
    finally:
        subprocess.run(["cmd", "/d", "/c", "rmdir", "/s", "/q", str(base)], check=False)
