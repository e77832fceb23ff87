"""Denials an agent can act on (ringfence.denials): pure parsing, then real denied commands."""

from __future__ import annotations

import os
import sys

import pytest

import ringfence
from ringfence.denials import analyse, from_stderr, host_in, path_in
from ringfence.session import Session
from tests.conftest import World

PY = os.path.realpath(sys.executable)
WS = "/src/app"
POLICY = ringfence.Policy(workspace=WS)


# -- pure: the shapes of error messages ------------------------------------------------------

@pytest.mark.parametrize(("line", "message", "path"), [
    ("touch: cannot touch '/etc/x': Read-only file system", "Read-only file system", "/etc/x"),
    ("mkdir: cannot create directory \u2018/opt/d\u2019: Read-only file system",
     "Read-only file system", "/opt/d"),
    ("/bin/sh: 1: cannot create /root/.bashrc: Read-only file system",
     "Read-only file system", "/root/.bashrc"),
    ("OSError: [Errno 30] Read-only file system: '/usr/lib/x.py'", "Read-only file system",
     "/usr/lib/x.py"),
    ("PermissionError: [Errno 13] Permission denied: '/src/app/.git/hooks/pre-commit'",
     "Permission denied", "/src/app/.git/hooks/pre-commit"),
    ("bash: /home/u/.profile: Permission denied", "Permission denied", "/home/u/.profile"),
    ("cp: cannot create regular file 'out/x': Read-only file system", "Read-only file system",
     "out/x"),
    ("ls: cannot access '/home/u/.ssh/id_rsa': No such file or directory",
     "No such file or directory", "/home/u/.ssh/id_rsa"),
    ("npm ERR! Error: EROFS: read-only file system", "Read-only file system", ""),
])
def test_path_in(line: str, message: str, path: str) -> None:
    assert path_in(line, message) == path


@pytest.mark.parametrize(("text", "host"), [
    ("curl: (6) Could not resolve host: example.org", "example.org"),
    ("HTTPSConnectionPool(host='files.example.com', port=443): Max retries exceeded",
     "files.example.com"),
    ("fatal: unable to access 'https://git.example.net/repo.git/': Could not resolve host",
     "git.example.net"),
    ("dial tcp: lookup proxy.example.io on 127.0.0.53:53: no such host", "proxy.example.io"),
    ("connect to 10.0.0.1 port 80: Network is unreachable", ""),
])
def test_host_in(text: str, host: str) -> None:
    assert host_in(text) == host


def test_write_outside_is_a_write_denial_with_a_writable_root() -> None:
    [d] = from_stderr("touch: cannot touch '/opt/data/out.txt': Read-only file system",
                      POLICY, cwd=WS, home="/home/u")
    assert (d.kind, d.target, d.certain) == ("write", "/opt/data/out.txt", False)
    assert d.suggestion is not None
    assert d.suggestion.to_request("to save the report") == {
        "change": "writable_root", "value": "/opt/data", "justification": "to save the report"}


def test_relative_paths_resolve_against_the_cwd() -> None:
    policy = ringfence.Policy(workspace=WS, profile="read-only")
    [d] = from_stderr("cp: cannot create regular file 'out/x': Read-only file system",
                      policy, cwd=WS + "/sub", home="/home/u")
    assert d.target == WS + "/sub/out/x"


def test_a_refusal_the_policy_allows_is_not_ours() -> None:
    """"Permission denied" on a path inside the workspace (a chmod 000 file): the sandbox did
    not refuse it, so no denial (and no pointless escalation request)."""
    assert from_stderr("cat: /src/app/secret: Permission denied", POLICY, cwd=WS,
                       home="/home/u") == []
    assert from_stderr("sh: /tmp/x: Permission denied", POLICY, cwd=WS, home="/home/u") == []


def test_protected_paths_get_no_suggestion() -> None:
    [d] = from_stderr("sh: 1: cannot create /src/app/.git/hooks/pre-commit: Read-only file "
                      "system", POLICY, cwd=WS, home="/home/u")
    assert d.kind == "write" and d.suggestion is None and "protected" in d.message


def test_deny_read() -> None:
    [d] = from_stderr("cat: /home/u/.ssh/id_rsa: No such file or directory", POLICY, cwd=WS,
                      home="/home/u")
    assert (d.kind, d.target) == ("read", "/home/u/.ssh/id_rsa")
    assert d.suggestion is not None and d.suggestion.change == "allow_read"
    # a missing file elsewhere is just missing
    assert from_stderr("cat: /src/app/nope: No such file or directory", POLICY, cwd=WS,
                       home="/home/u") == []


def test_network_guess_names_the_host_from_stderr_or_the_command() -> None:
    [d] = from_stderr("curl: (6) Could not resolve host: pkgs.example.org", POLICY, cwd=WS)
    assert (d.kind, d.target, d.certain) == ("network", "pkgs.example.org", False)
    assert d.suggestion is not None and d.suggestion.to_request()["value"] == (
        "pkgs.example.org")
    [d] = from_stderr("OSError: [Errno 97] Address family not supported by protocol", POLICY,
                      cwd=WS, command=["fetch", "https://data.example.com/x.csv"])
    assert d.target == "data.example.com"
    on = POLICY.replace(network="on")
    assert from_stderr("curl: (6) Could not resolve host: x.example", on, cwd=WS) == []


