"""The developer's everyday work must still WORK inside the default sandbox.

Not escape tests: no control run. Committing, making a virtualenv and installing into it without
network, compiling with gcc and make, and running several processes at once are what an agent's
commands do all day; a sandbox that breaks them gets switched off.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import World

# The interpreter itself, not the test venv's symlink to it: a venv may live under /tmp (which
# the sandbox replaces), while the interpreter it links to is visible inside.
PYTHON = os.path.realpath(sys.executable)


def _git(world: World, *args: str) -> str:
    env = {**os.environ, **world.env, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=world.workspace, env=env, check=True,
                          capture_output=True, text=True).stdout


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_git_commit_in_existing_repository(world: World) -> None:
    """Edit, ``git add FILE``, ``git commit`` inside; the host's ``git log`` shows the commit
    and the host's working tree is clean."""
    world.git_init()
    _ok(world.sandbox(
        "echo 'hello, again' > README && echo new > new.txt && "
        "git add README new.txt && git commit -q -m 'from the sandbox' && git log --oneline"
    ))
    log = _git(world, "log", "--format=%s")
    assert log.splitlines() == ["from the sandbox", "init"]
    assert _git(world, "status", "--porcelain", "--ignored") == ""
    assert _git(world, "show", "HEAD:new.txt") == "new\n"


def test_git_branch_stash_and_merge(world: World) -> None:
    """Branches, stash, merge, rebase: all write only inside ``.git`` (refs, objects, index)."""
    world.git_init()
    _ok(world.sandbox(
        "set -e; git switch -q -c feature; echo f > f.txt; git add f.txt; "
        "git commit -q -m feature; git switch -q main; echo wip >> README; git stash -q; "
        "git merge -q --no-edit feature; git stash pop -q; git commit -q -am wip; "
        "git rebase -q HEAD~1 2>/dev/null || true; git gc -q"
    ))
    assert _git(world, "log", "--format=%s").splitlines()[0] == "wip"
    assert _git(world, "branch", "--format=%(refname:short)").split() == ["feature", "main"]


def test_git_add_all_and_commit(world: World) -> None:
    """``git add -A && git commit``: the most common way an agent commits its work."""
    world.git_init()
    _ok(world.sandbox("echo new > new.txt && git add -A && git commit -q -m 'add all'"))
    assert _git(world, "log", "--format=%s").splitlines()[0] == "add all"
    assert _git(world, "ls-files").split() == ["README", "new.txt"]


def test_git_status_clean_inside(world: World) -> None:
    """A clean repository looks clean from inside: agents read ``git status`` to see what they
    changed."""
    world.git_init()
    result = _ok(world.sandbox("git status --porcelain"))
    assert result.stdout == ""


_GITFILE_BUG = (
    "BUG: when .git is a FILE (linked worktree, submodule, --separate-git-dir), plan_linux's "
    "'cover the missing parent' branch treats the existing .git file as the missing parent of "
    ".git/hooks and mounts /dev/null over it (after its read-only bind), so inside the sandbox "
    "git cannot read .git and falls through to an enclosing repository")


