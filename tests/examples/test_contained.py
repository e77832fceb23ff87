"""The README's "Try it": its command and ``examples/contained.sh``, the demo a new user runs
first. Each line the demo prints is checked against what the sandbox really allows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import World

ROOT = Path(__file__).resolve().parents[2]


def try_it_command() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert block is not None, "README: no sh block under Try it"
    return block.group(1).strip()


def test_try_it_installs_ringfence_outside_the_checkout() -> None:
    """The checkout is the workspace the demo runs in, and ringfence refuses to run from a
    virtualenv inside a writable root (a command could rewrite it for every later run): a
    `python3 -m venv .venv` there made the README's first command fail with exit 125."""
    command = try_it_command()
    venv = re.search(r"python3 -m venv (\S+)", command)
    assert venv is not None, command
    place = venv.group(1)
    assert place.startswith(("../", "/", "~")) and not place.startswith("./"), command
    assert f"{place}/bin/ringfence run -- sh examples/contained.sh" in command, command


def test_the_demo_is_contained(world: World) -> None:
    """What the demo says is so: the workspace and the private /tmp are writable; ~/.bashrc,
    the home, ~/.ssh, sockets, the host's processes, git hooks, .envrc and user namespaces
    are not (and ~/.bashrc really is unchanged)."""
    world.git_init()
    shutil.copy(ROOT / "examples" / "contained.sh", world.workspace / "contained.sh")
    bashrc = (world.home / ".bashrc").read_text()
    r = world.run("run", "--", "sh", "contained.sh")
    assert r.returncode == 0, r.stderr
    lines = {line.strip() for line in r.stdout.splitlines()}
    for allowed in ("write a file in the workspace", "write the private /tmp"):
        assert f"allowed: {allowed}" in lines, r.stdout
    for blocked in ("append to ~/.bashrc", "create a file in your home", "read ~/.ssh",
                    "open a network socket", "see the host's processes", "add a git hook",
                    "create .envrc (direnv would run it)", "start a new user namespace"):
        assert f"BLOCKED: {blocked}" in lines, (blocked, r.stdout)
    assert (world.home / ".bashrc").read_text() == bashrc
    assert not (world.home / ".ringfence-demo").exists()
    assert not (world.workspace / ".envrc").exists()
    assert not (world.workspace / ".git" / "hooks" / "pre-commit").exists()
    # the control: without the sandbox the same script gets through
    r = world.run("run", "--profile", "full-access", "--", "sh", "contained.sh")
    assert "allowed: append to ~/.bashrc" in r.stdout, r.stdout
    assert "allowed: read ~/.ssh" in r.stdout, r.stdout
