"""The README's examples as a reader would use them: every TOML block loads as a policy file,
and the library example runs as written (only its workspace, /src/app, is the test's own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ringfence
from tests.conftest import World

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", README, re.S)


@pytest.mark.parametrize("index", range(len(blocks("toml"))))
def test_toml_examples_load(index: int, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading rejects unknown keys and wrong types, so an example that drifted from the
    loader fails here (each block as a --policy file: the keys for your config only are
    allowed there)."""
    monkeypatch.setenv("HOME", str(world.home))
    (world.home / "scratch").mkdir(exist_ok=True)  # the reference's extra writable root
    path = world.base / f"example{index}.toml"
    path.write_text(blocks("toml")[index] + "\n")
    ringfence.load_policy(str(path), workspace=str(world.workspace))


def test_library_example_runs(world: World) -> None:
    """The "As a library" block, run as a script in a workspace with a test, a Makefile and
    a ringfence.toml; `npm` is a stand-in script (the example's commands are the reader's)."""
    example = next(b for b in blocks("python") if "result = ringfence.run([\"pytest\"" in b)
    ws = world.workspace
    (ws / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    (ws / "pytest.ini").write_text("[pytest]\n")  # its own rootdir, not this repository's
    (ws / "Makefile").write_text("test:\n\t@echo make-test-ran\n")
    (ws / "ringfence.toml").write_text('[network]\nmode = "off"\n')
    fake = world.base / "bin"
    fake.mkdir()
    (fake / "npm").write_text("#!/bin/sh\necho npm-test-ran\n")
    (fake / "npm").chmod(0o755)
    env = {**world.env, "PATH": os.pathsep.join(
        [os.path.dirname(sys.executable), str(fake), world.env["PATH"]])}
    r = subprocess.run([sys.executable, "-c", example.replace("/src/app", str(ws))], cwd=ws,
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("0 "), r.stdout  # exit code, duration, limits hit
    assert "1 passed" in r.stdout and "npm-test-ran" in r.stdout, r.stdout
    assert "bwrap" in lines[-1] or "sandbox-exec" in lines[-1], lines[-1]  # explain's argv