def _host_git(world: World, *args: str, cwd: Path) -> str:
    env = {**os.environ, **world.env, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def test_git_commit_in_separate_gitdir_checkout(world: World) -> None:
    """A checkout whose ``.git`` is a file pointing at a git directory inside the workspace
    (``git init --separate-git-dir``, the layout of a submodule): commit from inside."""
    ws = world.workspace
    _host_git(world, "init", "-q", "-b", "main", "--separate-git-dir", str(ws / ".git-real"),
              str(ws), cwd=ws)
    _host_git(world, "config", "user.email", "t@example.invalid", cwd=ws)
    _host_git(world, "config", "user.name", "T", cwd=ws)
    result = _ok(world.sandbox(
        "git rev-parse --absolute-git-dir && echo x > a.txt && git add a.txt && "
        "git commit -q -m 'from the sandbox'"))
    assert result.stdout.strip() == str(ws / ".git-real")
    assert _host_git(world, "log", "--format=%s", cwd=ws) == "from the sandbox\n"


def test_git_commit_in_linked_worktree(world: World) -> None:
    """The workspace is a linked worktree (``git worktree add``) of a repository given with
    ``--writable``: commit from inside, the main repository's log shows it."""
    main = world.outside / "main"
    main.mkdir()
    for args in (("init", "-q", "-b", "main"), ("config", "user.email", "t@example.invalid"),
                 ("config", "user.name", "T"), ("commit", "-q", "--allow-empty", "-m", "init"),
                 ("worktree", "add", "-q", "-b", "wt", str(world.workspace))):
        _host_git(world, *args, cwd=main)
    result = _ok(world.sandbox(
        "git rev-parse --abbrev-ref HEAD && echo x > a.txt && git add a.txt && "
        "git commit -q -m 'from the worktree'", "--writable", str(main)))
    assert result.stdout.strip() == "wt"
    assert _host_git(world, "log", "--format=%s", "-1", "wt", cwd=main) == "from the worktree\n"


def _wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel, written by hand (no build tools, no network)."""
    name, version = "rfhello", "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "def greet():\n    return 'hello from rfhello'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": ("Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                          "Tag: py3-none-any\n"),
    }

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = "".join(f"{path},{digest(text)},{len(text.encode())}\n"
                     for path, text in files.items()) + f"{dist}/RECORD,,\n"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in files.items():
            zf.writestr(member, text)
        zf.writestr(f"{dist}/RECORD", record)
    return path


def test_venv_and_offline_wheel_install(world: World) -> None:
    """``python -m venv .venv`` in the workspace, then ``.venv/bin/pip install --no-index`` of
    a local wheel built outside the sandbox, with the network off (the default)."""
    wheel = _wheel(world.outside)
    result = _ok(world.sandbox(
        f"{PYTHON} -m venv .venv && "
        f".venv/bin/pip install --no-index --disable-pip-version-check -q '{wheel}' && "
        ".venv/bin/python -c 'import rfhello; print(rfhello.greet())'",
        timeout=120,
    ))
    assert result.stdout.strip() == "hello from rfhello"
    site = list((world.workspace / ".venv").glob("lib/python*/site-packages/rfhello"))
    assert site, "the package was not installed into the workspace's venv"


def test_gcc_and_make_hello_world(world: World) -> None:
    """``make`` drives gcc (which keeps its temporary files in /tmp) to build and run a
    program."""
    (world.workspace / "hello.c").write_text(
        '#include <stdio.h>\nint main(void) { puts("hello, world"); return 0; }\n')
    (world.workspace / "Makefile").write_text(
        "CFLAGS = -O2 -Wall\nhello: hello.o\n\t$(CC) -o $@ $^\nclean:\n\trm -f hello hello.o\n")
    result = _ok(world.sandbox("make -s && ./hello"))
    assert result.stdout == "hello, world\n"
    assert os.access(world.workspace / "hello", os.X_OK)


def test_make_parallel(world: World) -> None:
    """``make -j4`` over several translation units: four compilers at once."""
    ws = world.workspace
    for i in range(8):
        (ws / f"f{i}.c").write_text(f"int f{i}(void) {{ return {i}; }}\n")
    calls = " + ".join(f"f{i}()" for i in range(8))
    decls = "".join(f"int f{i}(void);\n" for i in range(8))
    (ws / "main.c").write_text(
        f'#include <stdio.h>\n{decls}int main(void) {{ printf("%d\\n", {calls}); return 0; }}\n')
    objs = " ".join(f"f{i}.o" for i in range(8))
    (ws / "Makefile").write_text(f"prog: main.o {objs}\n\t$(CC) -o $@ $^\n")
    result = _ok(world.sandbox("make -s -j4 && ./prog"))
    assert result.stdout == f"{sum(range(8))}\n"


def test_multiprocessing_pool(world: World) -> None:
    """A test runner's worker pool: ``multiprocessing.Pool(4)`` (fork, pipes, semaphores in
    /dev/shm) distributing work and collecting results."""
    code = (
        "import multiprocessing as mp\n"
        "def work(n):\n"
        "    return n * n\n"
        "if __name__ == '__main__':\n"
        "    for method in ('fork', 'spawn'):\n"
        "        with mp.get_context(method).Pool(4) as pool:\n"
        "            out = pool.map(work, range(40), chunksize=1)\n"
        "            workers = len(mp.active_children())\n"
        "        print(method, sum(out), workers)\n"
    )
    (world.workspace / "pool.py").write_text(code)
    result = _ok(world.run("run", "--", PYTHON, "pool.py", timeout=120))
    total = sum(n * n for n in range(40))
    assert result.stdout == f"fork {total} 4\nspawn {total} 4\n"


def test_subprocesses_and_pipes(world: World) -> None:
    """A shell pipeline with background jobs and ``wait``, as build scripts use."""
    result = _ok(world.sandbox(
        "for i in 1 2 3 4; do (sleep 0.1; echo $i > out.$i) & done; wait; "
        "cat out.* | sort | tr '\\n' ' '"))
    assert result.stdout == "1 2 3 4 "
