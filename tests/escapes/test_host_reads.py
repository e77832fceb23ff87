"""Attack: make the host open a device through a file the host's scan reads.

Before each run (and after, for placeholders) ringfence reads files inside the writable roots on
the host, unsandboxed: a ``.git`` file, a git directory's ``commondir``, git config (a nested
repository's, a submodule's, what config includes), a project's ``.ringfence.toml``. The
command writes those directories, so it can leave a link there to a device whose mere open
acts (a watchdog arms, a tape rewinds, a terminal becomes the controlling one) or to a FIFO
(opening it blocks). The host must skip what is not a regular file without opening it.

Every target here is a node the test creates outside the workspace: a FIFO, and as root a
character device node (1, 3: the same device as /dev/null, so an open does no harm) made with
mknod. An inotify watch for IN_OPEN on it reports any successful open(2), by whichever link;
the control opens it through the planted link and sees the report. The sandboxed command
plants the links, as an attack would, and a later ``ringfence run`` scans them.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import IS_ROOT, World

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify and bubblewrap")

if sys.platform == "linux":
    from tests.inotify import OpenWatch


def _targets(world: World) -> list[Path]:
    fifo = world.outside / "fifo"
    os.mkfifo(fifo)
    out = [fifo]
    if IS_ROOT:
        dev = world.outside / "device"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        out.append(dev)
    return out


@pytest.fixture(params=["fifo", "device"])
def target(request: pytest.FixtureRequest, world: World) -> Iterator[Path]:
    """The node the planted links name (a device node only as root: mknod needs it)."""
    if request.param == "device" and not IS_ROOT:
        pytest.skip("a device node can only be made by root (mknod needs CAP_MKNOD)")
    found = {p.name: p for p in _targets(world)}
    yield found[request.param]


def _control_sees_open(watch: OpenWatch, link: Path) -> None:
    """The watch reports an open made through the planted link (the attack would work on a
    host that opened it): opened without blocking, as a careless reader would."""
    assert watch.opened(wait=0) == 0
    fd = os.open(link, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    os.close(fd)
    assert watch.opened() >= 1, "the inotify watch did not report an open"


def _plant_then_scan(world: World, target: Path, script: str, links: list[str],
                     scan_cwd: Path | None = None) -> None:
    """The sandboxed command runs ``script`` (which makes the directories) and links each of
    ``links`` (relative to the workspace) to ``target``; then a later run scans them: no open
    of the target may be reported. Then the control."""
    plant = script + "".join(
        f"\nln -sfn {shlex.quote(str(target))} {shlex.quote(link)}" for link in links)
    result = world.sandbox(plant)
    assert result.returncode == 0, result.stderr
    for link in links:
        assert os.path.islink(world.workspace / link), f"{link} was not planted"
    with OpenWatch(target) as watch:
        later = world.sandbox("true", cwd=scan_cwd, timeout=30)
        opens = watch.opened()
        assert opens == 0, f"the host opened {target.name} through {links} ({later.stderr})"
        _control_sees_open(watch, world.workspace / links[0])


@pytest.mark.escape
def test_commondir_of_a_nested_gitdir(world: World, target: Path) -> None:
    """``pkg/.git`` (a file: ``gitdir: evil``) makes ``pkg/evil`` a git directory, whose
    ``commondir`` the scan reads (``plan._common_dir``): a link there to the device."""
    _plant_then_scan(world, target, "mkdir -p pkg/evil && echo 'gitdir: evil' > pkg/.git "
                     "&& echo 'ref: refs/heads/main' > pkg/evil/HEAD",
                     ["pkg/evil/commondir"])


@pytest.mark.escape
def test_gitdir_file_of_a_subdirectory(world: World, target: Path) -> None:
    """``pkg/.git`` itself a link to the device: the scan reads ``.git`` files for the
    directory they point at (``plan._read_gitdir``). Guarded twice: the scan reads only a
    ``.git`` that is a file by ``lstat``, and the read opens only a regular file."""
    _plant_then_scan(world, target, "mkdir -p pkg", ["pkg/.git"])


@pytest.mark.escape
def test_config_of_a_nested_repository(world: World, target: Path) -> None:
    """A repository one level down (``pkg/.git`` a directory the command made) with
    ``config`` and ``config.worktree`` links to the device: the scan reads both for what they
    name (``_gitconfig.named_paths``)."""
    _plant_then_scan(world, target, "mkdir -p pkg/.git && echo 'ref: refs/heads/main' > "
                     "pkg/.git/HEAD", ["pkg/.git/config", "pkg/.git/config.worktree"])


@pytest.mark.escape
def test_file_a_nested_config_includes(world: World, target: Path) -> None:
    """The nested repository's config includes ``../inc`` (``include.path``), a link to the
    device: the scan follows includes (``_gitconfig.named_paths``)."""
    _plant_then_scan(world, target, "mkdir -p pkg/.git && echo 'ref: refs/heads/main' > "
                     "pkg/.git/HEAD && printf '[include]\\n\\tpath = ../inc\\n' > "
                     "pkg/.git/config", ["pkg/inc"])


@pytest.mark.escape
def test_config_and_commondir_of_a_submodule_gitdir(world: World, target: Path) -> None:
    """Inside the workspace's own repository the command makes ``.git/modules/m`` look like a
    submodule's git directory, with ``config`` and ``commondir`` links to the device: the scan
    reads a submodule's config (``core.worktree``, nested modules) and its commondir."""
    world.git_init()
    _plant_then_scan(world, target, "mkdir -p .git/modules/m && echo 'ref: refs/heads/main'"
                     " > .git/modules/m/HEAD",
                     [".git/modules/m/config", ".git/modules/m/commondir"])


