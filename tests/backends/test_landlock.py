"""Landlock: the pure rule planner (a made-up filesystem) and the fallback launcher on the real
kernel (skipped where Landlock is unavailable).

The kernel tests aim only at directories, files, sockets and processes the test creates (the
``world`` fixture's fake home, workspace and ``outside`` directory, a listener on 127.0.0.1, a
``sleep``). Every escape test runs twice: with its guard, where the action must fail, and with
that one guard taken out of the spec, where the same action must succeed, so a test cannot pass
for another reason. Root bypasses file permissions but not Landlock, so they pass as root and as
an ordinary user.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import World

from ringfence.backends import _landlock as ll
from ringfence.backends._landlock import (
    FILE_RIGHTS,
    FS_IOCTL_DEV,
    FS_MAKE_BLOCK,
    FS_MAKE_CHAR,
    FS_MAKE_REG,
    FS_MAKE_SYM,
    FS_READ_DIR,
    FS_READ_FILE,
    FS_REFER,
    FS_TRUNCATE,
    FS_WRITE_FILE,
    READ,
    LandlockPlan,
    plan_rules,
    write_rights,
)
from ringfence.errors import UnavailableError

ABI = 7
WRITE = write_rights(ABI)
CHANGE = WRITE & ~READ  # every right that creates, removes, renames or writes


# ---------------------------------------------------------------------------------------------
# A made-up filesystem for the planner.

class FakeFS:
    """Directories, files and symbolic links (absolute targets) by path; ``/`` always exists."""

    def __init__(self, dirs: tuple[str, ...] = (), files: tuple[str, ...] = (),
                 links: dict[str, str] | None = None, unreadable: tuple[str, ...] = ()) -> None:
        self.kind: dict[str, str] = {"/": "dir"}
        self.links = dict(links or {})
        self.unreadable = set(unreadable)
        self.listed: list[str] = []
        for path in dirs:
            self._add(path, "dir")
        for path in files:
            self._add(path, "file")
        for path in self.links:
            self._add(path, "link")

    def _add(self, path: str, kind: str) -> None:
        parent = os.path.dirname(path)
        while parent not in self.kind:
            self.kind[parent] = "dir"
            parent = os.path.dirname(parent)
        parent = os.path.dirname(path)
        self.kind.setdefault(path, kind)

    def exists(self, path: str) -> bool:
        return path in self.kind

    def isdir(self, path: str) -> bool:
        return self.kind.get(path) == "dir"

    def islink(self, path: str) -> bool:
        return self.kind.get(path) == "link"

    def listdir(self, path: str) -> list[str]:
        self.listed.append(path)
        if path in self.unreadable:
            raise PermissionError(13, "Permission denied", path)
        prefix = path.rstrip("/") + "/"
        return [p[len(prefix):] for p in self.kind
                if p.startswith(prefix) and p != "/" and "/" not in p[len(prefix):]]

    def realpath(self, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        done = "/"
        for _ in range(40):
            if not parts:
                return done
            candidate = os.path.join(done, parts.pop(0))
            if candidate in self.links:
                parts = [p for p in self.links[candidate].split("/") if p] + parts
                done = "/"
            else:
                done = candidate
        raise AssertionError("symlink loop")

    def plan(self, **kw: Any) -> LandlockPlan:
        kw.setdefault("read_roots", ["/"])
        kw.setdefault("write_roots", [])
        kw.setdefault("deny_read", [])
        kw.setdefault("protected", [])
        kw.setdefault("abi", ABI)
        return plan_rules(exists=self.exists, listdir=self.listdir, isdir=self.isdir,
                          islink=self.islink, realpath=self.realpath, **kw)


def granted(plan: LandlockPlan, path: str, *, file: bool = False) -> int:
    """What Landlock would allow on ``path``: the union of the rules on it and its ancestors
    (only the file rights of that, for a ``file``)."""
    rights = 0
    for rule, value in plan.rules:
        if path == rule or path.startswith(rule.rstrip("/") + "/"):
            rights |= value
    return rights & FILE_RIGHTS if file else rights


HOME = FakeFS(
    dirs=("/etc", "/usr/bin", "/home/u/.ssh", "/home/u/project/src", "/home/u/.config/gh",
          "/home/other", "/data/aws"),
    files=("/home/u/.ssh/id_ed25519", "/home/u/.netrc", "/home/u/.bashrc", "/etc/passwd",
           "/data/aws/credentials"),
    links={"/bin": "/usr/bin", "/home/u/.aws": "/data/aws"},
)


# ---------------------------------------------------------------------------------------------
# Deny-read.

def test_deny_read_splits_the_readable_root_along_the_path() -> None:
    fs = HOME
    plan = fs.plan(deny_read=["/home/u/.ssh"])
    rules = plan.rights()
    # the ancestors of the denied directory get no rule at all: any read right on them would
    # reach .ssh too (read_dir would list it)
    for ancestor in ("/", "/home", "/home/u"):
        assert ancestor not in rules
    assert granted(plan, "/home/u/.ssh") == 0
    assert granted(plan, "/home/u/.ssh/id_ed25519") == 0
    # every sibling along the way is readable as a whole
    for sibling in ("/etc", "/usr", "/data", "/home/other", "/home/u/project", "/home/u/.config"):
        assert rules[sibling] == READ, sibling
    assert rules["/home/u/.bashrc"] == READ & FILE_RIGHTS  # a file: file rights only
    assert granted(plan, "/home/u/project/src/x.py") == READ
    assert "/bin" not in rules  # a symlink: the rule would land on /usr/bin, which has its own
    assert any("cannot be listed" in s and "/home/u" in s for s in plan.stricter)


def test_deny_read_cost_is_one_listing_per_ancestor() -> None:
    fs = FakeFS(dirs=("/a/b/c/secret", "/a/b/c/d", "/a/x", "/y"))
    fs.plan(deny_read=["/a/b/c/secret"], hidden=())
    assert sorted(fs.listed) == ["/", "/a", "/a/b", "/a/b/c"]


def test_missing_deny_read_path_needs_nothing() -> None:
    plan = HOME.plan(deny_read=["/home/u/.gnupg"])
    assert plan.rules == (("/", READ),)


def test_deny_read_file_leaves_the_parent_listable() -> None:
    plan = HOME.plan(deny_read=["/home/u/.netrc"])
    assert granted(plan, "/home/u/.netrc") & (FS_READ_FILE | ll.FS_EXECUTE) == 0
    # listing ~ shows the name (as the bubblewrap mode's /dev/null bind does), reading it fails
    assert granted(plan, "/home/u") == FS_READ_DIR
    assert plan.rights()["/"] == FS_READ_DIR  # only files are denied below: / is listable
    assert granted(plan, "/home/u/.bashrc", file=True) == READ & FILE_RIGHTS
    assert granted(plan, "/home/u/project") == READ


def test_deny_read_through_a_symlink_denies_the_target() -> None:
    plan = HOME.plan(deny_read=["/home/u/.aws"])
    assert granted(plan, "/data/aws/credentials") == 0
    assert granted(plan, "/data/aws") == 0
    assert "/home/u/.aws" not in plan.rights()
    assert granted(plan, "/home/u/.ssh/id_ed25519") == READ  # not denied here


def test_unreadable_directory_on_the_way_is_still_walked() -> None:
    fs = FakeFS(dirs=("/home/u/.ssh", "/home/u/project", "/home/v"), unreadable=("/home",))
    plan = fs.plan(deny_read=["/home/u/.ssh"], hidden=())
    assert granted(plan, "/home/u/project") == READ
    assert granted(plan, "/home/u/.ssh") == 0
    assert granted(plan, "/home/v") == 0  # unknown name: unreachable, fail closed
    assert any("could not list /home" in s for s in plan.stricter)


# ---------------------------------------------------------------------------------------------
# Writable roots and protected paths.

GIT = FakeFS(
    dirs=("/w/src", "/w/.git/hooks", "/w/.git/objects/ab", "/w/.git/refs/heads", "/elsewhere"),
    files=("/w/README", "/w/.git/config", "/w/.git/HEAD", "/w/.git/hooks/pre-commit.sample"),
)
PROTECTED = ["/w/.git/hooks", "/w/.git/config", "/w/.envrc", "/w/.vscode"]


def test_protected_paths_split_the_writable_root() -> None:
    plan = GIT.plan(write_roots=["/w"], protected=PROTECTED)
    rules = plan.rights()
    # every child of /w but .git, and of /w/.git but hooks and config: full write
    assert rules["/w/src"] == WRITE
    assert rules["/w/README"] == WRITE & FILE_RIGHTS
    assert rules["/w/.git/objects"] == WRITE
    assert rules["/w/.git/refs"] == WRITE
    assert rules["/w/.git/HEAD"] == WRITE & FILE_RIGHTS
    # the protected paths and the directories above them: read only, so no hook can be written,
    # linked or created, config not rewritten, hooks not renamed away
    for path in ("/w", "/w/.git", "/w/.git/hooks", "/w/.git/hooks/pre-commit",
                 "/w/.git/hooks/pre-commit.sample", "/w/.git/config"):
        assert granted(plan, path) & CHANGE == 0, path
        assert granted(plan, path) & FS_READ_FILE
    # and the missing protected names cannot be created: no make right on /w
    assert granted(plan, "/w") & (FS_MAKE_REG | FS_MAKE_SYM) == 0
    assert any("/w, /w/.git" in s and "nothing can be created" in s for s in plan.stricter)


def test_write_root_without_protected_paths_is_one_rule() -> None:
    plan = GIT.plan(read_roots=[], write_roots=["/w/src"], protected=PROTECTED)
    assert plan.rules == (("/w/src", WRITE),)


def test_write_root_inside_deny_read_gets_nothing() -> None:
    plan = GIT.plan(read_roots=[], write_roots=["/w/src"], deny_read=["/w"])
    assert plan.rules == ()
    assert any("deny wins" in s for s in plan.stricter)


def test_deny_read_inside_write_root() -> None:
    fs = FakeFS(dirs=("/w/secret", "/w/src"), files=("/w/.env", "/w/secret/k"))
    plan = fs.plan(read_roots=[], write_roots=["/w"], deny_read=["/w/secret", "/w/.env"])
    assert granted(plan, "/w/secret/k") == 0
    assert granted(plan, "/w/.env") & (FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE) == 0
    assert granted(plan, "/w") == 0  # a denied directory below: not even listing
    assert granted(plan, "/w/src") == WRITE


def test_write_root_inside_protected_path_is_read_only() -> None:
    plan = GIT.plan(read_roots=[], write_roots=["/w/.git/hooks"], protected=PROTECTED)
    assert plan.rules == (("/w/.git/hooks", READ),)
    fs = FakeFS(dirs=("/w/.vscode/inner",))
    plan = fs.plan(read_roots=[], write_roots=["/w/.vscode/inner"], protected=["/w/.vscode"])
    assert plan.rules == (("/w/.vscode/inner", READ),)


def test_symlinked_write_root_is_resolved() -> None:
    fs = FakeFS(dirs=("/real/w/src",), links={"/ws": "/real/w"})
    plan = fs.plan(read_roots=[], write_roots=["/ws"], protected=["/ws/.envrc"])
    assert plan.rights() == {"/real/w": READ, "/real/w/src": WRITE}


# ---------------------------------------------------------------------------------------------
# Hidden host directories, devices, terminals.

SYSTEM = FakeFS(
    dirs=("/usr/lib", "/tmp/other-user", "/tmp/rf-tmp", "/run/user/1000",
          "/run/current-system/sw", "/dev/pts", "/dev/shm"),
    files=("/dev/null", "/dev/zero", "/dev/urandom", "/dev/tty", "/dev/sda", "/dev/mem",
           "/dev/pts/3", "/dev/pts/4"),
    links={"/var/run": "/run"},
)


def test_host_tmp_run_and_dev_are_hidden_but_explicit_roots_inside_hold() -> None:
    plan = SYSTEM.plan(write_roots=["/tmp/rf-tmp"], terminals=["/dev/pts/3"])
    assert granted(plan, "/tmp/other-user") == 0
    assert granted(plan, "/run/user/1000") == 0
    assert granted(plan, "/tmp/rf-tmp/x") == WRITE
    assert granted(plan, "/run/current-system/sw") == READ  # NixOS keeps working
    assert granted(plan, "/usr/lib") == READ
    assert granted(plan, "/dev/null", file=True) == FS_READ_FILE | FS_WRITE_FILE
    assert granted(plan, "/dev/urandom", file=True) == FS_READ_FILE
    # the disk (a root caller could read it raw), memory, other terminals, /dev/shm: nothing
    for path in ("/dev/sda", "/dev/mem", "/dev/pts/4", "/dev/shm/x"):
        assert granted(plan, path, file=True) == 0, path
    assert granted(plan, "/dev/pts/3", file=True) == (
        FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV)
    assert granted(plan, "/dev/tty", file=True) & FS_IOCTL_DEV


def test_hidden_can_be_turned_off() -> None:
    plan = SYSTEM.plan(hidden=())
    assert granted(plan, "/tmp/other-user") == READ


# ---------------------------------------------------------------------------------------------
# ABI masking and what is reported.

@pytest.mark.parametrize("abi", [1, 2, 3, 4, 5, 6, 7])
def test_rights_follow_the_abi(abi: int) -> None:
    plan = GIT.plan(write_roots=["/w"], protected=PROTECTED, abi=abi)
    union = 0
    for _, rights in plan.rules:
        union |= rights
    assert union & ~ll.handled_fs(abi) == 0
    assert bool(union & FS_REFER) == (abi >= 2)
    assert bool(union & FS_TRUNCATE) == (abi >= 3)
    assert union & (FS_MAKE_CHAR | FS_MAKE_BLOCK) == 0  # never: device nodes in the workspace
    weaker = " ".join(plan.weaker)
    assert ("can be truncated" in weaker) == (abi < 3)
    assert ("TCP is not controlled" in weaker) == (abi < 4)
    assert ("signal your other processes" in weaker) == (abi < 6)
    assert "metadata is not controlled" in weaker


def test_abi_zero_plans_nothing() -> None:
    plan = GIT.plan(write_roots=["/w"], abi=0)
    assert plan.rules == ()
    assert plan.weaker


def test_relative_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="not absolute"):
        GIT.plan(write_roots=["w"])


def test_plan_is_immutable_and_comparable() -> None:
    a = GIT.plan(write_roots=["/w"], protected=PROTECTED)
    b = GIT.plan(write_roots=["/w"], protected=PROTECTED)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.rules = ()
    assert "LandlockPlan(rules=" in repr(a)


def test_module_import_is_cheap() -> None:
    src = str(Path(ll.__file__).resolve().parents[2])
    code = (f"import json, sys; sys.path.insert(0, {src!r}); before = set(sys.modules); "
            "import ringfence.backends._landlock; print(json.dumps(sorted(set(sys.modules) - "
            "before)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    loaded = set(json.loads(out))
    # os and stat (and what they import) and the package's error module, nothing else
    assert loaded <= {"ringfence", "ringfence.errors", "ringfence.backends",
                      "ringfence.backends._landlock", "__future__", "os", "os.path",
                      "posixpath", "genericpath", "stat", "_stat", "_collections_abc",
                      "abc", "_abc"}


# ---------------------------------------------------------------------------------------------
# Properties over random trees.

NAMES = st.sampled_from(["a", "b", ".git", "hooks", "s"])
TREES = st.lists(st.lists(NAMES, min_size=1, max_size=4), min_size=1, max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, data=st.data())
def test_planner_properties(tree: list[list[str]], data: st.DataObject) -> None:
    dirs = ["/r/" + "/".join(parts) for parts in tree]
    files = [d + "/f" for d in dirs[::2]]
    fs = FakeFS(dirs=tuple(dirs), files=tuple(files))
    nodes = sorted(p for p in fs.kind if p.startswith("/r/"))
    deny = data.draw(st.lists(st.sampled_from(nodes), max_size=2))
    missing = ["/r/.envrc", "/r/a/.git/hooks"]
    protected = data.draw(st.lists(st.sampled_from(nodes + missing), max_size=3))
    plan = fs.plan(write_roots=["/r"], deny_read=deny, protected=protected, hidden=())

    def under(path: str, roots: list[str]) -> bool:
        return any(path == r or path.startswith(r + "/") for r in roots)

    def above(path: str, roots: list[str]) -> bool:
        return any(r.startswith(path + "/") for r in roots)

    for rule, rights in plan.rules:
        assert not fs.islink(rule)
        if not fs.isdir(rule):
            assert rights & ~FILE_RIGHTS == 0
    for path in [*nodes, *missing, "/r"]:
        rights = granted(plan, path)
        if under(path, deny):
            # nothing; a denied file's directory may still be listable (read_dir is no right
            # on a file)
            assert rights & ~(0 if fs.isdir(path) else FS_READ_DIR) == 0, path
            assert granted(plan, path + "/x") & ~FS_READ_DIR == 0
        elif under(path, protected):
            assert rights & CHANGE == 0, path
            assert granted(plan, path + "/x") & CHANGE == 0
            if fs.exists(path) and not above(path, deny):
                assert rights & FS_READ_FILE, path
        elif above(path, deny + protected):
            assert rights & CHANGE == 0, path  # no create/remove/write could reach below
            if above(path, [d for d in deny if fs.isdir(d)]):
                assert rights & FS_READ_DIR == 0, path
        elif fs.isdir(path):
            assert rights == WRITE, path
        elif fs.exists(path):
            assert rights & FILE_RIGHTS == WRITE & FILE_RIGHTS, path


# ---------------------------------------------------------------------------------------------
# The launcher on the real kernel.

LAUNCHER = Path(ll.__file__).with_name("_fallback_exec.py")
KERNEL_ABI = ll.abi_version()
kernel = pytest.mark.skipif(KERNEL_ABI == 0, reason="Landlock is not available on this kernel")

PROBE = """\
import errno, os, signal, socket, sys
a = sys.argv[1:]
try:
    result = {stmt}
    print("OK", result if isinstance(result, (str, int)) else "")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
