"""Attack: read the user's secrets (keys, tokens, ringfence's own config and state).

Deny-read directories look empty inside the sandbox and deny-read files read as nothing. Every
secret here is a fake the test wrote; each attack looks for its marker text (``FAKE-...``) in what
the sandbox printed, and the control (``--profile full-access``) shows the same command finds it.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from tests.conftest import World

# The interpreter itself, not a venv's symlink to it (a venv under /tmp is not visible inside).
PYTHON = os.path.realpath(sys.executable)


def _leaks(world: World, script: str, marker: str, *options: str) -> None:
    """The sandbox's output has no ``marker``; the unguarded control's output has it."""
    result = world.sandbox(script, *options)
    assert marker not in result.stdout + result.stderr, "the secret leaked into the sandbox"
    control = world.unsandboxed(script)
    assert marker in control.stdout, f"control did not find the secret: {control.stderr}"


def test_cat_ssh_key(world: World) -> None:
    """``cat ~/.ssh/id_ed25519`` prints nothing (the key does not exist in the sandbox's view)."""
    script = "cat ~/.ssh/id_ed25519"
    result = world.sandbox(script)
    assert result.returncode != 0
    assert result.stdout == ""
    _leaks(world, script, "FAKE-PRIVATE-KEY")


def test_list_ssh_dir(world: World) -> None:
    """``ls -A ~/.ssh``: the directory is there but empty (no key names, no known_hosts)."""
    result = world.sandbox("ls -A ~/.ssh")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    control = world.unsandboxed("ls -A ~/.ssh")
    assert "id_ed25519" in control.stdout


def test_netrc_reads_empty(world: World) -> None:
    """``~/.netrc`` (a deny-read file): reading it gives nothing."""
    result = world.sandbox("cat ~/.netrc; wc -c < ~/.netrc")
    assert "FAKE-NETRC" not in result.stdout
    _leaks(world, "cat ~/.netrc", "FAKE-NETRC")


def test_aws_credentials_unreadable(world: World) -> None:
    """``~/.aws/credentials`` (inside a deny-read directory)."""
    _leaks(world, "cat ~/.aws/credentials; ls -A ~/.aws", "FAKE-AWS")
    assert world.sandbox("test -e ~/.aws/credentials").returncode != 0


def test_copy_secret_into_workspace(world: World) -> None:
    """Copy the key into the (writable) workspace so a later, unsandboxed step can send it."""
    script = "rm -rf loot aws; cp -r ~/.ssh ./loot; cp ~/.aws/credentials ./aws; cat loot/* aws"
    world.sandbox(script)
    for path in world.workspace.rglob("*"):
        if path.is_file():
            assert "FAKE" not in path.read_text(errors="replace"), path
    _leaks(world, script, "FAKE-PRIVATE-KEY")


def test_find_home_for_keys(world: World) -> None:
    """``find ~ -name id_ed25519``: a search of the whole home finds no key to read."""
    script = "find ~ -name id_ed25519 -exec cat {} +"
    result = world.sandbox(script)
    assert "id_ed25519" not in result.stdout
    _leaks(world, script, "FAKE-PRIVATE-KEY")


def test_grep_home_for_secrets(world: World) -> None:
    """``grep -r`` the home directory for the secrets' text: no file in it holds one."""
    script = "grep -r -a FAKE ~ 2>/dev/null"
    result = world.sandbox(script)
    assert "FAKE" not in result.stdout
    control = world.unsandboxed(script)
    for marker in ("FAKE-PRIVATE-KEY", "FAKE-NETRC", "FAKE-AWS"):
        assert marker in control.stdout


def test_python_open_key(world: World) -> None:
    """Python's ``open()`` of the key fails, or reads nothing."""
    key = world.home / ".ssh" / "id_ed25519"
    code = f"""
try:
    with open({str(key)!r}) as fh:
        print("READ:" + fh.read())
except OSError as exc:
    print("ERROR:", type(exc).__name__)
"""
    result = world.run("run", "--", PYTHON, "-c", code)
    assert result.returncode == 0, result.stderr
    assert "FAKE-PRIVATE-KEY" not in result.stdout
    assert result.stdout.startswith(("ERROR:", "READ:\n"))
    control = world.run("run", "--profile", "full-access", "--", PYTHON, "-c", code)
    assert "READ:FAKE-PRIVATE-KEY" in control.stdout


def test_custom_deny_read_dir_and_file(world: World) -> None:
    """``--deny-read PATH`` for a directory and a file of the user's choosing (outside the home's
    default list); a neighbour that is not denied stays readable."""
    vault = world.outside / "vault"
    vault.mkdir()
    (vault / "token").write_text("FAKE-VAULT-TOKEN\n")
    key = world.outside / "signing.key"
    key.write_text("FAKE-SIGNING-KEY\n")
    opts = ("--deny-read", str(vault), "--deny-read", str(key))
    script = f"ls -A '{vault}'; cat '{vault}/token' '{key}'; cat '{world.outside}/target.txt'"
    result = world.sandbox(script, *opts)
    assert "ORIGINAL" in result.stdout  # the rest of the directory is still readable
    assert "token" not in result.stdout
    assert "FAKE" not in result.stdout
    control = world.unsandboxed(script)
    assert "FAKE-VAULT-TOKEN" in control.stdout and "FAKE-SIGNING-KEY" in control.stdout


def test_deny_read_from_policy_file(world: World) -> None:
    """``--policy FILE`` with ``[filesystem] deny_read`` (paths relative to the file's
    directory), the project-independent way to add deny-read paths."""
    vault = world.outside / "vault"
    vault.mkdir()
    (vault / "token").write_text("FAKE-VAULT-TOKEN\n")
    (world.outside / "db.pass").write_text("FAKE-DB-PASS\n")
    policy = world.outside / "policy.toml"
    policy.write_text('[filesystem]\ndeny_read = ["vault", "db.pass"]\n')
    script = f"ls -A '{vault}'; cat '{vault}/token' '{world.outside}/db.pass'"
    result = world.sandbox(script, "--policy", str(policy))
    assert "token" not in result.stdout
    assert "FAKE" not in result.stdout
    control = world.unsandboxed(script)
    assert "FAKE-VAULT-TOKEN" in control.stdout and "FAKE-DB-PASS" in control.stdout


def test_ringfence_config_dir_unreadable(world: World) -> None:
    """ringfence's own config (``$XDG_CONFIG_HOME/ringfence``): it names trusted workspaces and
    the user's policy, which an attacker would read to plan around, so the sandbox cannot."""
    config_dir = Path(world.env["XDG_CONFIG_HOME"]) / "ringfence"
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text("# FAKE-RINGFENCE-CONFIG\n")
    script = f"ls -A '{config_dir}'; cat '{config_dir}/config.toml'"
    result = world.sandbox(script)
    assert "config.toml" not in result.stdout
    assert "FAKE" not in result.stdout
    control = world.unsandboxed(script)
    assert "FAKE-RINGFENCE-CONFIG" in control.stdout


@pytest.mark.parametrize("where", ["config-home", "home"])
def test_missing_config_dir_inside_a_writable_root(world: World, where: str) -> None:
    """Found in a red-team pass. ringfence's config directory does not exist yet (most users
    never make one), and a writable root holds where it would be: a dotfiles checkout of
    ``~/.config`` as the workspace, or ``--workspace ~``. The command creates
    ``ringfence/config.toml`` with ``profile = "full-access"`` and a trust list, and every
    later run obeys it. It must be kept from the command like an existing one."""
    config_home = Path(world.env["XDG_CONFIG_HOME"])
    config_home.mkdir(parents=True, exist_ok=True)
    config_dir = config_home / "ringfence"
    assert not config_dir.exists()
    plant = (f"mkdir -p '{config_dir}' && printf 'profile = \"full-access\"\\n' > "
             f"'{config_dir}/config.toml'")
    options = ("--workspace", str(world.home)) if where == "home" else ()
    cwd = world.home if where == "home" else config_home
    result = world.sandbox(plant, *options, cwd=cwd)
    assert result.returncode != 0, result.stderr
    assert not (config_dir / "config.toml").exists(), "the command planted ringfence's config"
    later = world.run("explain", "--", "true")
    assert "profile: workspace-write" in later.stdout, later.stdout + later.stderr
    control = world.sandbox(plant, *options, "--profile", "full-access", cwd=cwd)
    assert control.returncode == 0 and (config_dir / "config.toml").exists()


def test_missing_config_dir_through_a_linked_config_home(world: World) -> None:
    """Found in review: ``~/.config`` is a link into a dotfiles repository, and the agent works
    in that repository. The config directory was compared with the writable roots by its
    unresolved path, so it was neither made nor hidden, and the command created
    ``~/.config/ringfence/config.toml`` (``profile = "full-access"``): the next run obeyed
    it and wrote outside the workspace."""
    dots = world.workspace / "dots-config"
    dots.mkdir()
    config_home = world.home / "linked-config"
    config_home.symlink_to(dots)
    env = {"XDG_CONFIG_HOME": str(config_home)}
    plant = (f"mkdir -p '{config_home}/ringfence' && printf 'profile = \"full-access\"\\n' > "
             f"'{config_home}/ringfence/config.toml'")
    result = world.sandbox(plant, env=env)
    assert result.returncode != 0, result.stderr
    assert not (dots / "ringfence" / "config.toml").exists(), "the command planted the config"
    later = world.run("explain", "--", "true", env=env)
    assert "profile: workspace-write" in later.stdout, later.stdout + later.stderr
    # and with the config there, runs still work (it is hidden where it really is)
    assert world.sandbox("true", env=env).returncode == 0
    control = world.sandbox(plant, "--profile", "full-access", env=env)
    assert control.returncode == 0 and (dots / "ringfence" / "config.toml").exists()


def test_ringfence_state_dir_unreadable(world: World) -> None:
    """ringfence's state (``$XDG_STATE_HOME/ringfence``: the policy cache, the placeholder
    records) is neither readable nor writable from inside."""
    state_dir = Path(world.env["XDG_STATE_HOME"]) / "ringfence"
    state_dir.mkdir(parents=True)
    (state_dir / "marker").write_text("FAKE-STATE\n")
    script = f"ls -A '{state_dir}'; cat '{state_dir}/marker'; echo evil > '{state_dir}/planted'"
    result = world.sandbox(script)
    assert "marker" not in result.stdout
    assert "FAKE" not in result.stdout
    assert not (state_dir / "planted").exists()
    control = world.unsandboxed(script)
    assert "FAKE-STATE" in control.stdout


def test_host_tmp_invisible(world: World) -> None:
    """The host's /tmp (other programs' sockets, tokens, temp files) is replaced by a private
    one: a marker file the test puts in the real /tmp is not there inside."""
    marker = Path("/tmp") / f"ringfence-test-marker-{uuid.uuid4().hex}"
    marker.write_text("FAKE-HOST-TMP\n")
    try:
        script = f"ls -A /tmp; cat '{marker}'"
        result = world.sandbox(script)
        assert marker.name not in result.stdout
        assert "FAKE" not in result.stdout
        control = world.unsandboxed(script)
        assert marker.name in control.stdout and "FAKE-HOST-TMP" in control.stdout
    finally:
        marker.unlink(missing_ok=True)


AGENT_SECRETS = (".codex/auth.json", ".claude/.credentials.json", ".claude.json",
                 ".gemini/oauth_creds.json", ".gemini/.env", ".config/github-copilot/hosts.json",
                 ".config/glab-cli/config.yml", ".config/rclone/rclone.conf",
                 ".cache/huggingface/token", ".huggingface/token",
                 ".local/share/opencode/auth.json", ".cursor/mcp.json")


@pytest.mark.parametrize("where", AGENT_SECRETS)
def test_coding_agents_and_tools_logins_unreadable(world: World, where: str) -> None:
    """A command reads the login of the coding agent that started it (Codex's ``auth.json``,
    Claude Code's ``.credentials.json``, Gemini's OAuth file, Copilot's token) or another
    tool's token file and prints it, for the agent to pass on or to write into the
    workspace. The file reads as nothing; the full-access control prints it."""
    path = world.home / where
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = f"FAKE-TOKEN-{where}"
    path.write_text(marker + "\n")
    _leaks(world, f"cat '{path}'", marker)


def test_first_run_hides_ringfence_state(world: World) -> None:
    """The first run on a machine: ringfence's state directory does not exist yet when the plan
    is made (deny-read hides what exists), and ringfence writes into it during the run (the
    run's audit record, the placeholders, the audit records of other runs going on beside it).
    The attack: read the audit log, other commands' text, through the directory that appeared.
    (Library runs without the audit log, and the command line's early start, which plans before
    writing the decision's record, both made the plan before the directory existed.)"""
    state = world.home / ".local" / "state" / "ringfence"
    assert not state.exists()
    script = "sleep 0.3; ls -A ~/.local/state/ringfence; cat ~/.local/state/ringfence/audit/*"
    result = world.sandbox(script)
    assert result.stdout == "", result.stdout
    assert (state / "audit" / "audit.jsonl").exists()  # it was written meanwhile
    import ringfence

    other = world.base / "other-state"
    saved = os.environ["XDG_STATE_HOME"]
    os.environ["XDG_STATE_HOME"] = str(other)
    try:
        policy = ringfence.resolve_policy(ringfence.Options(workspace=str(world.workspace)))
        lib = ringfence.run(["/bin/sh", "-c", "ls -A " + str(other / "ringfence")], policy,
                            audit=False)
    finally:
        os.environ["XDG_STATE_HOME"] = saved
    assert lib.stdout == b"", lib.stdout
    assert (other / "ringfence").is_dir()  # made for the run's placeholders, and hidden


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/etc/shadow"),
                    reason="root's view of the machine's secrets")
