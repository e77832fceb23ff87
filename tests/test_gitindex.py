"""``ringfence._gitindex``: read and rewrite git's index without git, checked against git.

Every repository here is made by the real git under ``tmp_path``; what ``read()`` reports is
compared with ``git ls-files``, and an index ``drop()`` wrote is read back by git. git runs
with no system or global configuration (``GIT_CONFIG_NOSYSTEM``, ``HOME`` in ``tmp_path``), no
hooks and no fsmonitor, except in the escape tests, which need git's own behaviour.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence import _gitindex
from ringfence._gitindex import Index, drop, gitlinks, read, read_split

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SAFE = ("-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null")


class Repo:
    """A repository made by git under ``tmp_path``."""

    def __init__(self, path: Path, home: Path, object_format: str = "sha1") -> None:
        self.path = path
        self.env = {
            "PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        }
        path.mkdir(parents=True, exist_ok=True)
        self.git("-c", "init.defaultBranch=main", "init", "-q",
                 f"--object-format={object_format}")
        self.oid_len = 32 if object_format == "sha256" else 20

    @property
    def gitdir(self) -> str:
        return str(self.path / ".git")

    @property
    def index(self) -> str:
        return str(self.path / ".git" / "index")

    def run(self, *args: str, safe: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *(SAFE if safe else ()), *args], cwd=self.path,
                              env=self.env, capture_output=True, timeout=120)

    def git(self, *args: str) -> bytes:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stderr.decode(errors="replace"))
        return done.stdout

    def write(self, name: str, text: str = "x\n") -> None:
        where = self.path / name
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(text)

    def gitlink(self, path: str) -> None:
        oid = self.git("rev-parse", "HEAD").decode().strip()
        self.git("update-index", "--add", "--cacheinfo", f"160000,{oid},{path}")

    def ls_gitlinks(self) -> tuple[str, ...]:
        """git's own answer: mode & S_IFMT == S_IFGITLINK, as git tests it."""
        out = []
        for record in self.git("ls-files", "-s", "-z").split(b"\0")[:-1]:
            info, name = record.split(b"\t", 1)
            if int(info.split()[0], 8) & 0o170000 == 0o160000:
                out.append(os.fsdecode(name))
        return tuple(out)

    def ls_hidden(self) -> tuple[str, ...]:
        """Assume-unchanged (a lower-case tag) or skip-worktree (``S``)."""
        out = []
        for record in self.git("ls-files", "-v", "-z").split(b"\0")[:-1]:
            tag, name = record.split(b" ", 1)
            if tag == b"S" or tag.islower():
                out.append(os.fsdecode(name))
        return tuple(out)

    def debug(self) -> dict[bytes, bytes]:
        """``git ls-files -s --debug``: each entry's line and stat data, by path."""
        pieces = self.git("ls-files", "-s", "--debug", "-z").split(b"\0")
        heads = [pieces[0]]
        details = []
        for piece in pieces[1:]:
            cut = 0
            for _ in range(5):  # ctime, mtime, dev and ino, uid and gid, size and flags
                cut = piece.index(b"\n", cut) + 1
            details.append(piece[:cut])
            heads.append(piece[cut:])
        return {head.split(b"\t", 1)[1]: head + b"\n" + detail
                for head, detail in zip(heads, details, strict=False)}


def make(tmp_path: Path, version: int, object_format: str = "sha1", name: str = "r") -> Repo:
    """Files (non-ASCII names, a newline in one, an executable, a symbolic link), gitlinks
    among them, an assume-unchanged file; from v3 on a skip-worktree file and an
    intent-to-add one (extended flags)."""
    repo = Repo(tmp_path / name, tmp_path, object_format)
    for path in ("a.txt", "dir/b.txt", "lib/a.txt", "lib/y.txt", "ünï/cödé.txt",
                 "new\nline.txt", "tab\tname", "z.txt"):
        repo.write(path)
    (repo.path / "run.sh").write_text("#!/bin/sh\n")
    (repo.path / "run.sh").chmod(0o755)
    (repo.path / "link").symlink_to("a.txt")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "files")
    for path in ("lib/x", "vendor/ünï", "weird\nsub"):
        repo.gitlink(path)
    repo.git("update-index", "--assume-unchanged", "a.txt")
    if version >= 3:
        repo.git("update-index", "--skip-worktree", "dir/b.txt")
        repo.write("added.txt")
        repo.git("add", "-N", "added.txt")
    repo.git("update-index", "--index-version", str(version))
    return repo


