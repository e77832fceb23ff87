"""``resolve``: built-in < user config < project file < --policy file < command line.

Every test gets its own $HOME, XDG_CONFIG_HOME and XDG_STATE_HOME under tmp_path, so the user's
config and the parse cache live there and nothing of the real user's is read.
"""

from __future__ import annotations

import marshal
import math
import os
from pathlib import Path

import pytest

from ringfence.errors import PolicyError
from ringfence.policy import load
from ringfence.policy.load import (
    Options,
    load_policy,
    parse_count,
    parse_seconds,
    parse_size,
    read_toml,
    resolve,
    user_config_path,
    validate,
)
from ringfence.policy.model import DEFAULT_PROTECTED, Limits, Policy

GiB = 1 << 30
MiB = 1 << 20


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.config = tmp / "xdg-config"
        self.state = tmp / "xdg-state"
        self.ws = self.home / "proj"
        self.ws.mkdir(parents=True)

    @property
    def user_config(self) -> Path:
        return self.config / "ringfence" / "config.toml"

    @property
    def project_file(self) -> Path:
        return self.ws / ".ringfence.toml"

    @property
    def cache_file(self) -> Path:
        return self.state / "ringfence" / "policy-cache.marshal"

    def write_user(self, text: str) -> Path:
        self.user_config.parent.mkdir(parents=True, exist_ok=True)
        self.user_config.write_text(text, encoding="utf-8")
        return self.user_config

    def write_project(self, text: str) -> Path:
        self.project_file.write_text(text, encoding="utf-8")
        return self.project_file

    def trust(self, extra: str = "") -> None:
        self.write_user(f"[trust]\nworkspaces = [{_q(self.ws)}]\n{extra}")

    def resolve(self, **options: object) -> Policy:
        options.setdefault("workspace", str(self.ws))
        return resolve(Options(**options), cwd=str(self.tmp))  # type: ignore[arg-type]


def _q(path: object) -> str:
    """A TOML basic string for a path (escapes backslashes, quotes and newlines)."""
    text = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _error(env: Env, **options: object) -> str:
    with pytest.raises(PolicyError) as info:
        env.resolve(**options)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Defaults and the user's config.

def test_defaults(env: Env) -> None:
    p = env.resolve()
    assert p == Policy(workspace=os.path.realpath(env.ws))
    assert p.protected == DEFAULT_PROTECTED
    assert p.limits == Limits()


def test_user_config_paths_follow_xdg(env: Env) -> None:
    assert user_config_path() == str(env.user_config)
    assert load._cache_path() == str(env.cache_file)


def test_user_config_values_applied(env: Env) -> None:
    (env.home / "extra").mkdir()
    (env.tmp / "abs").mkdir()
    env.write_user(f"""
profile = "read-only"
[filesystem]
writable = ["~/extra", "extra", {_q(env.tmp / "abs")}]
deny_read = ["~/private", "/srv/secret"]
protected = ["Makefile"]
[network]
mode = "on"
[environment]
allow = ["GITHUB_TOKEN"]
deny = ["LANG"]
set = {{ CI = "1" }}
[limits]
timeout = "10m"
memory = "4G"
max_processes = 100
cpu_seconds = 60
file_size = "1GiB"
output = "1M"
tmp_size = "512MB"
[devices]
gpu = true
[sandbox]
fallback = "landlock"
bwrap = "system"
""")
    p = env.resolve()
    assert p.profile == "read-only"
    # relative paths in the user's config are relative to $HOME
    assert p.writable == (str(env.home / "extra"), str(env.home / "extra"), str(env.tmp / "abs"))
    assert p.deny_read == (str(env.home / "private"), "/srv/secret")
    assert p.protected == (*DEFAULT_PROTECTED, "Makefile")
    assert p.network == "on"
    assert p.env_allow == ("GITHUB_TOKEN",)
    assert p.env_deny == ("LANG",)
    assert p.env_set == (("CI", "1"),)
    assert p.limits == Limits(timeout=600.0, memory=4 * GiB, max_processes=100, cpu_seconds=60,
                              file_size=GiB, output=MiB, tmp_size=512 * MiB)
    assert p.gpu is True
    assert p.fallback == "landlock"
    assert p.bwrap == "system"


