"""Attack: plant code in the sandbox's package cache for a later run without the sandbox.

workspace-write points pip, npm, yarn, Go, uv, Poetry and ``XDG_CACHE_HOME`` at the sandbox's
own cache (``~/.cache/ringfence/sandbox``), which every workspace-write command can write. If a
full-access run -- or the approved rerun of a failed command without the sandbox -- were
pointed at the same cache, it would install or execute whatever a sandboxed command left there
(a wheel under pip's cache key, a Go build output, a pre-commit environment). Only
workspace-write may use that cache; every other profile gets the user's own caches.
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
    The control, a second workspace-write run, does find them: the cache is shared by design."""
    planted = world.sandbox(PLANT)
    assert planted.returncode == 0, planted.stderr
    later = world.sandbox(READ, "--profile", profile)
    assert "PLANTED" not in later.stdout, f"{profile} ran with the sandbox's cache"
    control = world.sandbox(READ)
    for name in CACHE_VARS:
        assert f"PLANTED-{name}" in control.stdout, control.stderr