def header_version(path: str) -> int:
    return int.from_bytes(Path(path).read_bytes()[4:8], "big")


MATRIX = [("sha1", 2), ("sha1", 3), ("sha1", 4), ("sha256", 2), ("sha256", 3),
          ("sha256", 4)]


@pytest.mark.parametrize(("object_format", "version"), MATRIX)
def test_read_agrees_with_git(tmp_path: Path, object_format: str, version: int) -> None:
    repo = make(tmp_path, version, object_format)
    assert header_version(repo.index) == version
    got = read(repo.index)
    assert isinstance(got, Index)
    assert (got.version, got.oid_len) == (version, repo.oid_len)
    assert got.gitlinks == repo.ls_gitlinks() == ("lib/x", "vendor/ünï", "weird\nsub")
    assert got.hidden == repo.ls_hidden()
    assert ("a.txt" in got.hidden) and (("dir/b.txt" in got.hidden) == (version >= 3))
    assert gitlinks(repo.index) == got.gitlinks
    other = 20 if repo.oid_len == 32 else 32
    assert read(repo.index, repo.oid_len) is not None
    assert read(repo.index, other) is None
    assert gitlinks(repo.index, other) is None


def test_no_gitlink_fast_path(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r", tmp_path)
    repo.write("a.txt")
    repo.git("add", "a.txt")
    assert gitlinks(repo.index) == ()
    got = read(repo.index)
    assert got is not None and got.gitlinks == () and got.hidden == ()


@pytest.mark.parametrize("version", [2, 4])
def test_long_paths(tmp_path: Path, version: int) -> None:
    """Names of 4095 bytes and more: the name-length field says 0xFFF, the NUL ends them."""
    repo = Repo(tmp_path / "r", tmp_path)
    repo.write("a.txt")
    repo.git("add", "a.txt")
    repo.git("commit", "-q", "-m", "a")
    blob = repo.git("rev-parse", "HEAD:a.txt").decode().strip()
    deep = "/".join(["d" * 200] * 25)
    assert len(deep) > 0xFFF
    for path in (f"{deep}/a", f"{deep}/b", "e" * 0xFFE, "e" * 0xFFF + "f"):
        repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    repo.gitlink(f"{deep}/g")
    repo.gitlink("e" * 0xFFF)
    repo.git("update-index", "--assume-unchanged", "--", f"{deep}/b")
    repo.git("update-index", "--index-version", str(version))
    got = read(repo.index)
    assert got is not None
    assert got.gitlinks == repo.ls_gitlinks() == (f"{deep}/g", "e" * 0xFFF)
    assert got.hidden == repo.ls_hidden() == (f"{deep}/b",)
    before = repo.debug()
    assert drop(repo.gitdir, [f"{deep}/g", "e" * 0xFFF])
    after = repo.debug()
    del before[f"{deep}/g".encode()], before[b"e" * 0xFFF]
    assert after == before
    assert header_version(repo.index) == version


@pytest.mark.parametrize(("object_format", "version"), MATRIX)
def test_drop_leaves_the_rest_as_it_was(tmp_path: Path, object_format: str,
                                        version: int) -> None:
    """What git reads back is the index before, without the gitlinks removed: every other
    entry with its stat data and flags; v4's prefix compression re-done where an entry's
    neighbour went (``lib/y.txt`` was written against ``lib/x``)."""
    repo = make(tmp_path, version, object_format)
    before = repo.debug()
    mtime = os.stat(repo.index).st_mtime_ns
    # a regular file named too, and a path not in the index: untouched
    assert drop(repo.gitdir, ["lib/x", "weird\nsub", "a.txt", "not/there"])
    assert not os.path.exists(repo.index + ".lock")
    del before[b"lib/x"], before[b"weird\nsub"]
    assert repo.debug() == before
    got = read(repo.index)
    assert got is not None and got.version == version == header_version(repo.index)
    assert got.gitlinks == repo.ls_gitlinks() == ("vendor/ünï",)
    assert got.hidden == repo.ls_hidden()
    assert os.stat(repo.index).st_mtime_ns == mtime  # racy-entry checks stay as they were
    assert repo.run("status", "--porcelain").returncode == 0
    assert repo.run("diff", "--cached", "--stat").returncode == 0
    assert repo.run("fsck", "--no-progress").returncode == 0
    assert repo.run("commit", "-q", "-m", "after").returncode == 0


@pytest.mark.parametrize("version", [2, 3, 4])
def test_drop_every_gitlink(tmp_path: Path, version: int) -> None:
    """Neighbours too: ``lib/x`` and ``lib/x0`` go, ``lib/y.txt`` is written against
    ``lib/a.txt`` (v4)."""
    repo = make(tmp_path, version)
    repo.gitlink("lib/x0")
    before = repo.debug()
    assert drop(repo.gitdir, repo.ls_gitlinks())
    for name in (b"lib/x", b"lib/x0", "vendor/ünï".encode(), b"weird\nsub"):
        del before[name]
    assert repo.debug() == before
    assert repo.ls_gitlinks() == ()
    assert gitlinks(repo.index) == ()


def test_drop_without_a_named_gitlink_writes_nothing(tmp_path: Path) -> None:
    repo = make(tmp_path, 3)
    data = Path(repo.index).read_bytes()
    ino = os.stat(repo.index).st_ino
    assert not drop(repo.gitdir, ["a.txt", "lib", "lib/x/", "nothing"])
    assert not drop(repo.gitdir, [])
    assert Path(repo.index).read_bytes() == data and os.stat(repo.index).st_ino == ino
    assert not os.path.exists(repo.index + ".lock")


def test_drop_while_git_holds_the_lock(tmp_path: Path) -> None:
    repo = make(tmp_path, 2)
    data = Path(repo.index).read_bytes()
    lock = Path(repo.index + ".lock")
    lock.write_bytes(b"git is writing")
    assert not drop(repo.gitdir, ["lib/x"])
    assert Path(repo.index).read_bytes() == data
    assert lock.read_bytes() == b"git is writing"


def test_drop_refuses_a_lock_that_is_a_link(tmp_path: Path) -> None:
    """A dangling symbolic link at ``index.lock`` is not followed to create its target."""
    repo = make(tmp_path, 2)
    target = tmp_path / "elsewhere"
    os.symlink(target, repo.index + ".lock")
    assert not drop(repo.gitdir, ["lib/x"])
    assert not target.exists()
    assert os.path.islink(repo.index + ".lock")


def test_drop_refuses_a_bad_checksum(tmp_path: Path) -> None:
    repo = make(tmp_path, 2)
    data = bytearray(Path(repo.index).read_bytes())
    data[-1] ^= 1
    Path(repo.index).write_bytes(bytes(data))
    assert not drop(repo.gitdir, ["lib/x"])
    assert Path(repo.index).read_bytes() == data
    # a changed byte in an entry's stat data: still an index to read(), not to drop()
    data[-1] ^= 1
    data[12 + 4] ^= 1
    Path(repo.index).write_bytes(bytes(data))
    assert read(repo.index) is not None
    assert not drop(repo.gitdir, ["lib/x"])
    assert Path(repo.index).read_bytes() == data
    assert not os.path.exists(repo.index + ".lock")


@pytest.mark.parametrize("version", [2, 4])
def test_drop_an_index_without_hash(tmp_path: Path, version: int) -> None:
    """All zeros for the trailing hash (``index.skipHash``): git reads it; so do we, and
    write a real hash."""
    repo = make(tmp_path, version)
    data = bytearray(Path(repo.index).read_bytes())
    data[-20:] = bytes(20)
    Path(repo.index).write_bytes(bytes(data))
    before = repo.debug()
    assert drop(repo.gitdir, ["lib/x"])
    del before[b"lib/x"]
    assert repo.debug() == before
    assert Path(repo.index).read_bytes()[-20:] != bytes(20)


def test_split_index_is_left_alone(tmp_path: Path) -> None:
    """A split index keeps entries in ``sharedindex.*``: not ours to rewrite, nor to read."""
    repo = make(tmp_path, 2)
    repo.git("update-index", "--split-index")
    data = Path(repo.index).read_bytes()
    assert b"link" in data and b"\x00\x00\xe0\x00" not in data  # the gitlinks are shared
    assert read(repo.index) is None
    assert gitlinks(repo.index) is None
    repo.gitlink("lib/late")
    data = Path(repo.index).read_bytes()
    assert read(repo.index) is None
    assert gitlinks(repo.index) is None
    assert not drop(repo.gitdir, ["lib/x", "lib/late"])
    assert Path(repo.index).read_bytes() == data
    assert not os.path.exists(repo.index + ".lock")


@pytest.mark.parametrize(("object_format", "version"), [("sha1", 2), ("sha1", 4),
                                                      ("sha256", 3)])
def test_read_split_agrees_with_git(tmp_path: Path, object_format: str, version: int) -> None:
    """A split index: gitlinks and marks in the shared part, a gitlink added after the split
    (in .git/index, named), one bumped to another commit and a file newly marked (both
    replacing a shared entry: no name of their own, the link extension's bitmap says
    which), one deleted (still counted: more than git sees, never less)."""
    repo = make(tmp_path, version, object_format)
    oid_len = repo.oid_len
    repo.git("update-index", "--split-index")
    assert read(repo.index, oid_len) is None
    split = read_split(repo.index, oid_len)
    assert split is not None
    assert set(split.gitlinks) == set(repo.ls_gitlinks())
    assert set(split.hidden) == set(repo.ls_hidden())
    repo.gitlink("lib/late")  # new: named in the split part
    repo.write("bump.txt")
    repo.git("add", "bump.txt")
    repo.git("commit", "-q", "-m", "bump")
    oid = repo.git("rev-parse", "HEAD").decode().strip()
    repo.git("update-index", "--cacheinfo", f"160000,{oid},lib/x")  # replaces a shared entry
    repo.git("update-index", "--cacheinfo", f"160000,{oid},z.txt")  # a file becomes a gitlink
    repo.git("update-index", "--assume-unchanged", "lib/y.txt")
    repo.git("update-index", "--force-remove", "vendor/ünï")
    data = Path(repo.index).read_bytes()
    assert b"link" in data
    split = read_split(repo.index, oid_len)
    assert split is not None
    assert set(split.gitlinks) == set(repo.ls_gitlinks()) | {"vendor/ünï"}
    assert "z.txt" in split.gitlinks and "lib/late" in split.gitlinks
    assert set(split.hidden) == set(repo.ls_hidden())
    # a shared index that is not there, or a bitmap that does not fit: no answer
    shared = next(p for p in (repo.path / ".git").iterdir() if p.name.startswith("sharedindex."))
    shared.rename(shared.with_name("elsewhere"))
    assert read_split(repo.index, oid_len) is None


def test_read_split_of_a_plain_index_is_none(tmp_path: Path) -> None:
    repo = make(tmp_path, 2)
    assert read_split(repo.index, 20) is None
    assert read(repo.index, 20) is not None


def _sig(data: bytes, oid_len: int, sig: bytes) -> list[bytes]:
    p = _gitindex._parse(data, oid_len)
    assert p is not None
    return [s for s, _, _ in p.exts if s == sig]


def test_resolve_undo_is_kept(tmp_path: Path) -> None:
    """REUC (what a resolved conflict was) stays: ``git checkout -m`` can bring it back."""
    repo = Repo(tmp_path / "r", tmp_path)
    repo.write("c.txt", "base\n")
    repo.git("add", "c.txt")
    repo.git("commit", "-q", "-m", "base")
    repo.git("checkout", "-q", "-b", "other")
    repo.write("c.txt", "other\n")
    repo.git("commit", "-q", "-am", "other")
    repo.git("checkout", "-q", "main")
    repo.write("c.txt", "main\n")
    repo.git("commit", "-q", "-am", "main")
    assert repo.run("merge", "-q", "other").returncode != 0
    repo.write("c.txt", "both\n")
    repo.git("add", "c.txt")
    repo.gitlink("lib/x")
    undo = repo.git("ls-files", "--resolve-undo")
    assert undo
    assert drop(repo.gitdir, ["lib/x"])
    assert _sig(Path(repo.index).read_bytes(), 20, b"REUC")
    assert repo.git("ls-files", "--resolve-undo") == undo
    repo.git("checkout", "-m", "c.txt")
    assert len(repo.git("ls-files", "-u").splitlines()) == 3


@pytest.mark.parametrize("version", [2, 4])
def test_stale_extensions_go_and_git_rebuilds_them(tmp_path: Path, version: int) -> None:
    """The cache tree and the untracked cache describe the entries; without them git works
    as after any index change: ``git status`` says what it says when git removes the entry."""
    repo = make(tmp_path, version)
    repo.git("update-index", "--untracked-cache")
    repo.write("untracked/new.txt")
    repo.write("untracked2.txt")
    repo.git("write-tree")
    repo.git("status", "--porcelain")
    data = Path(repo.index).read_bytes()
    assert _sig(data, 20, b"TREE") and _sig(data, 20, b"UNTR")
    twin = Repo.__new__(Repo)
    twin.path, twin.env, twin.oid_len = tmp_path / "twin", repo.env, 20
    shutil.copytree(repo.path, twin.path, symlinks=True)
    twin.git("update-index", "--force-remove", "lib/x")
    assert drop(repo.gitdir, ["lib/x"])
    data = Path(repo.index).read_bytes()
    assert not _sig(data, 20, b"TREE") and not _sig(data, 20, b"UNTR")
    assert repo.git("status", "--porcelain") == twin.git("status", "--porcelain")
    assert repo.git("write-tree") == twin.git("write-tree")
    assert repo.run("fsck", "--no-progress").returncode == 0


@pytest.mark.parametrize("version", [2, 4])
def test_offset_table(tmp_path: Path, version: int) -> None:
    """An index written for threaded reading (EOIE, IEOT) reads alike both ways; one whose
    offset table points elsewhere than the entries is refused: git with ``index.threads``
    would read other entries from it than git without."""
    repo = make(tmp_path, version)
    threads = ("-c", "index.threads=2", "-c", "index.recordOffsetTable=true",
               "-c", "index.recordEndOfIndexEntries=true")
    repo.git(*threads, "update-index", "--index-version", str(version), "--force-write-index")
    data = Path(repo.index).read_bytes()
    assert _sig(data, 20, b"IEOT") and _sig(data, 20, b"EOIE")
    got = read(repo.index)
    assert got is not None and got.gitlinks == repo.ls_gitlinks()
    p = _gitindex._parse(data, 20, record=True)
    assert p is not None and p.starts is not None
    ieot = next(start for sig, start, _ in p.exts if sig == b"IEOT")
    second = int.from_bytes(data[ieot + 20:ieot + 24], "big")
    bad = bytearray(data)
    bad[ieot + 20:ieot + 24] = (second + 8).to_bytes(4, "big")
    Path(repo.index).write_bytes(_rehash(bytes(bad)))
    assert read(repo.index) is None
    assert not drop(repo.gitdir, ["lib/x"])
    Path(repo.index).write_bytes(data)
    before = repo.debug()
    assert drop(repo.gitdir, ["lib/x"])
    del before[b"lib/x"]
    assert repo.debug() == before
    assert repo.run(*threads, "status", "--porcelain").returncode == 0


def _rehash(data: bytes, oid_len: int = 20) -> bytes:
    body = data[:-oid_len]
    return body + _gitindex._digest(body, oid_len)


def test_digest_is_sha1_and_sha256() -> None:
    import hashlib

    for data in (b"", b"abc", bytes(range(256)) * 100):
        assert _gitindex._digest(data, 20) == hashlib.sha1(data).digest()
        assert _gitindex._digest(data, 32) == hashlib.sha256(data).digest()


def test_varint_is_gits() -> None:
    """git's offset varint, decoded here as ``_entry`` decodes it."""
    for value in [*range(300), 16511, 16512, 2**21, 2**32 + 5]:
        raw = _gitindex._varint(value)
        c = raw[0]
        got = c & 127
        k = 1
        while c & 128:
            c = raw[k]
            k += 1
            got = ((got + 1) << 7) | (c & 127)
        assert (got, k) == (value, len(raw))
    assert _gitindex._varint(127) == b"\x7f"
    assert _gitindex._varint(128) == b"\x80\x00"


def _fsmonitor_trap(repo: Repo, marker: Path) -> None:
    """``lib/x`` a repository of its own whose ``core.fsmonitor`` leaves ``marker``."""
    inner = Repo(repo.path / "lib" / "x", repo.path.parent)
    script = repo.path.parent / "trap.sh"
    script.write_text(f"#!/bin/sh\necho ran > '{marker}'\nexit 1\n")
    script.chmod(0o755)
    inner.git("config", "core.fsmonitor", str(script))


def _weird_mode(repo: Repo, path: bytes, mode: int) -> None:
    """Give the entry ``path`` (v2) the mode ``mode``, as only a hand-written index would."""
    data = bytearray(Path(repo.index).read_bytes())
    p = _gitindex._parse(bytes(data), 20, record=True)
    assert p is not None and p.starts is not None and p.names is not None
    start = p.starts[p.names.index(path)]
    data[start + 24:start + 28] = mode.to_bytes(4, "big")
    Path(repo.index).write_bytes(_rehash(bytes(data)))


@pytest.mark.parametrize("mode", [0o160000, 0o360644])
def test_drop_stops_git_status_running_a_planted_program(tmp_path: Path, mode: int) -> None:
    """The attack: a gitlink in the index for a directory that holds a repository with
    ``core.fsmonitor`` set; the user's plain ``git status`` runs that program. git takes any
    mode whose type bits say gitlink (``0o360644`` too) for one. Control: git status runs it;
    after drop(): it does not."""
    repo = make(tmp_path, 2)
    marker = tmp_path / "ran"
    _fsmonitor_trap(repo, marker)
    if mode != 0o160000:
        _weird_mode(repo, b"lib/x", mode)
        assert f"{mode:06o}".encode() in repo.git("ls-files", "-s", "lib/x")
    got = read(repo.index)
    assert got is not None and "lib/x" in got.gitlinks
    repo.run("status", "--porcelain", safe=False)
    assert marker.exists()  # the control: the attack works
    marker.unlink()
    assert drop(repo.gitdir, ["lib/x"])
    repo.run("status", "--porcelain", safe=False)
    assert not marker.exists()
    assert repo.run("status", "--porcelain").returncode == 0


def test_not_an_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make(tmp_path, 2)
    data = Path(repo.index).read_bytes()
    cases = {"missing": None, "empty": b"", "text": b"hello world\n" * 10,
             "version5": data[:4] + (5).to_bytes(4, "big") + data[8:],
             "count+1": data[:8] + (int.from_bytes(data[8:12], "big") + 1).to_bytes(4, "big")
             + data[12:],
             "no-hash": data[:-20], "extra": data[:-20] + b"\0" * 4 + data[-20:]}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        assert read(str(path)) is None, name
        assert gitlinks(str(path)) is None, name
    assert read(str(tmp_path)) is None
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)  # opening it would block: never opened
        assert read(str(fifo)) is None
        assert gitlinks(str(fifo)) is None
    monkeypatch.setattr(_gitindex, "MAX_SIZE", len(data) - 1)
    assert read(repo.index) is None
    assert not drop(repo.gitdir, ["lib/x"])