def test_user_config_can_remove_a_limit(env: Env) -> None:
    env.write_user('[limits]\nmax_processes = "none"\nfile_size = 0\n')
    p = env.resolve()
    assert p.limits.max_processes is None
    assert p.limits.file_size is None


def test_use_user_config_false_ignores_it(env: Env) -> None:
    env.write_user('profile = "read-only"\n')
    assert env.resolve(use_user_config=False).profile == "workspace-write"


@pytest.mark.parametrize("root", ["/", "~", "~/", "../home"])
def test_user_config_writable_root_or_home_refused(env: Env, root: str) -> None:
    path = env.write_user(f"[filesystem]\nwritable = [{_q(root)}]\n")
    msg = _error(env)
    assert str(path) in msg
    assert "filesystem.writable" in msg


# ---------------------------------------------------------------------------------------------
# The project's file: narrowing is fine.

def test_project_may_narrow(env: Env) -> None:
    env.write_user('profile = "workspace-write"\n[network]\nmode = "on"\n'
                   '[limits]\ntimeout = 600\nmemory = "8G"\n')
    env.write_project("""
profile = "read-only"
[network]
mode = "off"
[filesystem]
deny_read = ["secrets", "/srv/other"]
protected = ["Makefile", "scripts/deploy.sh"]
[environment]
deny = ["LANG", "MYCORP_*"]
set = { CI = "true", NODE_ENV = "test" }
[limits]
timeout = "1m"
memory = "1G"
max_processes = 64
cpu_seconds = 30
file_size = "100M"
output = "1M"
tmp_size = "64M"
[devices]
gpu = false
[sandbox]
fallback = "refuse"
""")
    p = env.resolve()
    ws = os.path.realpath(env.ws)
    assert p.profile == "read-only"
    assert p.network == "off"
    # relative deny-read paths in the project's file are relative to the workspace
    assert p.deny_read == (os.path.join(ws, "secrets"), "/srv/other")
    assert p.protected == (*DEFAULT_PROTECTED, "Makefile", "scripts/deploy.sh")
    assert p.env_deny == ("LANG", "MYCORP_*")
    assert p.env_set == (("CI", "true"), ("NODE_ENV", "test"))
    assert p.limits == Limits(timeout=60.0, memory=GiB, max_processes=64, cpu_seconds=30,
                              file_size=100 * MiB, output=MiB, tmp_size=64 * MiB)
    assert p.gpu is False
    assert p.fallback == "refuse"


def test_project_same_values_are_not_widening(env: Env) -> None:
    env.write_project('profile = "workspace-write"\n[network]\nmode = "off"\n'
                      '[limits]\nmax_processes = 4096\ntimeout = "none"\n')
    assert env.resolve() == Policy(workspace=os.path.realpath(env.ws))


def test_project_adds_to_user_lists(env: Env) -> None:
    env.write_user('[filesystem]\ndeny_read = ["/a"]\n[environment]\ndeny = ["A"]\n'
                   'set = { X = "user", Y = "user" }\n')
    env.write_project('[filesystem]\ndeny_read = ["/b"]\n[environment]\ndeny = ["B"]\n'
                      'set = { Y = "project" }\n')
    p = env.resolve()
    assert p.deny_read == ("/a", "/b")
    assert p.env_deny == ("A", "B")
    assert dict(p.env_set) == {"X": "user", "Y": "project"}


def test_use_project_file_false_ignores_it(env: Env) -> None:
    env.write_project('profile = "full-access"\n')
    assert env.resolve(use_project_file=False).profile == "workspace-write"


# ---------------------------------------------------------------------------------------------
# The project's file: widening is an error naming the file and the key, unless trusted.

