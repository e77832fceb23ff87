"""Attack: a repository's ``.ringfence.toml`` sets a dynamic-loader variable in ``[environment]
set``, which ringfence allows because it "only reaches the sandbox". But bubblewrap (and, in
the Landlock fallback, the launcher's interpreter) was started with the command's environment,
on the host, before any restriction existed: ``LD_PRELOAD = "evil.so"`` ran the project's code
outside the sandbox on every ``ringfence run`` in that checkout.

The probe needs no compiler: ``LD_DEBUG`` with ``LD_DEBUG_OUTPUT`` makes glibc's loader write a
file named ``LD_DEBUG_OUTPUT.<pid>`` when a program starts; a write outside the workspace means
some program started with those variables outside the sandbox. Inside the sandbox the loader's
write is refused, like any other. The command still gets the variables (they are set again
inside), so nothing a project legitimately sets is lost.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tests.conftest import World

pytestmark = [pytest.mark.escape,
              pytest.mark.skipif(sys.platform != "linux", reason="the Linux sandbox")]


def _project_sets_loader_debug(world: World) -> str:
    prefix = str(world.outside / "loader")
    (world.workspace / ".ringfence.toml").write_text(
        f'[environment]\nset = {{ LD_DEBUG = "files", LD_DEBUG_OUTPUT = "{prefix}" }}\n')
    return prefix


def _written(world: World) -> list[str]:
    return sorted(p.name for p in world.outside.iterdir() if p.name.startswith("loader"))


def _glibc_honours_it(world: World, prefix: str) -> bool:
    """The control: a program started with these variables outside any sandbox writes the
    file (where it does not, this libc has no LD_DEBUG and the attack cannot be shown)."""
    subprocess.run(["/bin/true"], env={"LD_DEBUG": "files", "LD_DEBUG_OUTPUT": prefix},
                   check=True)
    found = _written(world)
    for name in found:
        os.unlink(world.outside / name)
    return bool(found)


def test_project_loader_variables_do_not_reach_bubblewrap(world: World) -> None:
    """``ringfence run`` in a checkout whose project file sets LD_DEBUG/LD_DEBUG_OUTPUT: no
    program outside the sandbox starts with them (before the fix, bubblewrap's loader wrote
    ``outside/loader.<pid>``), and the command inside still sees them."""
    prefix = _project_sets_loader_debug(world)
    if not _glibc_honours_it(world, prefix):
        pytest.skip("this C library does not act on LD_DEBUG_OUTPUT")
    result = world.sandbox('printf "%s|%s" "$LD_DEBUG" "$LD_DEBUG_OUTPUT"',
                           "--max-processes", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"files|{prefix}")  # (the loader itself may chat too)
    assert _written(world) == []


def test_project_loader_variables_do_not_reach_the_session_sandbox(in_world: World) -> None:
    """The same through a session (the MCP server's and agents' way in): bubblewrap for the
    session's sandbox is started without the loader's variables."""
    import ringfence

    world = in_world
    prefix = _project_sets_loader_debug(world)
    if not _glibc_honours_it(world, prefix):
        pytest.skip("this C library does not act on LD_DEBUG_OUTPUT")
    from ringfence.policy.load import Options, resolve

    policy = resolve(Options(workspace=str(world.workspace), max_processes=0))
    with ringfence.Session(policy) as session:
        result = session.run('printf %s "$LD_DEBUG"')
    assert result.stdout.endswith(b"files")
    assert _written(world) == []
