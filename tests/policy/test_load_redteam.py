"""Loader regressions from the red-team pass on policy layering: each test names the attack a
repository's ``.ringfence.toml`` (or a careless command line) tried, and fails without its guard.
The escape tests that run these against the kernel are in tests/escapes/test_project_policy.py.
"""

from __future__ import annotations

import os

import pytest

from ringfence.errors import PolicyError
from ringfence.policy.load import Options, resolve
from ringfence.policy.model import Policy
from tests.policy.test_load import Env, _q


def _error(env: Env, **options: object) -> str:
    with pytest.raises(PolicyError) as info:
        env.resolve(**options)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# protected entries that lead out of the writable root (finding 1)

LEADING_OUT = ["../x", "../../x", "a/../../x", "..", "", " ", ".", "./", "a/..", "..\\x",
               "x/../../y"]


@pytest.mark.parametrize("entry", LEADING_OUT)
@pytest.mark.parametrize("layer", ["user", "project", "policy"])
def test_protected_entry_leading_out_is_refused(env: Env, entry: str, layer: str) -> None:
    """Attack: ``protected = ["../x"]`` in a project file. Joined onto the workspace it named
    the workspace's parent; the planner's string test took it for a path inside the root and
    pinned every "parent" up to it with a read-write bind: the whole home became writable.
    Every layer refuses such an entry, naming the file, the key and the fix."""
    text = f"[filesystem]\nprotected = [{_q(entry)}]\n"
    options: dict[str, object] = {}
    if layer == "user":
        path = env.write_user(text)
    elif layer == "project":
        path = env.write_project(text)
    else:
        path = env.tmp / "pol.toml"
        path.write_text(text)
        options["policy_file"] = str(path)
    msg = _error(env, **options)
    assert str(path) in msg and "filesystem.protected" in msg and "'..'" in msg, msg


def test_project_protected_entry_absolute_is_refused(env: Env) -> None:
    """Attack: an absolute protected path from a repository names a place of the attacker's
    choosing on the host; a project's entries are paths inside its workspace."""
    path = env.write_project(f"[filesystem]\nprotected = [{_q(env.home / 'x')}]\n")
    msg = _error(env)
    assert str(path) in msg and "absolute" in msg and "filesystem.protected" in msg


def test_user_absolute_protected_entry_kept_normalised(env: Env) -> None:
    """Legit use: your own config may protect one exact path (where it lies inside a
    writable root); relative entries are normalised."""
    target = os.path.realpath(env.ws) + "/deploy/run.sh"
    env.write_user(f"[filesystem]\nprotected = [{_q(target)}, 'tools//x.sh/']\n")
    p = env.resolve()
    assert target in p.protected and "tools/x.sh" in p.protected


def test_library_policy_normalises_protected() -> None:
    p = Policy(workspace="/w", protected=("a//b/", "../x"))
    assert p.protected == ("a/b", "../x")  # ../x is then dropped by the planner


# ---------------------------------------------------------------------------------------------
# NUL bytes, bad environment names, deep nesting (finding 11)

@pytest.mark.parametrize(("text", "word"), [
    ('[filesystem]\ndeny_read = ["a\\u0000b"]\n', "NUL"),
    ('[filesystem]\nprotected = ["a\\u0000b"]\n', "NUL"),
    ('[filesystem]\nwritable = ["a\\u0000b"]\n', "NUL"),
    ('[environment]\nset = { X = "a\\u0000b" }\n', "NUL"),
    ('[environment]\nset = { "A=B" = "x" }\n', "A=B"),
    ('[environment]\nset = { "" = "x" }\n', "environment variable name"),
    ('[environment]\nset = { "A\\u0000" = "x" }\n', "environment variable name"),
    ('[sandbox]\nbwrap = "/x\\u0000"\n', "NUL"),
])
def test_nul_and_bad_environment_names_are_one_line_errors(env: Env, text: str,
                                                           word: str) -> None:
    """Attack: a repository's file with a NUL byte or an impossible environment name made
    every run in it crash with a traceback (ValueError from lstat or execve) instead of the
    clear exit 125."""
    path = env.write_project(text)
    msg = _error(env)
    assert str(path) in msg and word in msg, msg


def test_deeply_nested_toml_is_a_one_line_error(env: Env) -> None:
    """Attack: ``x = [[[[...]]]]`` 2000 deep made tomllib raise RecursionError, uncaught."""
    path = env.write_project("x = " + "[" * 2000 + "]" * 2000 + "\n")
    msg = _error(env)
    assert str(path) in msg and "nested" in msg


# ---------------------------------------------------------------------------------------------
# network entries a project gave while the trusted mode was "on" (finding 3)