WIDENING = [
    ('profile = "full-access"\n', "profile"),
    ('[network]\nmode = "on"\n', "network.mode"),
    ("[limits]\nmax_processes = 100000\n", "limits.max_processes"),
    ('[limits]\nmax_processes = "none"\n', "limits.max_processes"),
    ("[limits]\nmax_processes = 0\n", "limits.max_processes"),
    ('[limits]\nfile_size = "32G"\n', "limits.file_size"),
    ('[limits]\noutput = "unlimited"\n', "limits.output"),
    ('[limits]\ntmp_size = "4G"\n', "limits.tmp_size"),
    ('[filesystem]\nwritable = ["sub"]\n', "filesystem.writable"),
    ('[environment]\nallow = ["GITHUB_TOKEN"]\n', "environment.allow"),
    ("[devices]\ngpu = true\n", "devices.gpu"),
    ('[sandbox]\nfallback = "landlock"\n', "sandbox.fallback"),
    ('[sandbox]\nbwrap = "/tmp/evil-bwrap"\n', "sandbox.bwrap"),
]


@pytest.mark.parametrize(("text", "key"), WIDENING, ids=[k for _, k in WIDENING])
def test_project_may_not_widen(env: Env, text: str, key: str) -> None:
    (env.ws / "sub").mkdir()
    path = env.write_project(text)
    msg = _error(env)
    assert str(path) in msg
    assert key in msg
    assert "[trust]" in msg  # says how to allow it


@pytest.mark.parametrize(("key", "user", "project"), [
    ("limits.timeout", "[limits]\ntimeout = 60\n", "[limits]\ntimeout = 120\n"),
    ("limits.timeout", "[limits]\ntimeout = 60\n", '[limits]\ntimeout = "none"\n'),
    ("limits.memory", '[limits]\nmemory = "1G"\n', '[limits]\nmemory = "2G"\n'),
    ("limits.cpu_seconds", "[limits]\ncpu_seconds = 5\n", "[limits]\ncpu_seconds = 0\n"),
    ("profile", 'profile = "read-only"\n', 'profile = "workspace-write"\n'),
])
def test_project_may_not_widen_the_users_config(env: Env, key: str, user: str,
                                                project: str) -> None:
    env.write_user(user)
    path = env.write_project(project)
    msg = _error(env)
    assert str(path) in msg and key in msg


def test_project_may_not_carry_trust(env: Env) -> None:
    path = env.write_project(f"[trust]\nworkspaces = [{_q(env.ws)}]\n")
    msg = _error(env)
    assert str(path) in msg and "[trust]" in msg


def test_trusted_project_may_not_carry_trust_either(env: Env) -> None:
    env.trust()
    path = env.write_project('[trust]\nworkspaces = ["/"]\n')
    msg = _error(env)
    assert str(path) in msg and "[trust]" in msg


@pytest.mark.parametrize(("text", "key"), WIDENING, ids=[k for _, k in WIDENING])
def test_trusted_project_may_widen(env: Env, text: str, key: str) -> None:
    (env.ws / "sub").mkdir()
    env.trust()
    env.write_project(text)
    p = env.resolve()
    ws = os.path.realpath(env.ws)
    expected = {
        "profile": ("profile", "full-access"),
        "network.mode": ("network", "on"),
        "filesystem.writable": ("writable", (os.path.join(ws, "sub"),)),
        "environment.allow": ("env_allow", ("GITHUB_TOKEN",)),
        "devices.gpu": ("gpu", True),
        "sandbox.fallback": ("fallback", "landlock"),
        "sandbox.bwrap": ("bwrap", "/tmp/evil-bwrap"),
    }
    if key.startswith("limits."):
        value = validate(load.read_toml(str(env.project_file)) or {}, "x")[key]
        assert getattr(p.limits, key[7:]) == value
    else:
        field, value = expected[key]
        assert getattr(p, field) == value


def test_trust_by_home_relative_path_and_symlink(env: Env) -> None:
    link = env.tmp / "link-to-proj"
    link.symlink_to(env.ws)
    env.write_user('[trust]\nworkspaces = ["~/proj"]\n')
    env.write_project('profile = "full-access"\n')
    assert env.resolve(workspace=str(link)).profile == "full-access"


def test_trust_of_another_workspace_does_not_count(env: Env) -> None:
    other = env.home / "other"
    other.mkdir()
    env.write_user(f"[trust]\nworkspaces = [{_q(other)}, {_q(env.ws / 'sub')}]\n")
    env.write_project('profile = "full-access"\n')
    assert "profile" in _error(env)


# ---------------------------------------------------------------------------------------------
# --policy FILE and the command line.

