"""Attack: a gitlink in the index makes the host's ``git status`` run what a repository says.

``.git/index`` is writable (``git add`` needs it). The command makes a repository anywhere in
the workspace (``a/lib``: deeper than any scan looks), sets ``core.fsmonitor`` there, and adds
a gitlink for it (``git update-index --add --cacheinfo 160000,...``). No ``.gitmodules`` is
needed: the host's next plain ``git status`` at the top recurses into every gitlink whose
directory holds a repository, and the git it runs there obeys that repository's config. Before
the fix this ran the command's program on the host and ``git status`` printed nothing unusual.

Guards (``ringfence._gitguard``): gitlinks the run added are taken out of the index when it
ends (or, where the index cannot be rewritten safely, the repository is renamed aside), and
gitlinks already in the index at the start are protected like declared submodules. Each attack
has its control with the guard removed (``--profile full-access``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import World
from tests.escapes.test_protected import _git

pytestmark = pytest.mark.escape

OID = "1" * 40


def _plant(marker: Path, path: str = "a/lib") -> str:
    """The script: a repository at ``path`` whose fsmonitor touches ``marker``, and a gitlink
    for it in the top repository's index."""
    return (f"set -e; mkdir -p {path} && git init -q {path} && "
            f"git -C {path} config core.fsmonitor 'touch {marker}; false' && "
            f"git update-index --add --cacheinfo 160000,{OID},{path} && echo PLANTED")


def _gitlinks(world: World) -> list[str]:
    out = _git(world, "ls-files", "-s", cwd=world.workspace).stdout
    return [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("160000 ")]


def _host_status(world: World) -> None:
    _git(world, "status", "--porcelain", cwd=world.workspace, check=False)


@pytest.mark.parametrize("path", ["lib", "a/lib", "deep/er/lib"])
def test_gitlink_added_by_the_command_is_taken_out(world: World, path: str) -> None:
    """The planted gitlink is gone when the run ends; the host's ``git status`` runs nothing;
    the user is told, on stderr."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    result = world.sandbox(_plant(marker, path))
    assert "PLANTED" in result.stdout, result.stderr
    assert result.returncode == 0
    assert "ringfence: warning: the command added submodule entries" in result.stderr
    assert path in result.stderr
    assert _gitlinks(world) == []
    _host_status(world)
    assert not marker.exists(), "the host's git status ran what the sandbox planted"
    # the command's other work in the index stays: the file it added is still staged
    # control: without the guard, the same script makes the host's git status run it
    _git(world, "rm", "-q", "-r", "--cached", "--ignore-unmatch", path, cwd=world.workspace)
    import shutil

    shutil.rmtree(world.workspace / path.split("/")[0])
    assert world.unsandboxed(_plant(marker, path)).returncode == 0
    assert _gitlinks(world) == [path]
    _host_status(world)
    assert marker.exists()


def test_other_index_work_is_kept(world: World) -> None:
    """Only the gitlink goes: what the command staged besides it stays staged, and a commit
    the command made is untouched."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    script = ("echo new > new.txt && git add new.txt && " + _plant(marker))
    result = world.sandbox(script)
    assert result.returncode == 0, result.stderr
    staged = _git(world, "diff", "--cached", "--name-only", cwd=world.workspace).stdout.split()
    assert staged == ["new.txt"]
    _host_status(world)
    assert not marker.exists()


