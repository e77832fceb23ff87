"""The allowlist in the policy loader, the Linux plan (pure, made-up hosts) and the presets."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from ringfence.errors import PolicyError, UnavailableError
from ringfence.network.presets import expand
from ringfence.network.rules import NetworkRules
from ringfence.plan import PROXY_PORT, plan_linux
from ringfence.policy.load import Options, resolve
from ringfence.policy.model import Policy
from tests.test_plan import CMD, facts, policy


def allowlist_policy(**rules: object) -> Policy:
    return policy(network="allowlist", network_rules=NetworkRules(**rules))


def test_plan_has_netns_fds_and_proxy_env() -> None:
    plan = plan_linux(allowlist_policy(allow=["example.org"], presets=["pip"]), CMD,
                      facts(preset_hosts=(("pip", "index.example.com"),)))
    argv = list(plan.argv)
    assert "--unshare-net" in argv
    assert argv[argv.index("--info-fd") + 1] == "{info-fd}"
    assert argv[argv.index("--block-fd") + 1] == "{block-fd}"
    assert plan.seccomp == (False, False)  # inet sockets inside: only lo exists
    assert plan.network is not None
    assert plan.network.preset_hosts == (("pip", "index.example.com"),)
    proxy = f"http://127.0.0.1:{PROXY_PORT}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "PIP_PROXY",
                 "npm_config_proxy", "npm_config_https_proxy", "CARGO_HTTP_PROXY"):
        assert plan.env[name] == proxy
    assert plan.env["ALL_PROXY"] == f"socks5h://127.0.0.1:{PROXY_PORT}"
    assert "ProxyCommand" in plan.env["GIT_SSH_COMMAND"]
    # resolver sockets of the host stay out (they are only bound with network on)
    assert "/run/systemd/resolve" not in argv


def test_users_env_set_wins_over_proxy_env() -> None:
    pol = allowlist_policy(allow=["example.org"]).replace(env_set=(("PIP_PROXY", "mine"),))
    assert plan_linux(pol, CMD, facts()).env["PIP_PROXY"] == "mine"


def test_allowlist_without_user_namespaces_is_refused() -> None:
    """The Landlock fallback has no network namespace: allowlist refuses, never degrades."""
    with pytest.raises(UnavailableError, match="network namespace"):
        plan_linux(allowlist_policy(allow=["example.org"]).replace(fallback="landlock"), CMD,
                   facts(userns="user namespaces are disabled", landlock_abi=4))


def test_allowlist_with_full_access_is_an_error() -> None:
    with pytest.raises(PolicyError, match="full-access"):
        plan_linux(allowlist_policy().replace(profile="full-access"), CMD, facts())


def test_allowlist_policy_defaults_to_nothing() -> None:
    pol = Policy(workspace="/w", network="allowlist")
    assert pol.network_rules == NetworkRules() and pol.network_rules.allow == ()


# ---------------------------------------------------------------------------------------------
# Loading.

def _resolve(tmp: Path, text: str, **opts: object) -> Policy:
    path = tmp / "p.toml"
    path.write_text(text)
    return resolve(Options(policy_file=str(path), workspace=str(tmp), use_user_config=False,
                           use_project_file=False, **opts))  # type: ignore[arg-type]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def test_policy_file_keys(tmp: Path) -> None:
    pol = _resolve(tmp, '[network]\nmode = "allowlist"\nallow = ["Example.org", "*.x.org"]\n'
                        'deny = ["a.x.org"]\nports = [443, 8443]\nallow_private = true\n')
    rules = pol.network_rules
    assert rules is not None
    assert rules.allow == ("example.org", "*.x.org") and rules.deny == ("a.x.org",)
    assert rules.ports == (443, 8443) and rules.allow_private and not rules.allow_local


@pytest.mark.parametrize(("text", "word"), [
    ('[network]\nallow = ["*"]\n', "every host"),
    ('[network]\nallow = ["*.com"]\n', "too broad"),
    ('[network]\ndeny = ["http://x.org"]\n', "scheme"),
    ('[network]\nallow = ["x.org/path"]\n', "path"),
    ('[network]\nallow = ["x.org:22"]\n', "port"),
    ('[network]\nallow = "x.org"\n', "list"),
    ('[network]\nports = [0]\n', "port"),
    ('[network]\npresets = ["all"]\n', "preset"),
    ('[network]\nallow_local = "yes"\n', "true or false"),
])
def test_policy_file_errors_name_file_and_key(tmp: Path, text: str, word: str) -> None:
    with pytest.raises(PolicyError) as err:
        _resolve(tmp, text)
    assert "p.toml" in str(err.value) and word in str(err.value)


def test_cli_allow_domain_implies_allowlist_and_ports_add(tmp: Path) -> None:
    pol = _resolve(tmp, "", allow_domains=("example.org",), ports=(8080,))
    assert pol.network == "allowlist"
    assert pol.network_rules is not None and pol.network_rules.ports == (80, 443, 8080)


def test_empty_allowlist_in_file_allows_nothing(tmp: Path) -> None:
    pol = _resolve(tmp, '[network]\nmode = "allowlist"\nallow = []\n')
    assert pol.network_rules is not None and pol.network_rules.allow == ()


# ---------------------------------------------------------------------------------------------
# Presets: hosts come from the package managers' own configuration.

def test_pip_preset_reads_the_configured_index() -> None:
    env = {**os.environ, "PIP_INDEX_URL": "https://mirror.example.com/simple/",
           "PIP_EXTRA_INDEX_URL": "https://extra.example.net/simple/ file:///local"}
    hosts = [h for _, h in expand(["pip"], env)]
    assert "mirror.example.com" in hosts and "extra.example.net" in hosts
    pytest.importorskip("pip")
    from pip._internal.models.index import PyPI

    assert PyPI.netloc not in hosts  # a configured index replaces the default


def test_pip_preset_default_comes_from_pip_itself() -> None:
    pytest.importorskip("pip")
    from pip._internal.models.index import PyPI

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    hosts = [h for _, h in expand(["pip"], env)]
    assert PyPI.netloc in hosts and PyPI.file_storage_domain in hosts


def test_npm_preset_reads_the_registry() -> None:
    if not shutil.which("npm"):
        pytest.skip("npm is not installed on this machine")
    env = {**os.environ, "npm_config_registry": "https://npm-mirror.example.com/"}
    assert expand(["npm"], env) == (("npm", "npm-mirror.example.com"),)


def test_npm_preset_without_npm_fails_closed() -> None:
    env = {"PATH": str(Path(sys.executable).parent / "no-such-dir")}
    with pytest.raises(UnavailableError, match="npm"):
        expand(["npm"], env)


def test_npm_preset_ignores_the_projects_npmrc(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a sandboxed command (or the cloned repository itself) writes ``.npmrc`` with
    ``registry=http://evil.test/`` into the workspace; npm run from there reads it, and the
    next run's ``--network-preset npm`` would allow the attacker's host. Only the user's and
    the system's npm configuration count."""
    if not shutil.which("npm"):
        pytest.skip("npm is not installed on this machine")
    (tmp_path / "package.json").write_text("{}\n")
    (tmp_path / ".npmrc").write_text("registry=http://evil.test/\n")
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    hosts = [host for _, host in expand(["npm"], env)]
    assert hosts and "evil.test" not in hosts