def test_policy_file_applies_after_the_project(env: Env) -> None:
    env.write_user("[limits]\ntimeout = 100\n")
    env.write_project('profile = "read-only"\n[limits]\ntimeout = 10\n')
    (env.tmp / "pol").mkdir()
    (env.tmp / "pol" / "w").mkdir()
    pol = env.tmp / "pol" / "policy.toml"
    pol.write_text('profile = "full-access"\n[limits]\ntimeout = 1000\n'
                   '[filesystem]\nwritable = ["w"]\n[network]\nmode = "on"\n')
    p = env.resolve(policy_file=str(pol))
    assert p.profile == "full-access"
    assert p.limits.timeout == 1000
    assert p.network == "on"
    # relative paths in a --policy file are relative to the file
    assert p.writable == (str(env.tmp / "pol" / "w"),)


def test_policy_file_relative_to_cwd(env: Env) -> None:
    (env.tmp / "p.toml").write_text('profile = "read-only"\n')
    assert env.resolve(policy_file="p.toml").profile == "read-only"


def test_policy_file_missing(env: Env) -> None:
    msg = _error(env, policy_file=str(env.tmp / "nope.toml"))
    assert "--policy" in msg and "nope.toml" in msg


def test_policy_file_errors_name_it(env: Env) -> None:
    pol = env.tmp / "policy.toml"
    pol.write_text("[limits]\ntimeout = true\n")
    msg = _error(env, policy_file=str(pol))
    assert str(pol) in msg and "limits.timeout" in msg


def test_command_line_wins(env: Env) -> None:
    env.write_user('profile = "read-only"\n[network]\nmode = "off"\n'
                   '[limits]\ntimeout = 10\nmemory = "1G"\nmax_processes = 10\n'
                   '[sandbox]\nfallback = "refuse"\nbwrap = "system"\n'
                   '[filesystem]\ndeny_read = ["/a"]\n[environment]\nallow = ["A"]\n')
    pol = env.tmp / "policy.toml"
    pol.write_text('profile = "workspace-write"\n')
    extra = env.tmp / "extra"
    extra.mkdir()
    p = env.resolve(policy_file=str(pol), profile="full-access", network="on", timeout=99.0,
                    memory=0, max_processes=0, fallback="landlock", bwrap="/opt/bwrap",
                    writable=("extra",), deny_read=("/b",), env_allow=("B",))
    assert p.profile == "full-access"
    assert p.network == "on"
    assert p.limits.timeout == 99.0
    assert p.limits.memory is None  # 0 on the command line removes the limit
    assert p.limits.max_processes is None
    assert p.fallback == "landlock"
    assert p.bwrap == "/opt/bwrap"
    assert p.writable == (str(extra),)  # relative to cwd
    assert p.deny_read == ("/a", "/b")
    assert p.env_allow == ("A", "B")


def test_command_line_may_widen_over_a_project(env: Env) -> None:
    env.write_project('profile = "read-only"\n[limits]\ntimeout = 5\n')
    p = env.resolve(profile="workspace-write", timeout=50.0)
    assert p.profile == "workspace-write"
    assert p.limits.timeout == 50.0


def test_load_policy_helper(env: Env) -> None:
    env.write_user('profile = "full-access"\n')
    env.write_project('profile = "read-only"\n')
    pol = env.tmp / "policy.toml"
    pol.write_text("[limits]\ntimeout = 5\n")
    p = load_policy(str(pol), workspace=str(env.ws))
    assert p == Policy(workspace=os.path.realpath(env.ws), limits=Limits(timeout=5.0))


# ---------------------------------------------------------------------------------------------
# Malformed files.