def test_json_and_library_report_it(world: World) -> None:
    """``--json`` carries the warning in ``git_warnings`` (and prints nothing else)."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    result = world.sandbox(_plant(marker), "--json")
    report = json.loads(result.stdout)
    assert len(report["git_warnings"]) == 1
    assert "a/lib" in report["git_warnings"][0]
    assert "ringfence: warning" not in result.stderr
    assert _gitlinks(world) == []


def test_gitlink_at_the_start_is_protected(world: World) -> None:
    """A gitlink already in the index (``.gitmodules`` does not declare it; say, a nested
    clone added by mistake, which git allows with a hint) whose directory has no repository:
    the command cannot make one there."""
    world.git_init()
    _git(world, "update-index", "--add", "--cacheinfo", f"160000,{OID},vendor/x",
         cwd=world.workspace)
    marker = world.outside / "fsmonitor-ran"
    script = ("mkdir -p vendor/x; git init -q vendor/x && "
              f"git -C vendor/x config core.fsmonitor 'touch {marker}; false'; echo DONE")
    result = world.sandbox(script)
    assert "DONE" in result.stdout
    assert not (world.workspace / "vendor" / "x" / ".git").exists()
    _host_status(world)
    assert not marker.exists()
    # control
    assert world.unsandboxed(script).returncode == 0
    _host_status(world)
    assert marker.exists()


def test_repository_of_a_gitlink_at_the_start_is_protected(world: World) -> None:
    """A gitlink whose directory holds a repository (two levels down, where no scan looks):
    its config cannot be changed."""
    world.git_init()
    inner = world.workspace / "third_party" / "dep"
    inner.mkdir(parents=True)
    _git(world, "init", "-q", cwd=inner)
    _git(world, "update-index", "--add", "--cacheinfo", f"160000,{OID},third_party/dep",
         cwd=world.workspace)
    marker = world.outside / "fsmonitor-ran"
    script = f"git -C third_party/dep config core.fsmonitor 'touch {marker}; false'; echo DONE"
    result = world.sandbox(script)
    assert "DONE" in result.stdout
    _host_status(world)
    assert not marker.exists()
    assert world.unsandboxed(script).returncode == 0
    _host_status(world)
    assert marker.exists()


def test_split_index_sets_the_repository_aside(world: World) -> None:
    """Where the index cannot be rewritten safely (a split index), the planted repository is
    renamed aside instead: git status finds no repository to recurse into."""
    world.git_init()
    _git(world, "update-index", "--split-index", cwd=world.workspace)
    marker = world.outside / "fsmonitor-ran"
    result = world.sandbox(_plant(marker))
    assert result.returncode == 0, result.stderr
    assert "renamed to" in result.stderr
    assert not (world.workspace / "a" / "lib" / ".git").exists()
    assert (world.workspace / "a" / "lib" / ".git.ringfence-set-aside").is_dir()
    _host_status(world)
    assert not marker.exists()


def test_marks_that_hide_changes_are_reported(world: World) -> None:
    """``git update-index --skip-worktree`` / ``--assume-unchanged``: git status and git diff
    stop showing changes to the file. The run's warning names it."""
    world.git_init()
    script = ("echo changed >> README && git update-index --assume-unchanged README && "
              "git status --porcelain && echo DONE")
    result = world.sandbox(script)
    assert result.returncode == 0, result.stderr
    assert _git(world, "status", "--porcelain", cwd=world.workspace).stdout == "", \
        "the mark should hide the change (the attack)"
    assert "marked 1 file" in result.stderr and "README" in result.stderr
    # a second run that does not touch the index says nothing more
    again = world.sandbox("true")
    assert "warning" not in again.stderr


def test_ordinary_git_work_says_nothing(world: World) -> None:
    """Adding, committing, and bumping an existing gitlink: no warning, nothing undone."""
    world.git_init()
    result = world.sandbox("echo x > x && git add x && git commit -q -m x && echo DONE",
                           env={"GIT_AUTHOR_NAME": "T", "GIT_COMMITTER_NAME": "T",
                                "GIT_AUTHOR_EMAIL": "t@example.invalid",
                                "GIT_COMMITTER_EMAIL": "t@example.invalid"})
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_session_commands(in_world: World) -> None:
    """In a session each command's result carries the warning and the gitlink is taken out,
    the second time too (each look compares with the one before)."""
    from ringfence.session import Session

    world = in_world
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    with Session(workspace=str(world.workspace)) as s:
        for path in ("a/lib", "b/lib"):
            r = s.run(_plant(marker, path))
            assert r.exit_code == 0, r.stderr
            assert len(r.git_warnings) == 1 and path in r.git_warnings[0]
            assert _gitlinks(world) == []
        assert s.run("true").git_warnings == ()
    assert s.git_warnings == ()
    _host_status(world)
    assert not marker.exists()