@pytest.mark.parametrize("program", ["python3", "npm"])
def test_presets_never_run_a_program_from_a_writable_root(tmp_path: Path, program: str) -> None:
    """Attack: the workspace holds a virtualenv (or ``node_modules/.bin``) that is first on the
    user's PATH; a sandboxed command rewrites its ``python3`` (or a ``.pth`` file, or ``npm``)
    and the next ``--network-preset`` run would execute it on the host, unsandboxed, to read
    the package manager's configuration. Programs inside the writable roots are passed over
    for the next one on PATH."""
    root = tmp_path / "ws"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    ran = tmp_path / "ran"
    fake = bin_dir / program
    fake.write_text(f"#!/bin/sh\ntouch '{ran}'\necho https://evil.example.com/\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "NPM_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    preset = "pip" if program == "python3" else "npm"
    try:
        hosts = [h for _, h in expand([preset], env, avoid=[str(root)])]
    except UnavailableError:
        hosts = []  # nothing else on PATH: refused, which is fine
    assert not ran.exists(), f"ringfence ran the workspace's {program}"
    assert "evil.example.com" not in hosts
    from ringfence.network.presets import _which

    assert _which(program, env, ()) == str(fake)  # control: first on PATH, it would be run
    assert _which(program, env, (str(root),)) != str(fake)


def test_npm_preset_never_runs_a_node_from_a_writable_root(tmp_path: Path) -> None:
    """Attack: npm starts with ``#!/usr/bin/env node``, so a ``node`` planted in a workspace
    directory on PATH (an activated virtualenv, direnv's ``node_modules/.bin``) would run on
    the host when ringfence reads npm's registry. PATH given to npm leaves out the roots."""
    if not shutil.which("npm"):
        pytest.skip("npm is not installed on this machine")
    root = tmp_path / "ws"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    ran = tmp_path / "ran"
    (bin_dir / "node").write_text(f"#!/bin/sh\ntouch '{ran}'\nexit 1\n")
    (bin_dir / "node").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    expand(["npm"], env, avoid=[str(root)])
    assert not ran.exists(), "npm ran the workspace's node"