"""


class Box:
    """A world (fake home with secrets, workspace, outside) and a spec to run the launcher."""

    def __init__(self, world: World) -> None:
        self.world = world
        ws = world.workspace
        for d in ("src", ".git/hooks", ".git/objects", ".git/refs"):
            (ws / d).mkdir(parents=True, exist_ok=True)
        (ws / ".git" / "config").write_text("[core]\n")
        (world.outside / "dir").mkdir()
        self.landlock: dict[str, Any] = {
            # the test tree is named explicitly, so it stays readable wherever it sits (even
            # under a directory the fallback hides, such as /tmp)
            "read_roots": ["/", str(world.base)],
            "write_roots": [str(ws)],
            "deny_read": [str(world.home / ".ssh"), str(world.home / ".aws"),
                          str(world.home / ".netrc")],
            "protected": [str(ws / ".git" / "hooks"), str(ws / ".git" / "config"),
                          str(ws / ".envrc")],
            "block_tcp": True,
            "scope": True,
        }
        self.seccomp = {"block_inet": True, "block_unix": True}

    def spec(self, argv: list[str], **over: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "argv": argv,
            "cwd": str(self.world.workspace),
            "env": {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"},
            "rlimits": {},
            "landlock": dict(self.landlock),
            "seccomp": dict(self.seccomp),
        }
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(spec.get(key), dict):
                spec[key] = {**spec[key], **value}
            else:
                spec[key] = value
        return spec

    def launch(self, spec: dict[str, Any] | bytes, **popen: Any
               ) -> subprocess.CompletedProcess[str]:
        body = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
        r, w = os.pipe()
        os.write(w, body)
        os.close(w)
        try:
            return subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), str(r)],
                                  pass_fds=(r,), capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, **popen)
        finally:
            os.close(r)

    def probe(self, stmt: str, *args: object, **over: Any) -> str:
        """Run one Python statement inside; 'OK ...' or the errno name it failed with."""
        code = PROBE.format(stmt=stmt)
        result = self.launch(self.spec([sys.executable, "-I", "-S", "-c", code,
                                        *map(str, args)], **over))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture
def box(world: World) -> Iterator[Box]:
    yield Box(world)


def without(box: Box, key: str, value: object) -> dict[str, Any]:
    """Spec overrides that take one guard away."""
    return {"landlock": {key: value}}


@kernel
def test_write_root_is_writable(box: Box) -> None:
    target = box.world.workspace / "src" / "new.txt"
    assert box.probe("open(a[0], 'w').write('hello')", target) == "OK 5"
    assert target.read_text() == "hello"
    assert box.probe("os.mkdir(a[0]) or os.rename(a[0], a[1])", target.with_suffix(".d"),
                     target.with_suffix(".e")) == "OK"


@kernel
@pytest.mark.parametrize("guarded", [True, False])
def test_write_outside_fails(box: Box, guarded: bool) -> None:
    target = box.world.outside / "target.txt"
    over = {} if guarded else without(box, "write_roots",
                                      [str(box.world.workspace), str(box.world.outside)])
    result = box.probe("open(a[0], 'w').write('PWNED')", target, **over)
    assert result == ("EACCES" if guarded else "OK 5")
    assert target.read_text() == ("ORIGINAL\n" if guarded else "PWNED")


@kernel
@pytest.mark.parametrize("guarded", [True, False])
def test_deny_read_file_and_listing(box: Box, guarded: bool) -> None:
    ssh = box.world.home / ".ssh"
    over = {} if guarded else without(box, "deny_read", [])
    read = box.probe("open(a[0]).read().strip()", ssh / "id_ed25519", **over)
    listing = box.probe("','.join(os.listdir(a[0]))", ssh, **over)
    if guarded:
        assert (read, listing) == ("EACCES", "EACCES")
    else:
        assert (read, listing) == ("OK FAKE-PRIVATE-KEY", "OK id_ed25519")
    # a file on the deny list: unreadable, while its directory (the fake home) lists it
    netrc = box.probe("open(a[0]).read()[:7]", box.world.home / ".netrc", **over)
    assert netrc == ("EACCES" if guarded else "OK machine")


@kernel
@pytest.mark.parametrize("guarded", [True, False])
def test_symlink_in_write_root_cannot_write_outside(box: Box, guarded: bool) -> None:
    target = box.world.outside / "target.txt"
    link = box.world.workspace / "src" / "link"
    over = {} if guarded else without(box, "write_roots",
                                      [str(box.world.workspace), str(box.world.outside)])
    result = box.probe("os.symlink(a[0], a[1]) or open(a[1], 'w').write('PWNED')",
                       target, link, **over)
    assert result == ("EACCES" if guarded else "OK 5")
    assert link.is_symlink()  # the link itself was made: a symlink is only a name
    assert target.read_text() == ("ORIGINAL\n" if guarded else "PWNED")


@kernel
@pytest.mark.parametrize("guarded", [True, False])
def test_hard_link_to_outside_file_cannot_be_made(box: Box, guarded: bool) -> None:
    target = box.world.outside / "target.txt"
    link = box.world.workspace / "src" / "hard"
    over = {} if guarded else without(box, "write_roots",
                                      [str(box.world.workspace), str(box.world.outside)])
    if not guarded and KERNEL_ABI < 2:
        pytest.skip("Landlock ABI 1 refuses every link across directories, even between "
                    "writable ones")
    result = box.probe("os.link(a[0], a[1])", target, link, **over)
    # Landlock refuses linking (and renaming) a file into a place where it would gain rights:
    # EXDEV, as if the two directories were on different filesystems (refer right, ABI 2; ABI 1
    # refuses every link across directories the same way)
    assert result == ("EXDEV" if guarded else "OK")
    assert link.exists() is not guarded
    assert target.read_text() == "ORIGINAL\n"


@kernel
@pytest.mark.parametrize("guarded", [True, False])
def test_protected_dir_cannot_be_renamed_away(box: Box, guarded: bool) -> None:
    git = box.world.workspace / ".git"
    over = {} if guarded else without(box, "protected", [])
    result = box.probe("os.rename(a[0], a[1])", git / "hooks", git / "hooks.old", **over)
    assert result == ("EACCES" if guarded else "OK")
    assert (git / "hooks").is_dir() is guarded


@kernel
@pytest.mark.parametrize("guarded", [True, False])
def test_git_hook_protected_but_objects_writable(box: Box, guarded: bool) -> None:
    git = box.world.workspace / ".git"
    over = {} if guarded else without(box, "protected", [])
    hook = git / "hooks" / "pre-commit"
    assert box.probe("open(a[0], 'w').write('evil')", hook, **over) == (
        "EACCES" if guarded else "OK 4")
    assert hook.exists() is not guarded
    if not guarded:
        hook.unlink()
    # a symlink planted as the hook, and a new .envrc at the top: refused the same way
    assert box.probe("os.symlink('/bin/true', a[0])", hook, **over) == (
        "EACCES" if guarded else "OK")
    envrc = box.world.workspace / ".envrc"
    assert box.probe("open(a[0], 'w').write('x')", envrc, **over) == (
        "EACCES" if guarded else "OK 1")
    assert box.probe("open(a[0], 'a').write('x')", git / "config", **over) == (
        "EACCES" if guarded else "OK 1")
    obj = git / "objects" / "ab" / "cdef"
    assert box.probe("os.mkdir(os.path.dirname(a[0])) or open(a[0], 'w').write('blob')", obj,
                     **over) == "OK 4"
    assert obj.read_text() == "blob"


@kernel
@pytest.mark.skipif(KERNEL_ABI < 4, reason="TCP control needs Landlock ABI 4")
@pytest.mark.parametrize("guarded", [True, False])
def test_tcp_connect_refused(box: Box, guarded: bool) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # seccomp's no-inet rule off, so that only Landlock stands in the way
        over: dict[str, Any] = {"seccomp": {"block_inet": False, "block_unix": False}}
        if not guarded:
            over["landlock"] = {"block_tcp": False}
        result = box.probe("socket.create_connection(('127.0.0.1', int(a[0])), 5).close()",
                           port, **over)
    assert result == ("EACCES" if guarded else "OK")


@kernel
@pytest.mark.skipif(KERNEL_ABI < 6, reason="signal scoping needs Landlock ABI 6")
@pytest.mark.parametrize("guarded", [True, False])
def test_kill_outside_process_refused(box: Box, guarded: bool) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        over = {} if guarded else without(box, "scope", False)
        result = box.probe("os.kill(int(a[0]), signal.SIGTERM)", victim.pid, **over)
        assert result == ("EPERM" if guarded else "OK")
        if guarded:
            assert victim.poll() is None
        else:
            assert victim.wait(10) == -signal.SIGTERM
    finally:
        victim.kill()
        victim.wait()


@kernel
def test_command_runs_in_a_new_session_without_capabilities(box: Box) -> None:
    result = box.probe(
        "f'{os.getsid(0) == os.getpid()} ' + ' '.join(l.split()[1] for l in "
        "open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'CapAmb', 'NoNewPrivs'"
        ")))")
    assert result == "OK True 0000000000000000 0000000000000000 0000000000000000 1"
    if os.geteuid() == 0:  # only a caller holding CAP_SETPCAP can empty the bounding set
        assert box.probe("[l for l in open('/proc/self/status') if l.startswith('CapBnd')]"
                         "[0].split()[1]") == "OK 0000000000000000"


@kernel
def test_rlimits_and_devices(box: Box) -> None:
    result = box.probe(
        "str(__import__('resource').getrlimit(__import__('resource').RLIMIT_NOFILE)) + "
        "str(open('/dev/null', 'w').write('x')) + str(len(open('/dev/urandom', 'rb').read(4)))",
        rlimits={"RLIMIT_NOFILE": [64, 128]})
    assert result == "OK (64, 128)14"


@kernel
def test_works_when_started_as_a_process_group_leader(box: Box) -> None:
    # setsid() would fail for a group leader: the command, a child of the launcher, never is one
    result = box.launch(box.spec(["/bin/sh", "-c", "exit 7"]), start_new_session=True)
    assert (result.returncode, result.stderr) == (7, "")


@kernel
def test_exit_127_command_not_found(box: Box) -> None:
    result = box.launch(box.spec(["ringfence-no-such-command"]))
    assert result.returncode == 127
    assert result.stderr == "ringfence: ringfence-no-such-command: command not found\n"


@kernel
def test_exit_126_not_executable(box: Box) -> None:
    script = box.world.workspace / "src" / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = box.launch(box.spec([str(script)]))
    assert result.returncode == 126
    assert result.stderr == f"ringfence: {script}: permission denied\n"


@kernel
@pytest.mark.parametrize("spec, message", [
    (b"{not json", "the sandbox spec is not valid JSON"),
    ({"argv": [], "cwd": "/", "env": {}}, "argv must be a non-empty list"),
    ({"argv": ["true"], "cwd": "/nonexistent-ringfence", "env": {}},
     "cannot enter the working directory /nonexistent-ringfence"),
    ({"argv": ["true"], "cwd": "/", "env": {}, "rlimits": {"RLIMIT_BOGUS": [1, 1]}},
     "unknown resource limit 'RLIMIT_BOGUS'"),
    ({"argv": ["true"], "cwd": "/", "env": {}, "landlock": {"write_roots": ["relative"]}},
     "Landlock path 'relative' is not absolute"),
])
def test_exit_125_setup_errors(box: Box, spec: dict[str, Any] | bytes, message: str) -> None:
    result = box.launch(spec)
    assert result.returncode == 125
    assert result.stderr.startswith("ringfence: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@kernel
def test_apply_errors_are_one_line() -> None:
    with pytest.raises(UnavailableError, match="ABI 0"):
        ll.apply(LandlockPlan([("/", READ)]), abi=0, block_tcp=True, scope=True)
    # in a child, since a successful apply would confine the test run itself
    src = str(Path(ll.__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {src!r}); from ringfence.backends import _landlock"
            " as ll\ntry:\n    ll.apply(ll.LandlockPlan([('/' + 'x' * 5000, ll.READ)]), "
            "abi=ll.abi_version(), block_tcp=True, scope=True)\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, exc)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("SandboxError cannot open /xxx")
    assert "ENAMETOOLONG" in out and out.count("\n") == 1