BAD_DOCUMENTS = [
    ("[filesystem]\nwritabel = []\n", "writabel"),
    ("[limits]\ntimeout = true\n", "limits.timeout"),
    ('[limits]\nmax_processes = "12"\n', "limits.max_processes"),
    ("[limits]\nmax_processes = 1.5\n", "limits.max_processes"),
    ('[limits]\nmemory = "lots"\n', "limits.memory"),
    ("[limits]\nmemory = -1\n", "limits.memory"),
    ('[limits]\ntimeout = "-5"\n', "limits.timeout"),
    ("[limits]\ntimeout = nan\n", "limits.timeout"),
    ('[limits]\ntimeout = "5 days"\n', "limits.timeout"),
    ("profile = 1\n", "profile"),
    ('profile = "yolo"\n', "profile"),
    ('[network]\nmode = "everything"\n', "network.mode"),
    ("[network]\nmode = false\n", "network.mode"),
    ('[filesystem]\ndeny_read = "/x"\n', "filesystem.deny_read"),
    ("[filesystem]\nprotected = [1]\n", "filesystem.protected"),
    ('[environment]\nset = ["A=1"]\n', "environment.set"),
    ("[environment]\nset = { A = 1 }\n", "environment.set"),
    ('[devices]\ngpu = "yes"\n', "devices.gpu"),
    ('[sandbox]\nfallback = "ignore"\n', "sandbox.fallback"),
    ("[sandbox]\nbwrap = 1\n", "sandbox.bwrap"),
    ('[trust]\nworkspaces = "/x"\n', "trust.workspaces"),
    ("[bogus]\nx = 1\n", "bogus"),
    ("colour = 1\n", "colour"),
    ('network = "on"\n', "network"),
]


@pytest.mark.parametrize(("text", "key"), BAD_DOCUMENTS)
def test_bad_user_config(env: Env, text: str, key: str) -> None:
    path = env.write_user(text)
    msg = _error(env)
    assert str(path) in msg
    assert key in msg.replace("'", "").replace('"', "")


@pytest.mark.parametrize(("text", "key"), BAD_DOCUMENTS)
def test_bad_project_file(env: Env, text: str, key: str) -> None:
    path = env.write_project(text)
    msg = _error(env)
    assert str(path) in msg
    assert key in msg.replace("'", "").replace('"', "")


@pytest.mark.parametrize("text", [
    "profile = \n",
    "[limits\ntimeout = 1\n",
    'profile = "read-only"\nprofile = "read-only"\n',
    "profile = 'unterminated\n",
    "\xff\xfe garbage",
])
def test_toml_syntax_error_names_the_file(env: Env, text: str) -> None:
    path = env.write_project(text)
    msg = _error(env)
    assert str(path) in msg
    assert "TOML" in msg or "cannot read" in msg


def test_invalid_utf8_names_the_file(env: Env) -> None:
    env.project_file.write_bytes(b'profile = "read-\xff-only"\n')
    msg = _error(env)
    assert str(env.project_file) in msg


def test_policy_file_that_is_a_directory(env: Env) -> None:
    msg = _error(env, policy_file=str(env.tmp))
    assert str(env.tmp) in msg


def test_project_file_that_is_a_directory(env: Env) -> None:
    env.project_file.mkdir()
    (env.project_file / "x").write_text("")
    msg = _error(env)
    assert str(env.project_file) in msg


def test_project_file_that_is_an_empty_directory_is_no_file(env: Env) -> None:
    """A running sandbox covers a missing .ringfence.toml with an empty directory; a run that
    starts meanwhile reads that as "no project file", not as an error."""
    env.project_file.mkdir()
    assert env.resolve().profile == "workspace-write"


@pytest.mark.parametrize("text", [
    "[limits]\nmemory = 1.5\n",
    "[limits]\nmemory = [1]\n",
    "[limits]\ntimeout = [30]\n",
    "[limits]\ntimeout = { s = 30 }\n",
    "[limits]\ntimeout = 1979-05-27T07:32:00Z\n",
])
def test_non_scalar_size_or_seconds_is_a_policy_error(env: Env, text: str) -> None:
    path = env.write_project(text)
    msg = _error(env)
    assert str(path) in msg and "limits." in msg


# ---------------------------------------------------------------------------------------------
# Workspaces and writable roots.

def test_missing_workspace(env: Env) -> None:
    msg = _error(env, workspace=str(env.tmp / "missing"))
    assert "missing" in msg and "no such directory" in msg


def test_workspace_that_is_a_file(env: Env) -> None:
    f = env.tmp / "file"
    f.write_text("x")
    msg = _error(env, workspace=str(f))
    assert str(f) in msg and "not a directory" in msg