def test_project_network_entries_do_not_extend_the_command_lines_allowlist(env: Env) -> None:
    """Attack: your config says ``mode = "on"``; the project adds ``allow = ["localhost"]``
    and ``allow_local = true`` (fine under "on": anything narrows it). You then narrow to
    ``--allow-domain pypi.example``: the project's entries stayed in the list, so the final
    allowlist reached your loopback services."""
    env.write_user('[network]\nmode = "on"\n')
    env.write_project('[network]\nallow = ["localhost"]\nallow_local = true\n'
                      'allow_private = true\npresets = ["npm"]\n')
    p = env.resolve(allow_domains=("pypi.example",))
    assert p.network == "allowlist" and p.network_rules is not None
    assert p.network_rules.allow == ("pypi.example",)
    assert not p.network_rules.allow_local and not p.network_rules.allow_private
    assert p.network_rules.presets == ()
    # the same from --network allowlist and from a --policy file
    p = env.resolve(network="allowlist")
    assert p.network_rules is not None and p.network_rules.allow == ()
    assert not p.network_rules.allow_local
    pol = env.tmp / "pol.toml"
    pol.write_text('[network]\nmode = "allowlist"\nallow = ["a.example"]\n')
    p = env.resolve(policy_file=str(pol))
    assert p.network_rules is not None and p.network_rules.allow == ("a.example",)
    assert not p.network_rules.allow_local


def test_project_network_entries_that_narrow_are_kept(env: Env) -> None:
    env.write_user('[network]\nmode = "on"\n')
    # a subset of the command line's allowlist still narrows it
    env.write_project('[network]\nallow = ["a.example"]\nallow_local = false\n')
    p = env.resolve(allow_domains=("a.example", "b.example"))
    assert p.network_rules is not None and p.network_rules.allow == ("a.example",)
    # the project's own narrowing of "on" to an allowlist stands
    env.write_project('[network]\nmode = "allowlist"\nallow = ["a.example"]\n'
                      'allow_local = true\n')
    p = env.resolve()
    assert p.network_rules is not None and p.network_rules.allow == ("a.example",)
    assert p.network_rules.allow_local
    # and --network on wins over everything, as before
    assert env.resolve(network="on").network == "on"


# ---------------------------------------------------------------------------------------------
# environment settings of an untrusted project in unsandboxed runs (finding 4)

def test_project_environment_not_set_without_the_sandbox(env: Env) -> None:
    """Attack: ``[environment] set = { GIT_CONFIG_COUNT = "1", GIT_CONFIG_KEY_0 =
    "core.fsmonitor", ... }`` from a repository applied to full-access runs and to reruns
    without the sandbox: ``git status`` ran the repository's script on the host. The
    project's settings now apply inside the sandbox only; yours apply everywhere."""
    env.write_user('[environment]\nset = { CI = "1", X = "user" }\n')
    env.write_project('[environment]\nset = { GIT_CONFIG_COUNT = "1", X = "project" }\n')
    p = env.resolve()
    assert dict(p.env_set) == {"CI": "1", "X": "project", "GIT_CONFIG_COUNT": "1"}
    assert dict(p.env_settings()) == dict(p.env_set)
    full = p.replace(profile="full-access")
    assert dict(full.env_settings()) == {"CI": "1", "X": "user"}
    assert dict(env.resolve(profile="full-access").env_settings()) == {"CI": "1", "X": "user"}


def test_trusted_project_environment_applies_everywhere(env: Env) -> None:
    env.trust()
    env.write_project('[environment]\nset = { X = "project" }\n')
    p = env.resolve(profile="full-access")
    assert dict(p.env_settings()) == {"X": "project"} and p.env_set_unsandboxed is None


# ---------------------------------------------------------------------------------------------
# approvals "never" (finding 9), --workspace "" (finding 12), trusted workspaces (finding 13)

def test_project_untrusted_does_not_replace_never(env: Env) -> None:
    """Attack: the user's ``approvals.mode = "never"`` refuses whatever would ask; a project's
    ``untrusted`` turned those refusals into questions (and in MCP, elicitations)."""
    env.write_user('[approvals]\nmode = "never"\n')
    env.write_project('[approvals]\nmode = "untrusted"\n')
    assert env.resolve().approval_mode == "never"
    env.write_user('[approvals]\nmode = "on-request"\n')
    assert env.resolve().approval_mode == "untrusted"


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_workspace_is_refused(env: Env, value: str) -> None:
    """Attack: a wrapper runs ``--workspace "$PROJECT_DIR"`` with the variable unset, from
    your home: the empty string counted as explicit, then meant the current directory, and
    the "running in your home" refusal was skipped."""
    with pytest.raises(PolicyError, match="--workspace is empty"):
        resolve(Options(workspace=value), cwd=str(env.home))


def test_trusted_workspace_inside_a_writable_root_gets_its_file_protected(env: Env) -> None:
    """Attack: you trust ~/proj/app and run an agent in ~/proj; the command writes
    ``app/.ringfence.toml`` (trusted: it may widen) and the next run in app is full-access.
    Its path is protected, whether it exists or not."""
    app = env.ws / "app"
    env.write_user(f"[trust]\nworkspaces = [{_q(app)}, {_q(env.home / 'elsewhere')}]\n")
    p = env.resolve()
    assert os.path.join(os.path.realpath(app), ".ringfence.toml") in p.protected
    assert not any("elsewhere" in x for x in p.protected)
    assert not any(x.startswith("/") for x in env.resolve(profile="read-only").protected)