def test_unknown_extended_flag_and_required_extension(tmp_path: Path) -> None:
    """What git refuses to read: an extended flag bit it does not know, an extension whose
    name starts with a lower-case letter (but ``sdir``)."""
    repo = make(tmp_path, 3)
    data = Path(repo.index).read_bytes()
    p = _gitindex._parse(data, 20, record=True)
    assert p is not None and p.starts is not None and p.names is not None
    start = p.starts[p.names.index(b"dir/b.txt")]
    bad = bytearray(data)
    bad[start + 62] |= 0x10
    assert _gitindex._parse(bytes(bad), 20) is None
    body = data[:-20]
    for sig, ok in ((b"ZZZZ", True), (b"zzzz", False), (b"link", False)):
        extra = _rehash(body + sig + (3).to_bytes(4, "big") + b"abc" + bytes(20))
        path = tmp_path / "x"
        path.write_bytes(extra)
        assert (read(str(path)) is not None) == ok, sig
        git_ok = subprocess.run(["git", "ls-files"], cwd=repo.path, capture_output=True,
                                env={**repo.env, "GIT_INDEX_FILE": str(path)}).returncode == 0
        assert git_ok == ok, sig


@pytest.mark.parametrize("version", [2, 4])
def test_names_git_would_read_otherwise_are_refused(tmp_path: Path, version: int) -> None:
    """A NUL inside a name: git would cut it there (``lib/x`` from ``lib/x\\0y``). No NUL
    where the name's length says it ends: git's copy of the name runs on. We do not guess."""
    repo = make(tmp_path, version)
    data = Path(repo.index).read_bytes()
    p = _gitindex._parse(data, 20, record=True)
    assert p is not None and p.starts is not None and p.names is not None
    i = p.names.index(b"weird\nsub")
    end = p.starts[i + 1] - 1 if version == 4 else data.index(b"weird\nsub") + 9
    assert data[end] == 0
    for at, value in ((end - 4, 0), (end, ord("y"))):
        bad = bytearray(data)
        bad[at] = value
        assert _gitindex._parse(_rehash(bytes(bad)), 20) is None, (at, value)
        assert _gitindex._parse(_rehash(bytes(bad)), None) is None, (at, value)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    base = tmp_path_factory.mktemp("samples")
    out = []
    for version, fmt in ((2, "sha1"), (3, "sha1"), (4, "sha1"), (4, "sha256")):
        repo = make(base, version, fmt, name=f"{fmt}-{version}")
        repo.git("write-tree")
        out.append(Path(repo.index).read_bytes())
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), cut=st.integers(0, 4096),
       flips=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=4),
       rehash=st.booleans())