def test_workspace_is_resolved(env: Env) -> None:
    link = env.tmp / "ln"
    link.symlink_to(env.ws)
    assert env.resolve(workspace=str(link)).workspace == os.path.realpath(env.ws)
    assert env.resolve(workspace="home/proj/").workspace == os.path.realpath(env.ws)


def test_implicit_workspace_is_cwd(env: Env) -> None:
    p = resolve(Options(), cwd=str(env.ws))
    assert p.workspace == os.path.realpath(env.ws)


@pytest.mark.parametrize("where", ["/", "home"])
def test_implicit_workspace_root_or_home_refused(env: Env, where: str) -> None:
    cwd = "/" if where == "/" else str(env.home)
    with pytest.raises(PolicyError, match="--workspace"):
        resolve(Options(), cwd=cwd)


@pytest.mark.parametrize("where", ["/", "home"])
def test_explicit_workspace_root_or_home_accepted(env: Env, where: str) -> None:
    ws = "/" if where == "/" else str(env.home)
    p = resolve(Options(workspace=ws, use_project_file=where != "/"), cwd=str(env.ws))
    assert p.workspace == os.path.realpath(ws)


def test_writable_root_missing(env: Env) -> None:
    msg = _error(env, writable=(str(env.tmp / "nothere"),))
    assert "nothere" in msg and "no such directory" in msg


def test_writable_root_that_is_a_file(env: Env) -> None:
    f = env.tmp / "f"
    f.write_text("")
    msg = _error(env, writable=(str(f),))
    assert str(f) in msg and "file" in msg


def test_writable_root_from_user_config_that_is_a_file(env: Env) -> None:
    (env.home / "f").write_text("")
    env.write_user('[filesystem]\nwritable = ["~/f"]\n')
    assert str(env.home / "f") in _error(env)


def test_writable_roots_are_resolved(env: Env) -> None:
    real = env.tmp / "real"
    real.mkdir()
    (env.tmp / "ln").symlink_to(real)
    assert env.resolve(writable=("ln",)).writable == (str(real),)


@pytest.mark.parametrize("name", ["with space", "new\nline", "ünïcødé ✓", "quote\"'s", "tab\t"])
def test_odd_path_names(env: Env, name: str) -> None:
    ws = env.tmp / name
    ws.mkdir()
    (ws / name).mkdir()
    (ws / ".ringfence.toml").write_text(
        f'profile = "read-only"\n[filesystem]\ndeny_read = [{_q(name)}]\n', encoding="utf-8")
    extra = env.tmp / f"w {name}"
    extra.mkdir()
    env.write_user(f"[filesystem]\nwritable = [{_q(extra)}]\n")
    p = env.resolve(workspace=str(ws))
    assert p.workspace == os.path.realpath(ws)
    assert p.profile == "read-only"
    assert p.deny_read == (os.path.join(os.path.realpath(ws), name),)
    assert p.writable == (str(extra),)


# ---------------------------------------------------------------------------------------------
# Nothing on disk changes when resolving fails.

def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("text", [
    'profile = "full-access"\n',
    "[limits]\ntimeout = true\n",
    "[bogus]\n",
    "profile = \n",
    '[filesystem]\nwritable = ["sub"]\n',
])
def test_failing_resolve_changes_nothing_in_the_workspace(env: Env, text: str) -> None:
    (env.ws / "sub").mkdir()
    (env.ws / "src.py").write_text("print(1)\n")
    env.write_project(text)
    env.write_user('[limits]\ntimeout = 60\n')
    before_ws, before_cfg = _snapshot(env.ws), _snapshot(env.config)
    with pytest.raises(PolicyError):
        env.resolve()
    assert _snapshot(env.ws) == before_ws
    assert _snapshot(env.config) == before_cfg


def test_failing_resolve_leaves_no_temporary_files_in_the_state_dir(env: Env) -> None:
    env.write_project("[bogus]\n")
    with pytest.raises(PolicyError):
        env.resolve()
    leftovers = [p.name for p in env.state.rglob("*") if p.is_file()]
    assert leftovers in ([], ["policy-cache.marshal"])


def test_unmarshallable_document_leaves_no_temporary_file(env: Env) -> None:
    env.write_project("[bogus]\nwhen = 1979-05-27\n")
    with pytest.raises(PolicyError):
        env.resolve()
    leftovers = [p.name for p in env.state.rglob("*") if p.is_file()]
    assert leftovers in ([], ["policy-cache.marshal"])


