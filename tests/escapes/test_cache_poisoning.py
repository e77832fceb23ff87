"""Attack: plant code in the sandbox's package cache for a later run that trusts it.

workspace-write points pip, npm, yarn, Go, uv, Poetry and ``XDG_CACHE_HOME`` at the sandbox's
own cache (``~/.cache/ringfence/sandbox/<workspace key>``), which the workspace's commands can
write. Two ways a planted entry (a wheel under pip's cache key, a Go module, a pre-commit
environment) would be installed or run later:
- a full-access run, or the approved rerun of a failed command without the sandbox, pointed at
  the same cache: only workspace-write may use it; every other profile gets the user's own;
- a sandboxed run in another workspace pointed at the same cache: it would install the code
  into that project, whose tree the host later runs. Each workspace has its own cache.
"""

from __future__ import annotations

import pytest
from tests.conftest import World

CACHE_VARS = ("XDG_CACHE_HOME", "PIP_CACHE_DIR", "npm_config_cache", "YARN_CACHE_FOLDER",
              "GOMODCACHE", "GOCACHE", "UV_CACHE_DIR", "POETRY_CACHE_DIR")

PLANT = " && ".join(f'mkdir -p "${name}" && echo PLANTED-{name} > "${name}/planted"'
                    for name in CACHE_VARS)
READ = "; ".join(f'cat "${{{name}:-/nonexistent}}/planted" 2>/dev/null' for name in CACHE_VARS)


@pytest.mark.parametrize("profile", ["full-access", "read-only"])
def test_unsandboxed_run_does_not_use_the_sandbox_cache(world: World, profile: str) -> None:
    """A workspace-write command writes a marker into every cache it is given; a run in
    ``profile`` then looks for those markers through its own cache variables and finds none.
    The control, a second workspace-write run in the same workspace, does find them."""
    planted = world.sandbox(PLANT)
    assert planted.returncode == 0, planted.stderr
    later = world.sandbox(READ, "--profile", profile)
    assert "PLANTED" not in later.stdout, f"{profile} ran with the sandbox's cache"
    control = world.sandbox(READ)
    for name in CACHE_VARS:
        assert f"PLANTED-{name}" in control.stdout, control.stderr


def test_another_workspace_does_not_get_this_workspaces_cache(world: World) -> None:
    """A command in one workspace plants a marker in every cache it is given; a
    workspace-write run in another workspace (a sibling project) finds none through its own
    cache variables. Found in a red-team pass: a rewritten wheel in pip's cache was installed
    by a later ``pip install`` in another project. The control, the same workspace again,
    finds them (each workspace keeps its cache from run to run)."""
    planted = world.sandbox(PLANT)
    assert planted.returncode == 0, planted.stderr
    other = world.home / "other-project"
    other.mkdir()
    later = world.sandbox(READ, cwd=other)
    assert later.returncode == 0 or later.stdout == "", later.stderr
    assert "PLANTED" not in later.stdout, "another workspace ran with this workspace's cache"
    control = world.sandbox(READ)
    for name in CACHE_VARS:
        assert f"PLANTED-{name}" in control.stdout, control.stderr