def test_split_index_made_by_the_command(world: World) -> None:
    """The command splits the index itself (``git update-index --split-index``), so that the
    gitlink sits where a plain reader does not look: it is found all the same, and the
    repository set aside (a split index is not rewritten)."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    result = world.sandbox("git update-index --split-index && " + _plant(marker))
    assert result.returncode == 0, result.stderr
    assert "renamed to" in result.stderr
    _host_status(world)
    assert not marker.exists()


def test_lock_left_behind(world: World) -> None:
    """The command leaves ``.git/index.lock`` so that the gitlink cannot be taken out under
    git's lock: the repository is set aside instead."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    result = world.sandbox(_plant(marker) + " && touch .git/index.lock")
    assert result.returncode == 0, result.stderr
    assert "renamed to" in result.stderr
    (world.workspace / ".git" / "index.lock").unlink()
    _host_status(world)
    assert not marker.exists()


def test_index_left_unreadable(world: World) -> None:
    """Fail closed: the command leaves an index ringfence's reader refuses (a form git may
    read otherwise, such as offset tables that show threaded readers other entries; here,
    simply, a version number no git writes). It is moved aside, so git status has no gitlink
    to recurse into whatever git would make of it, and ``git reset`` brings a fresh one."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    corrupt = ("python3 - <<'PY'\n"
               "d = bytearray(open('.git/index', 'rb').read())\n"
               "d[4:8] = (7).to_bytes(4, 'big')\n"  # an index version no git writes
               "open('.git/index', 'wb').write(d)\n"
               "PY\n")
    result = world.sandbox(_plant(marker) + " && " + corrupt)
    assert result.returncode == 0, result.stderr
    assert "index.ringfence-set-aside" in result.stderr
    assert not (world.workspace / ".git" / "index").exists()
    _host_status(world)
    assert not marker.exists()
    _git(world, "reset", "-q", cwd=world.workspace)
    assert _gitlinks(world) == []


def test_repository_one_level_down(world: World) -> None:
    """The same attack on a repository one level below the workspace's top (``backend/``, a
    clone among others: an editor opens such repositories by itself and runs git status in
    them)."""
    from tests.escapes.test_protected import _repo

    backend = _repo(world, world.workspace / "backend")
    marker = world.outside / "fsmonitor-ran"
    result = world.sandbox(f"cd {backend} && " + _plant(marker))
    assert result.returncode == 0, result.stderr
    assert "ringfence: warning: the command added submodule entries" in result.stderr
    _git(world, "status", "--porcelain", cwd=backend, check=False)
    assert not marker.exists()
    assert world.unsandboxed(f"cd {backend} && rm -rf a && " + _plant(marker)).returncode == 0
    _git(world, "status", "--porcelain", cwd=backend, check=False)
    assert marker.exists()


def test_users_own_repository_is_not_set_aside(world: World) -> None:
    """The command adds a gitlink for a repository of the user's one level down (whose
    internals were protected during the run) and leaves ``index.lock`` so the gitlink cannot
    be taken out: ringfence does not rename the user's repository aside for it (git status
    recursing there runs only what the user set), and says the gitlink stays."""
    from tests.escapes.test_protected import _repo

    world.git_init()
    _repo(world, world.workspace / "mine")
    oid = _git(world, "rev-parse", "HEAD", cwd=world.workspace / "mine").stdout.strip()
    result = world.sandbox(f"git update-index --add --cacheinfo 160000,{oid},mine && "
                           "touch .git/index.lock")
    assert result.returncode == 0, result.stderr
    assert (world.workspace / "mine" / ".git").is_dir()
    assert "protected during the run, left as it is" in result.stderr


def test_mcp_run_tells_the_agent(world: World) -> None:
    """Through ``ringfence mcp``, the run tool's answer carries ``git_warnings`` (the agent
    can tell its user), and the gitlink is gone."""
    import asyncio

    mcp = pytest.importorskip("mcp")
    from tests.test_mcp_server import params, payload

    world.git_init()
    marker = world.outside / "fsmonitor-ran"

    async def main() -> dict[str, object]:
        async with mcp.Client(params(world)) as client:
            return payload(await client.call_tool("run", {"command": _plant(marker)}))

    answer = asyncio.run(main())
    assert answer["exit_code"] == 0, answer
    warnings = answer["git_warnings"]
    assert isinstance(warnings, list) and "a/lib" in warnings[0]
    assert _gitlinks(world) == []


def test_index_read_after_a_run_is_not_read_again(world: World) -> None:
    """What the index holds after a run that changed it is remembered (the scan memo), so the
    next run's start does not read it again; the gitlink left there (the repository set
    aside) is protected then."""
    import marshal

    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    assert world.sandbox(_plant(marker) + " && touch .git/index.lock").returncode == 0
    (world.workspace / ".git" / "index.lock").unlink()
    assert _gitlinks(world) == ["a/lib"]  # could not be taken out: the repository went aside
    # the next run: the gitlink is protected (its checkout has no repository now: the
    # directory itself is read-only), whether the index is read again or not
    result = world.sandbox("git init -q a/lib; touch a/lib/x; echo DONE")
    assert "DONE" in result.stdout
    assert not (world.workspace / "a" / "lib" / ".git").exists()
    assert not (world.workspace / "a" / "lib" / "x").exists()
    scan = world.home / ".local" / "state" / "ringfence" / "scan"
    memos = list(scan.iterdir()) if scan.is_dir() else []
    entries = [marshal.loads(p.read_bytes()) for p in memos]
    assert any(e.get("\0index", (None, ()))[1] == ("a/lib",) for e in entries), entries

# Writes .git/index of a SHA-256 repository so that it holds NUMBER plain entries and one
# optional extension ``ZZZZ``, as a sequential reader sees it. Inside that extension's data,
# where git's reader looks for an end-of-index-entries marker (EOIE, 24 bytes whatever the
# hash), one points at a ``link`` extension, also inside: git with ``index.threads`` reads its
# extensions from there and takes the index for a split one, whose shared part (written
# beside it) holds a gitlink for PATH.
_HIDDEN_EOIE = """python3 - NUMBER PATH <<'PY'
import hashlib, struct, sys
n, path = int(sys.argv[1]), sys.argv[2].encode()
def entry(name, mode, oid):
    e = struct.pack(">10I", 0, 0, 0, 0, 0, 0, mode, 0, 0, 0) + oid
    e += struct.pack(">H", len(name)) + name
    return e + bytes(8 - len(e) % 8)