# ---------------------------------------------------------------------------------------------
# The parse cache.

def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_cache_is_written_in_the_state_dir(env: Env) -> None:
    env.write_project('profile = "read-only"\n')
    env.resolve()
    assert env.cache_file.is_file()
    with open(env.cache_file, "rb") as fh:
        entries = marshal.load(fh)
    assert entries[str(env.project_file)][1] == {"profile": "read-only"}


def test_cache_is_consulted_when_the_file_is_unchanged(env: Env) -> None:
    path = env.write_project('profile = "read-only"\n')
    assert read_toml(str(path)) == {"profile": "read-only"}
    with open(env.cache_file, "rb") as fh:
        entries = marshal.load(fh)
    key, _ = entries[str(path)]
    entries[str(path)] = (key, {"profile": "from-the-cache"})
    with open(env.cache_file, "wb") as fh:
        marshal.dump(entries, fh)
    assert read_toml(str(path)) == {"profile": "from-the-cache"}
    assert read_toml(str(path), cache=False) == {"profile": "read-only"}


def test_edited_file_is_picked_up(env: Env) -> None:
    path = env.write_project('profile = "read-only"\n')
    assert env.resolve().profile == "read-only"
    path.write_text('[network]\nmode = "off"\n[limits]\ntimeout = 7\n')
    _bump_mtime(path)
    p = env.resolve()
    assert p.profile == "workspace-write"
    assert p.limits.timeout == 7


def test_same_size_edit_is_picked_up(env: Env) -> None:
    path = env.write_project("[limits]\ntimeout = 10\n")
    assert env.resolve().limits.timeout == 10
    path.write_text("[limits]\ntimeout = 20\n")
    _bump_mtime(path)
    assert env.resolve().limits.timeout == 20


def test_replaced_file_is_picked_up(env: Env) -> None:
    path = env.write_project("[limits]\ntimeout = 10\n")
    assert env.resolve().limits.timeout == 10
    new = env.ws / "new.toml"
    new.write_text("[limits]\ntimeout = 30\n")
    st = path.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime, other inode
    os.replace(new, path)
    assert env.resolve().limits.timeout == 30


def test_cache_serves_several_files(env: Env) -> None:
    env.write_user("[limits]\ntimeout = 100\n")
    env.write_project("[limits]\ntimeout = 50\n")
    for _ in range(3):
        assert env.resolve().limits.timeout == 50
    with open(env.cache_file, "rb") as fh:
        entries = marshal.load(fh)
    assert set(entries) == {str(env.user_config), str(env.project_file)}


@pytest.mark.parametrize("blob", [
    b"",
    b"\x00",
    b"\xff\xfe\xfd",
    marshal.dumps({"x": 1})[:-1],  # truncated
])
def test_corrupt_cache_is_ignored(env: Env, blob: bytes) -> None:
    env.cache_file.parent.mkdir(parents=True)
    env.cache_file.write_bytes(blob)
    env.write_project('profile = "read-only"\n')
    assert env.resolve().profile == "read-only"
    # and it is rewritten with a good entry
    assert read_toml(str(env.project_file)) == {"profile": "read-only"}


@pytest.mark.parametrize("blob", [
    b"garbage text\n",  # 'g' is marshal's float type code: loads as a float
    b"N",  # marshal's None
    marshal.dumps([1, 2, 3]),
], ids=["float", "none", "list"])
def test_cache_that_is_not_a_dict_is_ignored(env: Env, blob: bytes) -> None:
    env.cache_file.parent.mkdir(parents=True)
    env.cache_file.write_bytes(blob)
    env.write_project('profile = "read-only"\n')
    assert env.resolve().profile == "read-only"


def test_cache_entry_of_the_wrong_shape_is_ignored(env: Env) -> None:
    path = env.write_project('profile = "read-only"\n')
    env.cache_file.parent.mkdir(parents=True)
    env.cache_file.write_bytes(marshal.dumps({str(path): 5}))
    assert env.resolve().profile == "read-only"