def test_root_cannot_read_the_machines_secrets(world: World) -> None:
    """Found in a red-team pass: run by root, the command keeps uid 0 inside and, with no
    capability at all, still reads every file root owns by its owner bits: ``/etc/shadow``'s
    password hashes, host and service keys. The probe prints only how many bytes it could
    read, never the content."""
    script = "head -c 16 /etc/shadow 2>/dev/null | wc -c"
    result = world.sandbox(script, "--max-processes", "0")
    assert result.stdout.strip() == "0", result.stdout + result.stderr
    control = world.unsandboxed(script)
    assert int(control.stdout.strip()) > 0


def test_secret_under_an_absolute_link_in_home(world: World) -> None:
    """A dotfiles manager makes ``~/.config`` an absolute link to another directory (here
    ``outside/dotfiles/config``). The plan mounted the deny-read cover at ``~/.config/gh``,
    a path bubblewrap resolves against its own new root, where the link's target does not
    exist: every run failed (125). Now the cover goes where the directory really is, and the
    token behind the link is hidden by both of its names."""
    real = world.outside / "dotfiles" / "config"
    (real / "gh").mkdir(parents=True)
    (real / "gh" / "hosts.yml").write_text("oauth_token: FAKE-GH-TOKEN\n")
    (world.home / ".config").symlink_to(real)
    script = f"cat ~/.config/gh/hosts.yml '{real}/gh/hosts.yml'; ls -A ~/.config/gh"
    result = world.sandbox(script)
    assert result.returncode != 125, result.stderr
    assert "hosts.yml" not in result.stdout
    _leaks(world, script, "FAKE-GH-TOKEN")
    assert world.sandbox("true").returncode == 0


