"""Attack: make ringfence itself, on the host, remove a directory outside the workspace.

The placeholders a run creates are recorded one path a line, and the last run out removes what
the record names (an empty directory goes back to the pool, a file with a placeholder's content
is unlinked). A command can make the next run need a placeholder whose name has a line break:
git config that the host's scan reads (a repository one level down that the command made) can
include ``"a\\n/outside/empty"``, a missing file, which is protected with a file placeholder once
the command has made its parent directories (``a\\n/outside`` inside that repository's ``.git``).
The record then says ``.../a`` and ``/outside/empty`` on two lines, and at the end of that run
ringfence moved ``/outside/empty``, an empty directory of the user's, into its pool. Found in a
red-team pass (rt-git). The guard: the record ends each path with a NUL, which no path holds.
"""

from __future__ import annotations

import pytest
from tests.conftest import World

pytestmark = pytest.mark.escape


def test_line_break_in_a_placeholder_name(world: World) -> None:
    world.git_init()
    victim = world.outside / "empty"
    victim.mkdir()
    plant = (f'git init -q sub && mkdir -p "sub/.git/a\n{world.outside}" && '
             f'printf \'[include]\\n\\tpath = "a\\\\n{victim}"\\n\' >> sub/.git/config')
    assert world.sandbox(plant).returncode == 0
    result = world.sandbox("true")
    assert result.returncode == 0, result.stderr
    assert victim.is_dir(), "ringfence removed a directory outside the workspace"
    placeholder = world.workspace / "sub" / ".git" / f"a\n{victim}"
    assert placeholder.parent.is_dir()
    assert not placeholder.exists(), "the placeholder with a line break was left behind"