def test_unwritable_state_dir_does_not_fail(env: Env) -> None:
    env.state.write_text("a file where the state directory should be")
    env.write_project('profile = "read-only"\n')
    assert env.resolve().profile == "read-only"


# ---------------------------------------------------------------------------------------------
# Sizes, seconds and counts.

@pytest.mark.parametrize(("text", "expected"), [
    ("4G", 4 * GiB), ("4g", 4 * GiB), ("4GiB", 4 * GiB), ("4GB", 4 * GiB), ("4gib", 4 * GiB),
    (" 4G ", 4 * GiB), ("512M", 512 * MiB), ("512MiB", 512 * MiB), ("1K", 1024),
    ("1KiB", 1024), ("2T", 2 << 40), ("1.5G", int(1.5 * GiB)), ("0.5K", 512), ("100", 100),
    ("100B", 100), ("100b", 100), (1048576, 1048576), (1, 1), ("1e3", 1000),
    ("none", None), ("None", None), ("unlimited", None), (0, None), ("0", None),
    ("0G", None),
])
def test_parse_size(text: str | int, expected: int | None) -> None:
    assert parse_size(text, "memory") == expected


@pytest.mark.parametrize("text", [
    -1, "-1", "-1G", True, False, "garbage", "", "G", "GiB", "4X", "4XiB", "4 G B", "1.2.3G",
    "nan", "nanG", "inf", "0x10",
])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(PolicyError, match="memory"):
        parse_size(text, "memory")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1e999", "infG", "1e400K"])
def test_parse_size_rejects_infinity(text: str) -> None:
    with pytest.raises(PolicyError, match="memory"):
        parse_size(text, "memory")


def test_parse_size_float_is_a_policy_error_or_a_size() -> None:
    try:
        parse_size(1.5, "memory")  # type: ignore[arg-type]
    except PolicyError:
        pass


@pytest.mark.parametrize(("text", "expected"), [
    (30, 30.0), (2.5, 2.5), ("30", 30.0), ("90s", 90.0), ("90S", 90.0), ("10m", 600.0),
    ("1.5m", 90.0), ("2h", 7200.0), (" 5s ", 5.0), ("0.25", 0.25),
    ("none", None), ("unlimited", None), (0, None), ("0", None), ("0s", None), (0.0, None),
])
def test_parse_seconds(text: str | float, expected: float | None) -> None:
    assert parse_seconds(text, "timeout") == expected


@pytest.mark.parametrize("text", [
    -1, -0.5, "-1", "-1m", True, False, "garbage", "", "s", "10d", "10ms", "1h30m",
    math.nan, "nan",
])
def test_parse_seconds_rejects(text: object) -> None:
    with pytest.raises(PolicyError, match="timeout"):
        parse_seconds(text, "timeout")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [math.inf, "1e999", "1e999s"])
def test_parse_seconds_rejects_infinity(text: object) -> None:
    with pytest.raises(PolicyError, match="timeout"):
        parse_seconds(text, "timeout")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    (5, 5), (1, 1), (0, None), ("none", None), (" None ", None), ("unlimited", None),
])
def test_parse_count(text: str | int, expected: int | None) -> None:
    assert parse_count(text, "max_processes") == expected


@pytest.mark.parametrize("text", [-1, True, False, "5", "", 1.5, 5.0, None, [5]])
def test_parse_count_rejects(text: object) -> None:
    with pytest.raises(PolicyError, match="max_processes"):
        parse_count(text, "max_processes")  # type: ignore[arg-type]


def test_validate_flattens() -> None:
    flat = validate({"profile": "read-only", "limits": {"timeout": "1m"},
                     "environment": {"set": {"A": "b"}}}, "src")
    assert flat == {"profile": "read-only", "limits.timeout": 60.0,
                    "environment.set": {"A": "b"}}


def test_validate_messages_name_source_and_key() -> None:
    with pytest.raises(PolicyError, match=r"^SRC: .*limits\.'nope'"):
        validate({"limits": {"nope": 1}}, "SRC")
    with pytest.raises(PolicyError, match=r"^SRC: \[limits\] must be a table"):
        validate({"limits": 3}, "SRC")
    with pytest.raises(PolicyError, match=r"^SRC: unknown key ''"):
        validate({"": 3}, "SRC")