shared = b"DIRC" + struct.pack(">II", 2, 1) + entry(path, 0o160000, bytes([17]) * 32)
base = hashlib.sha256(shared).digest()
open(".git/sharedindex." + base.hex(), "wb").write(shared + base)
body = b"DIRC" + struct.pack(">II", 2, n)
body += b"".join(entry(b"z%06d" % i, 0o100644, bytes(32)) for i in range(n))
link = b"link" + struct.pack(">I", 32 + 24) + base + bytes(24)  # two empty bitmaps
digest = hashlib.sha256(link[:8]).digest()  # git hashes the extension headers it walks
eoie = b"EOIE" + struct.pack(">II", 24, len(body) + 8) + digest[:20]
body += b"ZZZZ" + struct.pack(">I", len(link) + len(eoie)) + link + eoie
# git compares 32 bytes of hash there: the last 12 are the first of the trailing hash
open(".git/index", "wb").write(body + digest[20:] + bytes(20))
PY
"""


def test_hidden_end_of_index_marker_in_a_sha256_repository(world: World) -> None:
    """Attack: in a SHA-256 repository, git's reader looks for the end-of-index-entries
    extension 24 bytes before the trailing hash plus 8, while the reader looked where git's
    writer puts it (36 bytes). The command hides one, where git looks, inside an optional
    extension's data; it points git at a ``link`` extension hidden there too. git with
    ``index.threads`` set (``true`` with 20,000 entries, or a number) reads a split index whose
    shared part holds a gitlink for the command's repository; the reader saw a plain index
    without one, so nothing was taken out, and the host's ``git status`` ran the command's
    fsmonitor. Now the index is refused, so it is moved aside."""
    world.workspace.mkdir(parents=True, exist_ok=True)
    _git(world, "init", "-q", "--object-format=sha256", cwd=world.workspace)
    (world.workspace / "README").write_text("hello\n")
    _git(world, "add", "README", cwd=world.workspace)
    _git(world, "commit", "-q", "-m", "init", cwd=world.workspace)
    marker = world.outside / "fsmonitor-ran"
    script = ("set -e; mkdir -p a/lib && git init -q a/lib && "
              f"git -C a/lib config core.fsmonitor 'touch {marker}; false'\n"
              + _HIDDEN_EOIE.replace("NUMBER", "4").replace("PATH", "a/lib") + "echo PLANTED")
    result = world.sandbox(script)
    assert "PLANTED" in result.stdout, result.stderr
    assert "index.ringfence-set-aside" in result.stderr
    _git(world, "-c", "index.threads=2", "status", "--porcelain", cwd=world.workspace,
         check=False)
    assert not marker.exists(), "the host's git status ran what the sandbox planted"
    # control: the same script without the sandbox; git with threads sees the gitlink
    import shutil

    shutil.rmtree(world.workspace / "a")
    assert world.unsandboxed(script).returncode == 0
    listed = _git(world, "-c", "index.threads=2", "ls-files", "-s", cwd=world.workspace,
                  check=False).stdout
    assert "160000 " in listed and "a/lib" in listed
    _git(world, "-c", "index.threads=2", "status", "--porcelain", cwd=world.workspace,
         check=False)
    assert marker.exists()


def test_set_aside_names_taken_beforehand(world: World) -> None:
    """The command takes the names ringfence would set things aside under: directories
    ``a/lib/.git.ringfence-set-aside`` and ``-1`` to ``-99`` (a rename does not replace a
    directory), and ``.git/index.lock`` so that the gitlink cannot be taken out. ringfence
    gave up ("could not be renamed aside") and the host's git status ran the planted
    program. Now a free name is always found."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    taken = ("mkdir a/lib/.git.ringfence-set-aside && "
             "for i in $(seq 1 99); do mkdir a/lib/.git.ringfence-set-aside-$i; done")
    result = world.sandbox(_plant(marker) + " && " + taken + " && touch .git/index.lock")
    assert result.returncode == 0, result.stderr
    assert "renamed to" in result.stderr and "could not be renamed" not in result.stderr
    (world.workspace / ".git" / "index.lock").unlink()
    _host_status(world)
    assert not marker.exists()


