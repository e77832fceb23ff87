"""``ringfence explain --platform windows`` on this (non-Windows) host: the simulated facts."""

from __future__ import annotations

import json
import sys

import pytest

from tests.cli.test_cli import assert_one_line_error, snapshot
from tests.conftest import World

pytestmark = pytest.mark.skipif(sys.platform == "win32",
                                reason="simulated facts are for non-Windows hosts")


def test_explain_platform_windows_text_and_json(world: World) -> None:
    (world.workspace / ".git").mkdir()
    (world.workspace / ".git" / "hooks").mkdir()
    before = snapshot(world.workspace)
    text = world.run("explain", "--platform", "windows", "--", "cmd", "/c", "echo")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("platform: windows")
    assert "simulated: this host's paths shown on drive C:" in text.stdout
    assert "token: DISABLE_MAX_PRIVILEGE | LUA_TOKEN | WRITE_RESTRICTED" in text.stdout
    data = json.loads(world.run("explain", "--platform", "windows", "--json", "--",
                                "cmd").stdout)
    assert data["platform"] == "windows" and data["simulated"] is True
    ws = "C:\\" + "\\".join(world.workspace.parts[1:])
    assert data["policy"]["workspace"] == ws
    assert data["capability_sids"][0]["root"] == ws
    paths = {a["path"] for a in data["acls"]}
    assert ws + "\\.git\\hooks" in paths
    home = "C:\\" + "\\".join(world.home.parts[1:])
    assert home + "\\.ssh" in paths and home + "\\.netrc" in paths
    assert data["setup_needed"] is True
    assert snapshot(world.workspace) == before  # nothing made, nothing run


def test_explain_platform_linux_is_the_default_explain(world: World) -> None:
    data = json.loads(world.run("explain", "--platform", "linux", "--json", "--", "true").stdout)
    assert data["mode"] in ("bwrap", "landlock")


def test_explain_unknown_platform(world: World) -> None:
    assert_one_line_error(world.run("explain", "--platform", "beos", "--", "true"),
                          "--platform", "windows")


def test_explain_platform_windows_needs_a_command(world: World) -> None:
    assert_one_line_error(world.run("explain", "--platform", "windows"), "no command")


@pytest.mark.parametrize("sub", ["setup", "status", "cleanup", "run"])
def test_windows_commands_refuse_elsewhere(world: World, sub: str) -> None:
    """Off Windows, each Windows command exits 125 with one line saying so."""
    assert_one_line_error(world.run("windows", sub), "Windows only")


def test_windows_unknown_subcommand(world: World) -> None:
    assert_one_line_error(world.run("windows", "frobnicate"), "unknown windows command")