def test_fuzz_never_raises(samples: list[bytes], tmp_path: Path, which: int, cut: int,
                           flips: list[tuple[int, int]], rehash: bool) -> None:
    """Truncated and bit-flipped real indexes: None or an answer, never an exception; drop()
    on them leaves no lock behind, and what it writes reads back."""
    data = bytearray(samples[which])
    for at, value in flips:
        data[at % len(data)] = value
    if cut:
        del data[-(cut % len(data)) or len(data):]
    blob = bytes(data)
    oid_len = 32 if which == 3 else 20
    if rehash and len(blob) > oid_len:
        blob = _rehash(blob, oid_len)
    gitdir = tmp_path / "fuzz"
    gitdir.mkdir(exist_ok=True)
    index = gitdir / "index"
    index.write_bytes(blob)
    got = read(str(index))
    assert got is None or all(isinstance(n, str) for n in got.gitlinks + got.hidden)
    links = gitlinks(str(index))
    assert links is None or isinstance(links, tuple)
    if got is not None and links is not None and not got.gitlinks:
        assert links == ()
    read(str(index), oid_len)
    if got is not None and got.gitlinks and drop(str(gitdir), got.gitlinks[:1]):
        again = read(str(index), got.oid_len)
        assert again is not None
        assert again.gitlinks == tuple(g for g in got.gitlinks if g != got.gitlinks[0])
    assert not (gitdir / "index.lock").exists()


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="root reads an unreadable file")
def test_unreadable(tmp_path: Path) -> None:
    repo = make(tmp_path, 2)
    os.chmod(repo.index, 0)
    try:
        assert read(repo.index) is None
        assert not drop(repo.gitdir, ["lib/x"])
    finally:
        os.chmod(repo.index, stat.S_IRUSR | stat.S_IWUSR)