def test_limit_guesses_only_where_the_limit_is_set() -> None:
    line = "MemoryError"
    assert from_stderr(line, POLICY, cwd=WS) == []
    limited = POLICY.replace(limits=ringfence.Limits(memory=256 << 20))
    [d] = from_stderr(line, limited, cwd=WS)
    assert (d.kind, d.target, d.certain) == ("limit", "memory", False)
    assert d.suggestion is not None and d.suggestion.value == 512 << 20
    [d] = from_stderr("sh: 1: Cannot fork", POLICY, cwd=WS)
    assert d.target == "max_processes" and d.suggestion is not None
    assert d.suggestion.value == 8192


def test_limits_ringfence_enforced_are_certain() -> None:
    policy = POLICY.replace(limits=ringfence.Limits(timeout=30))
    denials = analyse(137, ["timeout"], b"", policy)
    [d] = denials
    assert (d.kind, d.target, d.certain) == ("limit", "timeout", True)
    assert d.suggestion is not None and d.suggestion.to_request()["change"] == "timeout"
    assert d.suggestion.value == 60
    # a certain limit is not repeated as a guess
    both = analyse(153, ["file_size"], b"write: File too large", POLICY)
    assert [(d.target, d.certain) for d in both] == [("file_size", True)]


def test_sigsys_is_a_certain_syscall_denial() -> None:
    [d] = analyse(128 + 31, [], b"", POLICY)
    assert (d.kind, d.certain, d.suggestion) == ("syscall", True, None)


def test_success_has_no_denials_and_dicts_are_json_ready() -> None:
    import json

    assert analyse(0, [], b"Permission denied: '/etc/x'", POLICY) == ()
    [d] = analyse(1, [], b"touch: cannot touch '/etc/x': Read-only file system", POLICY)
    assert json.loads(json.dumps(d.to_dict()))["suggestion"]["change"] == "writable_root"


# -- real denied commands ----------------------------------------------------------------------

def test_denials_from_real_commands(in_world: World) -> None:
    """Real refusals in a session: writing outside, a protected path, a deny-read secret, the
    network, the time limit, the file size limit. Each names its target; the guesses are
    marked, the limits are certain."""
    world = in_world
    world.git_init()
    policy = ringfence.Policy(workspace=str(world.workspace),
                              limits=ringfence.Limits(file_size=1 << 20))
    with Session(policy) as s:
        target = world.outside / "new.txt"
        [d] = s.run(["touch", str(target)]).denials
        assert (d.kind, d.target, d.certain) == ("write", str(target), False)
        assert d.suggestion is not None and d.suggestion.value == str(world.outside)

        [d] = s.run("echo evil > .git/hooks/pre-commit").denials
        assert d.kind == "write" and d.suggestion is None

        [d] = s.run(["ls", str(world.home / ".ssh" / "id_ed25519")]).denials
        assert d.kind == "read" and d.target.endswith("/.ssh/id_ed25519")

        code = ("import urllib.request; "
                "urllib.request.urlopen('http://pkgs.example.invalid/simple', timeout=5)")
        [d] = s.run([PY, "-c", code]).denials
        assert (d.kind, d.certain) == ("network", False)
        assert d.target == "pkgs.example.invalid"

        r = s.run(["sleep", "10"], timeout=0.2)
        [d] = r.denials
        assert (d.kind, d.target, d.certain) == ("limit", "timeout", True)

        r = s.run("head -c 2097152 /dev/zero > big.bin")
        assert [(d.target, d.certain) for d in r.denials] == [("file_size", True)]

        # the control: the same write is allowed once the suggested root is writable
        w = s.widen(writable=[str(world.outside)])
        assert w.restarted and s.run(["touch", str(target)]).exit_code == 0


def test_one_shot_results_carry_denials(in_world: World) -> None:
    world = in_world
    policy = ringfence.Policy(workspace=str(world.workspace))
    r = ringfence.run(["touch", str(world.outside / "x")], policy)
    assert r.exit_code != 0 and [d.kind for d in r.denials] == ["write"]
    assert r.to_json()["denials"][0]["suggestion"]["value"] == str(world.outside)
    assert ringfence.run(["true"], policy).denials == ()


def test_proxy_refusals_are_certain_and_narrow() -> None:
    """Connections the allowlist proxy refused: one denial per host and port, certain; a name
    not in the list suggests that name, a refused port that port; a deny entry or a private
    address suggests nothing (the user decides those); allowed and malformed ones are not
    denials."""
    from ringfence.denials import from_proxy
    from ringfence.network.proxy import Connection

    def conn(host: str, port: int, allowed: bool, rule: str, reason: str = "no") -> Connection:
        return Connection(protocol="http", host=host, port=port, allowed=allowed, rule=rule,
                          reason=reason, address="", sent=0, received=0, duration=0.0)

    found = from_proxy([
        conn("ok.test", 443, True, "allow ok.test"),
        conn("new.test", 443, False, "default", "new.test is not in the allow list"),
        conn("new.test", 443, False, "default"),
        conn("ok.test", 8080, False, "ports"),
        conn("bad.test", 443, False, "deny bad.test"),
        conn("lan.test", 443, False, "address", "10.0.0.5 is a private address"),
        conn("", 0, False, "malformed"),
    ])
    assert [(d.target, d.certain) for d in found] == [
        ("new.test:443", True), ("ok.test:8080", True), ("bad.test:443", True),
        ("lan.test:443", True)]
    assert found[0].suggestion is not None and found[0].suggestion.to_request()["change"] == \
        "allow_domain"
    assert found[1].suggestion is not None and found[1].suggestion.value == 8080
    assert found[2].suggestion is None and found[3].suggestion is None
    assert "not in the allow list" in found[0].message