@pytest.mark.escape
def test_commondir_of_a_linked_worktree(world: World, target: Path) -> None:
    """``.git/worktrees/w/commondir`` a link to the device: the scan reads each linked
    worktree's commondir."""
    world.git_init()
    _plant_then_scan(world, target, "mkdir -p .git/worktrees/w", [".git/worktrees/w/commondir"])


@pytest.mark.escape
def test_project_policy_of_a_subdirectory(world: World, target: Path) -> None:
    """``pkg/.ringfence.toml`` a link to the device; the next run starts in ``pkg`` (the
    workspace is the current directory), so ringfence reads it as the project's policy. The
    run is refused (not a regular file), and the device never opened."""
    _plant_then_scan(world, target, "mkdir -p pkg", ["pkg/.ringfence.toml"],
                     scan_cwd=world.workspace / "pkg")
    result = world.sandbox("true", cwd=world.workspace / "pkg")
    assert result.returncode != 0 and "regular file" in result.stderr, result.stderr


FLIP = """
import os, sys, time
link, target, regular = sys.argv[1:4]
gitdir = os.path.dirname(link)
os.makedirs(gitdir)
open(os.path.join(gitdir, "HEAD"), "w").write("ref: refs/heads/main\\n")
open(os.path.join(os.path.dirname(gitdir), ".git"), "w").write("gitdir: evil\\n")
open(regular, "w").write("gitdir: elsewhere\\n")
end = time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    for to in (target, regular):
        os.symlink(to, link + ".new")
        os.rename(link + ".new", link)
"""


@pytest.mark.escape
def test_a_racing_command_cannot_swap_the_device_in(world: World, target: Path) -> None:
    """A command still running (a second run, a session's command) makes ``pkg/.git`` point
    at ``pkg/evil`` and swaps ``pkg/evil/commondir`` between a link to a regular file and a
    link to the device, as fast as it can, while the host scans: checking the kind by name
    and then opening the name would open the device whenever the swap lands between the two
    (see ``ringfence._safeopen``). The host's scan (``find_protected``, in this process) runs
    over and over meanwhile."""
    from ringfence.plan import find_protected
    from ringfence.policy.model import DEFAULT_PROTECTED

    pkg = world.workspace / "pkg"  # made by the command (what its own run saw protects)
    link = pkg / "evil" / "commondir"
    seconds = 3.0
    command = [os.path.realpath(sys.executable), "-c", FLIP, str(link), str(target),
               str(pkg / "evil" / "regular"), str(seconds)]
    flipper = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "run", "--", *command],
        cwd=world.workspace, env=dict(world.env), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.islink(link):
            assert flipper.poll() is None, f"the command failed: {flipper.communicate()[1]}"
            assert time.monotonic() < deadline, "the command never started swapping"
            time.sleep(0.01)
        scans = 0
        with OpenWatch(target) as watch:
            while flipper.poll() is None:
                find_protected(str(world.workspace), DEFAULT_PROTECTED)
                scans += 1
            assert watch.opened() == 0, f"the host opened the device (in {scans} scans)"
    finally:
        flipper.kill()
        flipper.wait()
    assert scans > 100, f"only {scans} scans overlapped the swapping: no race was tried"