def test_two_readings_are_no_answer(tmp_path: Path) -> None:
    """44 bytes that are a SHA-256 index without entries, and a SHA-1 one with an optional
    extension: which git reads depends on the repository's object format, so without it
    read() answers None; told, it answers."""
    blob = b"DIRC" + (2).to_bytes(4, "big") + bytes(4) + b"ABCD" + (4).to_bytes(4, "big") \
        + bytes(4) + bytes(20)
    path = tmp_path / "index"
    path.write_bytes(blob)
    assert read(str(path)) is None
    assert gitlinks(str(path)) == ()  # no gitlink mode anywhere: none either way
    for oid_len in (20, 32):
        got = read(str(path), oid_len)
        assert got is not None and got.oid_len == oid_len


def _v4_index(names: list[tuple[int, bytes]]) -> bytes:
    """A v4 index of regular files: (bytes to strip from the previous name, suffix) each;
    every name 4095 bytes or more (the length field says 0xFFF)."""
    body = b"".join(
        bytes(24) + (0o100644).to_bytes(4, "big") + bytes(32) + b"\x0f\xff"
        + _gitindex._varint(strip) + suffix + b"\0" for strip, suffix in names)
    return _rehash(b"DIRC" + (4).to_bytes(4, "big") + len(names).to_bytes(4, "big") + body
                   + bytes(20))


