"""Attack: a submodule the repository declares but has not set up yet is a place the host's
git will use, though nothing is there to protect.

A fresh ``git clone`` (without ``--recurse-submodules``) of a repository with submodules leaves
``lib/`` an empty directory and no ``.git/modules/lib``. The command fills either:
- ``git init lib`` with ``core.fsmonitor`` in its config: the host's next plain ``git status``
  at the top recurses into ``lib`` (its gitlink is in the index already) and runs it, and shows
  nothing;
- a git directory of its own at ``.git/modules/lib`` with a ``post-checkout`` hook: the host's
  ``git submodule update --init`` reuses it instead of cloning, and runs the hook.
Found in a red-team pass (rt-git). Both the top repository and one a level down are tried; each
attack has its control with the guard removed (``--profile full-access``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.conftest import World
from tests.escapes.test_protected import _git, _repo

pytestmark = pytest.mark.escape


def _cloned_with_submodule(world: World, layout: str) -> tuple[Path, Path]:
    """A repository declaring submodule ``lib`` (and ``libs/foo``), cloned into the workspace
    without its submodules (or, ``one-level-down``, into ``workspace/backend``); the clone and
    the upstream of ``lib``."""
    upstream = _repo(world, world.outside / "upstream")
    origin = _repo(world, world.outside / "origin")
    for path in ("lib", "libs/foo"):
        _git(world, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(upstream),
             path, cwd=origin)
    _git(world, "commit", "-q", "-m", "submodules", cwd=origin)
    clone = world.workspace if layout == "top" else world.workspace / "backend"
    if layout == "top":
        clone.rmdir()
    _git(world, "clone", "-q", str(origin), str(clone), cwd=world.outside)
    assert not any((clone / "lib").iterdir()), "the submodule should not be set up"
    return clone, upstream


LAYOUTS = ["top", "one-level-down"]


def _planted_gitdir(upstream: Path, gitdir: str, marker: Path) -> str:
    """Shell: a git directory at ``gitdir`` (cloned from ``upstream``) whose
    ``post-checkout`` hook touches ``marker``."""
    return (f"git clone -q --bare {upstream} {gitdir} && "
            f"git -C {gitdir} config core.bare false && "
            f"printf '#!/bin/sh\\ntouch {marker}\\n' > {gitdir}/hooks/post-checkout && "
            f"chmod +x {gitdir}/hooks/post-checkout")


def _update_lib(world: World, clone: Path) -> None:
    """The host's ``git submodule update --init -- lib``."""
    _git(world, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q",
         "--", "lib", cwd=clone, check=False)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("path", ["lib", "libs/foo"])
def test_repository_in_a_submodule_not_set_up(world: World, layout: str, path: str) -> None:
    """``git init lib`` + ``core.fsmonitor``: the host's plain ``git status`` runs it."""
    clone, _ = _cloned_with_submodule(world, layout)
    marker = world.outside / "fsmonitor-ran"
    script = (f"cd {clone} && git init -q {path} && "
              f"git -C {path} config core.fsmonitor 'touch {marker}; false'")
    world.sandbox(script)
    status = _git(world, "status", "--porcelain", cwd=clone, check=False)
    assert not marker.exists(), "the host's git status ran what the sandbox planted"
    assert status.stdout == ""
    # the control: without the guard the same script makes git status run it, silently
    assert world.unsandboxed(script).returncode == 0
    status = _git(world, "status", "--porcelain", cwd=clone, check=False)
    assert marker.exists()
    assert status.stdout == "", "git status shows the planted repository (the attack is loud)"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_git_directory_of_a_submodule_not_set_up(world: World, layout: str) -> None:
    """A git directory at ``.git/modules/lib`` with a ``post-checkout`` hook: the host's
    ``git submodule update --init`` takes it for the submodule's and runs the hook."""
    clone, upstream = _cloned_with_submodule(world, layout)
    marker = world.outside / "post-checkout-ran"
    gitdir = ".git/modules/lib"
    script = f"cd {clone} && " + _planted_gitdir(upstream, gitdir, marker)

    def update() -> None:
        _update_lib(world, clone)

    world.sandbox(script)
    assert not (clone / gitdir).exists(), "the sandbox made the submodule's git directory"
    update()
    assert not marker.exists(), "the host's git submodule update ran the planted hook"
    assert (clone / "lib" / "README").exists(), "the submodule should be set up from upstream"
    # back to not set up, then the control: without the guard the hook runs
    _git(world, "submodule", "deinit", "-q", "-f", "lib", cwd=clone)
    shutil.rmtree(clone / gitdir)
    assert world.unsandboxed(script).returncode == 0
    update()
    assert marker.exists()


