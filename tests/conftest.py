"""Shared fixtures: a sandbox world the tests build themselves.

Every escape test aims at files, sockets and processes the test creates *outside* the workspace,
never at the real system: a fake $HOME with fake secrets, an ``outside`` directory, servers on
127.0.0.1. The test root is under the project (not /tmp), because the sandbox replaces /tmp with
its own: a target under the host's /tmp would be invisible inside, and a test would pass for the
wrong reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_ROOT = Path(os.environ.get("RINGFENCE_TEST_ROOT", ROOT / ".test-tmp"))


class World:
    """A fake user: home with secrets, config dirs, a workspace, and an outside directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home"
        self.workspace = base / "home" / "project"
        self.outside = base / "outside"
        for d in (self.home, self.workspace, self.outside):
            d.mkdir(parents=True, exist_ok=True)
        ssh = self.home / ".ssh"
        ssh.mkdir()
        (ssh / "id_ed25519").write_text("FAKE-PRIVATE-KEY\n")
        (self.home / ".netrc").write_text("machine example login me password FAKE-NETRC\n")
        (self.home / ".aws").mkdir()
        (self.home / ".aws" / "credentials").write_text("[default]\naws_secret=FAKE-AWS\n")
        (self.home / ".bashrc").write_text("# rc\n")
        (self.outside / "target.txt").write_text("ORIGINAL\n")
        self.env = {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", os.defpath),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``ringfence ARGS...`` as a user would type it, in this world."""
        full_env = {**self.env, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "ringfence", *args],
            cwd=cwd or self.workspace, env=full_env, capture_output=True, text=True,
            timeout=timeout, input=input.decode() if input is not None else None,
        )

    def sandbox(self, script: str, *options: str, **kw: object
                ) -> subprocess.CompletedProcess[str]:
        """Run a shell script in the sandbox (default policy plus ``options``)."""
        return self.run("run", *options, "--", "/bin/sh", "-c", script, **kw)  # type: ignore[arg-type]

    def unsandboxed(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """The same script with the guard removed (full-access): the control for each attack."""
        return self.sandbox(script, "--profile", "full-access", **kw)

    def python(self, code: str, *options: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("run", *options, "--", sys.executable, "-c", code, **kw)  # type: ignore[arg-type]

    def git_init(self) -> None:
        env = {**os.environ, **self.env, "GIT_CONFIG_NOSYSTEM": "1"}
        for cmd in (["git", "init", "-q", "-b", "main"],
                    ["git", "config", "user.email", "t@example.invalid"],
                    ["git", "config", "user.name", "T"],
                    ["git", "config", "commit.gpgsign", "false"]):
            subprocess.run(cmd, cwd=self.workspace, env=env, check=True)
        (self.workspace / "README").write_text("hello\n")
        subprocess.run(["git", "add", "README"], cwd=self.workspace, env=env, check=True)
        subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=self.workspace, env=env,
                       check=True)


REPLACED = ("/tmp", "/var/tmp", "/run", "/var/run")  # the sandbox has its own of each


@pytest.fixture
def world() -> Iterator[World]:
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(TEST_ROOT)
    if any(real == d or real.startswith(d + "/") for d in REPLACED):
        pytest.fail(f"the test root {real} is under a directory the sandbox replaces with its "
                    "own, so escape tests would pass for the wrong reason; check out the "
                    "project elsewhere or set RINGFENCE_TEST_ROOT", pytrace=False)
    base = TEST_ROOT / uuid.uuid4().hex[:12]
    base.mkdir()
    try:
        yield World(base)
    finally:
        remove_world(base)


def remove_world(base: Path) -> None:
    """Remove a world's directory, whatever modes a test left in it."""
    subprocess.run(["chmod", "-R", "u+rwX", str(base)], check=False, stderr=subprocess.DEVNULL)
    shutil.rmtree(base, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # in-process library calls keep their caches (parsed policies, public suffix answers)
    # under the test root, never in the real user's state directory
    os.environ["XDG_STATE_HOME"] = str(TEST_ROOT / "state")
    config.addinivalue_line("markers", "escape: tries a real escape against the real kernel")


IS_ROOT = os.geteuid() == 0


@pytest.fixture
def in_world(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The test process itself lives in the world (its environment, its workspace as the
    current directory): the library, called in-process, touches no real home."""
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(world.workspace)
    return world