def test_v4_names_cannot_make_reading_slow(tmp_path: Path) -> None:
    """v4 builds each name from the previous one: a crafted index with one long name and
    many entries that keep all of it but a byte would copy gigabytes. Refused, once the
    bytes copied pass the budget; the same with fewer entries reads."""
    long = b"d" * 60000
    path = tmp_path / "index"
    for count, ok in ((100, True), (50000, False)):
        blob = _v4_index([(0, long)] + [(1, b"%c" % (97 + k % 26)) for k in range(count)])
        path.write_bytes(blob)
        budget = _gitindex._COPY_FACTOR * len(blob) + _gitindex._COPY_SLACK
        assert (60000 * count <= budget) == ok
        assert (read(str(path), 20) is not None) == ok


def test_guard_reads_the_index_once_per_change(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``_gitguard.before`` remembers what the index held under its inode, size and times:
    a second look at an unchanged index does not read it; a changed one is read again. (An
    index changed within the last two seconds is never remembered: the clock is pretended
    ahead.)"""
    import time

    from ringfence import _gitguard

    repo = make(tmp_path, 2)
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + 10_000_000_000)
    memo: dict[str, object] = {}
    first = _gitguard.before(str(repo.path), memo)
    assert first is not None and set(first.gitlinks) == set(repo.ls_gitlinks())
    assert _gitguard.MEMO_KEY in memo
    calls: list[object] = []
    reader = _gitindex.read
    monkeypatch.setattr(_gitindex, "read", lambda *a: calls.append(a) or reader(*a))
    again = _gitguard.before(str(repo.path), memo)
    assert again is not None and again.gitlinks == first.gitlinks and calls == []
    repo.gitlink("lib/late")
    third = _gitguard.before(str(repo.path), memo)
    assert third is not None and "lib/late" in third.gitlinks and len(calls) == 1