def test_work_goes_on_with_a_submodule_not_set_up(world: World) -> None:
    """The protection costs no ordinary work: the command edits, adds and commits at the top
    (``git add -A`` walks past the untouched submodule) and in a set-up submodule."""
    clone, _ = _cloned_with_submodule(world, "top")
    _git(world, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q",
         "--", "libs/foo", cwd=clone)
    script = ("set -e; echo more >> README && git add -A && git commit -q -m work && "
              "cd libs/foo && echo x > x && git add -A && git commit -q -m inner && cd ../.. && "
              "git add -A && git commit -q -m bump && git status --porcelain && echo DONE")
    result = world.sandbox(script, env={"GIT_AUTHOR_NAME": "T", "GIT_COMMITTER_NAME": "T",
                                        "GIT_AUTHOR_EMAIL": "t@example.invalid",
                                        "GIT_COMMITTER_EMAIL": "t@example.invalid"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DONE"
    assert not any((clone / "lib").iterdir())
    assert not (clone / ".git" / "modules" / "lib").exists()


@pytest.mark.parametrize("how", ["renamed", "new-name"])
def test_git_directory_under_a_name_declared_during_the_run(world: World, how: str) -> None:
    """Only the names ``.gitmodules`` declares at the start have their git directories
    protected. The command renames the submodule at ``lib`` (``renamed``: a section
    ``submodule.evil`` with ``path = lib``), or declares a second name for it, and makes
    ``.git/modules/evil`` with a ``post-checkout`` hook: the host's ``git submodule update
    --init`` takes that for lib's git directory and runs the hook. After the run the directory
    is moved out of ``.git/modules`` (and the run warns), so the update clones afresh.
    (``libs/foo`` is set up first: where no submodule is, ``.git/modules`` is missing and a
    placeholder stands for it, which stops this already.)"""
    clone, upstream = _cloned_with_submodule(world, "top")
    _git(world, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q",
         "--", "libs/foo", cwd=clone)
    marker = world.outside / "post-checkout-ran"
    gitdir = ".git/modules/evil"
    declare = ("git config -f .gitmodules --rename-section submodule.lib submodule.evil"
               if how == "renamed" else
               "git config -f .gitmodules submodule.evil.path lib && "
               f"git config -f .gitmodules submodule.evil.url {upstream} && "
               "git config -f .gitmodules --remove-section submodule.lib")
    script = (f"cd {clone} && {declare} && " + _planted_gitdir(upstream, gitdir, marker)
              + " && echo PLANTED")

    def update() -> None:
        _update_lib(world, clone)

    result = world.sandbox(script)
    assert "PLANTED" in result.stdout, result.stderr
    assert "ringfence: warning: the command declared submodules" in result.stderr
    assert not (clone / gitdir).exists()
    update()
    assert not marker.exists(), "the host's git submodule update ran the planted hook"
    # the control: without the guard the hook runs
    _git(world, "submodule", "deinit", "-q", "-f", "lib", cwd=clone, check=False)
    _git(world, "checkout", "-q", "--", ".gitmodules", cwd=clone)
    shutil.rmtree(clone / ".git" / "modules", ignore_errors=True)
    assert world.unsandboxed(script).returncode == 0
    update()
    assert marker.exists()


def _declare(name: str) -> str:
    return f"printf '[submodule \"{name}\"]\\n\\tpath = x\\n\\turl = ./x\\n' > .gitmodules"


def test_module_directory_through_a_link_stays_outside(world: World) -> None:
    """Attack on ringfence's own clean-up (the host side): the command links
    ``.git/modules/evil`` to a repository outside the workspace and declares a submodule
    named ``evil/.git``. The clean-up took ``.git/modules/evil/.git`` for a git directory the
    command had made and renamed it, through the link, into ``.git/ringfence-set-aside``:
    the other repository lost its ``.git``, and the next command could read and change it in
    the workspace. Now the link itself is what is set aside; the other repository is
    untouched."""
    world.git_init()
    other = _repo(world, world.outside / "other")
    script = (f"mkdir -p .git/modules && ln -s {other} .git/modules/evil && "
              + _declare("evil/.git") + " && echo PLANTED")
    result = world.sandbox(script)
    assert "PLANTED" in result.stdout, result.stderr
    assert (other / ".git" / "HEAD").is_file(), "ringfence moved a repository outside in"
    assert not (world.workspace / ".git" / "modules" / "evil").exists()
    assert not any(p.name == ".git" for p in (world.workspace / ".git").rglob("*"))
    assert "ringfence: warning: the command declared submodules" in result.stderr


def test_set_aside_directory_that_is_a_link(world: World) -> None:
    """Attack on ringfence's own clean-up: the command makes ``.git/ringfence-set-aside`` a
    link to a directory outside the workspace (say a ``site-packages``) and a git directory
    ``.git/modules/sitecustomize`` holding ``__init__.py``, under a name it declares. The
    clean-up moved that directory through the link, so ringfence on the host placed the
    command's package where Python imports it at every start. Now a link there is not used:
    the directory goes to a real one beside it."""
    world.git_init()
    site = world.outside / "site-packages"
    site.mkdir()
    gitdir = ".git/modules/sitecustomize"
    script = (f"mkdir -p {gitdir} && echo 'ref: refs/heads/main' > {gitdir}/HEAD && "
              f"echo 'print(1)' > {gitdir}/__init__.py && "
              f"ln -s {site} .git/ringfence-set-aside && "
              + _declare("sitecustomize") + " && echo PLANTED")
    result = world.sandbox(script)
    assert "PLANTED" in result.stdout, result.stderr
    assert list(site.iterdir()) == [], "ringfence moved the command's directory outside"
    assert not (world.workspace / gitdir).exists()
    moved = [p for p in (world.workspace / ".git").glob("ringfence-set-aside-*/sitecustomize")]
    assert len(moved) == 1 and (moved[0] / "__init__.py").is_file()
    assert str(site) not in result.stderr
