"""``[limits] cpu_percent`` cannot be enforced on Linux (no delegated cgroup v2 cpu controller is
used), so ringfence must refuse to run a command under it rather than run it uncapped."""

from __future__ import annotations

import sys

import pytest
from tests.conftest import World

import ringfence
from ringfence.errors import UnavailableError
from ringfence.policy.model import Limits, Policy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="enforced on Windows")


def _policy_file(world: World, text: str) -> str:
    path = world.base / "policy.toml"
    path.write_text(text)
    return str(path)


def test_cli_refuses_to_run_uncapped(world: World) -> None:
    """The command would burn CPU uncapped; ringfence must exit 125 before it starts, naming
    the key and what is missing. Control: without the key the same command runs."""
    marker = world.outside / "ran"
    script = f"echo ran > {world.workspace / 'ran'}; touch {marker} 2>/dev/null; exit 0"
    capped = _policy_file(world, "[limits]\ncpu_percent = 50\n")
    r = world.run("run", "--policy", capped, "--", "/bin/sh", "-c", script)
    assert r.returncode == 125, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringfence:"), r.stderr
    assert "cpu_percent = 50" in lines[0] and "cgroup" in lines[0] and "remove the key" in lines[0]
    assert not (world.workspace / "ran").exists()
    # control: the guard removed (no key), the command runs
    plain = _policy_file(world, "[limits]\ntimeout = 60\n")
    r = world.run("run", "--policy", plain, "--", "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert (world.workspace / "ran").read_text() == "ran\n"


def test_library_refuses(in_world: World) -> None:
    target = in_world.workspace / "ran"
    policy = Policy(workspace=str(in_world.workspace), limits=Limits(cpu_percent=10))
    with pytest.raises(UnavailableError, match="cpu_percent"):
        ringfence.run(["/bin/sh", "-c", f"echo ran > {target}"], policy, audit=False)
    assert not target.exists()
    # even with the sandbox off (full-access): the cap is about the command's CPU, not access
    with pytest.raises(UnavailableError, match="cpu_percent"):
        ringfence.run(["/bin/sh", "-c", f"echo ran > {target}"],
                      policy.replace(profile="full-access"), audit=False)
    assert not target.exists()


def test_explain_shows_the_key_and_the_refusal(world: World) -> None:
    capped = _policy_file(world, "[limits]\ncpu_percent = 50\n")
    r = world.run("explain", "--policy", capped, "--", "true")
    assert r.returncode == 0, r.stderr
    assert "cpu_percent=50" in r.stdout and "refused: [limits] cpu_percent = 50" in r.stdout
    r = world.run("explain", "--policy", capped, "--platform", "windows", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "cpu_rate = 5000 (50% of the machine, hard cap" in r.stdout