def test_index_set_aside_name_taken_beforehand(world: World) -> None:
    """The command leaves an index ringfence refuses but git reads (an offset table that does
    not match the entries: git without threads ignores it) holding its gitlink, and a
    directory at ``.git/index.ringfence-set-aside``. The index could not be moved aside and the
    host's git status ran the planted program. Now it is moved to a free name."""
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    ieot = ("python3 - <<'PY'\n"
            "import hashlib\n"
            "d = open('.git/index', 'rb').read()[:-20]\n"
            "d += b'IEOT' + (12).to_bytes(4, 'big') + (1).to_bytes(4, 'big')\n"
            "d += (999).to_bytes(4, 'big') + (1).to_bytes(4, 'big')\n"
            "open('.git/index', 'wb').write(d + hashlib.sha1(d).digest())\n"
            "PY\n")
    result = world.sandbox(_plant(marker) + " && " + ieot
                           + "mkdir -p .git/index.ringfence-set-aside/x")
    assert result.returncode == 0, result.stderr
    assert "was moved to" in result.stderr, result.stderr
    assert not (world.workspace / ".git" / "index").exists()
    _host_status(world)
    assert not marker.exists()


def test_session_command_cannot_remake_what_an_earlier_look_set_aside(in_world: World) -> None:
    """In a session the sandbox keeps the mounts it started with, so a gitlink added by one
    command (which the look after it could not take out: the command left ``index.lock``, so
    its repository was set aside) is not protected for the next command. That command makes
    the repository again without touching the index; the look after it still finds the
    gitlink beyond those protected at the start and sets the new repository aside too."""
    from ringfence.session import Session

    world = in_world
    world.git_init()
    marker = world.outside / "fsmonitor-ran"
    remake = (f"git init -q a/lib && git -C a/lib config core.fsmonitor "
              f"'touch {marker}; false' && echo REMADE")
    with Session(workspace=str(world.workspace)) as s:
        r = s.run(_plant(marker) + " && touch .git/index.lock")
        assert r.exit_code == 0, r.stderr
        assert any("renamed to" in w for w in r.git_warnings)
        r = s.run(remake)
        assert b"REMADE" in r.stdout, r.stderr
        assert any("renamed to" in w for w in r.git_warnings), r.git_warnings
    (world.workspace / ".git" / "index.lock").unlink()
    assert not (world.workspace / "a" / "lib" / ".git").exists()
    _host_status(world)
    assert not marker.exists()