def test_secrets_under_a_home_reached_by_a_link(world: World) -> None:
    """``HOME`` names a link to the real home (``/home`` a link to ``/var/home``, as on some
    distributions). The covers for ``~/.ssh`` (a directory) and ``~/.netrc`` (a file) were
    mounted at paths through the link, which bubblewrap cannot follow: every run failed."""
    link = world.base / "home-link"
    link.symlink_to(world.home)
    env = {"HOME": str(link)}
    script = "cat ~/.ssh/id_ed25519 ~/.netrc; ls -A ~/.ssh"
    result = world.sandbox(script, env=env)
    assert result.returncode != 125, result.stderr
    assert "FAKE" not in result.stdout + result.stderr
    assert "id_ed25519" not in result.stdout
    control = world.sandbox(script, "--profile", "full-access", env=env)
    assert "FAKE-PRIVATE-KEY" in control.stdout and "FAKE-NETRC" in control.stdout


def test_workspace_run_with_every_directory_through_a_linked_home(world: World) -> None:
    """``HOME`` and the XDG directories all name paths through a link to the real home: the
    sandbox's package cache (bound writable) was mounted through the link and every run
    failed (125). The cache is used where it really is, and writes there work."""
    link = world.base / "home-link"
    link.symlink_to(world.home)
    env = {"HOME": str(link), "XDG_CONFIG_HOME": f"{link}/.config",
           "XDG_STATE_HOME": f"{link}/.local/state", "XDG_CACHE_HOME": f"{link}/.cache"}
    script = ('cache=$(dirname "$PIP_CACHE_DIR") && touch "$cache/probe" && echo "$cache"; '
              'cat ~/.ssh/id_ed25519')
    result = world.sandbox(script, env=env)
    assert result.returncode != 125, result.stderr
    cache = result.stdout.splitlines()[0]
    assert os.path.realpath(cache) == cache and cache.startswith(str(world.home / ".cache"))
    assert (Path(cache) / "probe").exists()
    assert "FAKE" not in result.stdout
