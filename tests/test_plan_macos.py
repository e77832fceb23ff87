"""``plan_macos`` for made-up Macs (golden files), the Seatbelt profile text, and the path regexes.

All of this runs on any OS: the plan is pure. The goldens in tests/golden/macos/ are
``explain_plan(plan)``; rewrite them after an intended change with

    RINGFENCE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_plan_macos.py

and review the diff. Whether Seatbelt enforces what the plan says is for tests/macos/ (on a Mac).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.errors import PolicyError, UnavailableError
from ringfence.explain import explain_plan, render_text
from ringfence.plan import Plan
from ringfence.plan_macos import (
    NO_PATH,
    SANDBOX_EXEC,
    SHIM,
    STARTED,
    TMP_DIR,
    MacFacts,
    build_profile,
    darwin_path,
    fill_tmp_dir,
    path_regex,
    plan_macos,
    profile_sections,
)
from ringfence.policy.model import DEFAULT_PROTECTED, Frozen, Limits, Policy

GOLDEN = Path(__file__).parent / "golden" / "macos"
UPDATE = os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1"

HOME = "/Users/u"
WS = "/Users/u/proj"
DATA = "/tmp/data"  # a link into /private on a Mac
CONFIG = "/Users/u/Library/Application Support/ringfence"
CACHE = "/Users/u/Library/Caches/ringfence"
CMD = ("pytest", "-q")

ENVIRON = {
    "PATH": "/opt/homebrew/bin:/usr/bin:/bin",
    "HOME": HOME,
    "USER": "u",
    "TMPDIR": "/var/folders/xy/abc/T/",
    "GITHUB_TOKEN": "ghp_FAKE",
    "SSH_AUTH_SOCK": "/private/tmp/com.apple.launchd.X/Listeners",
    "DOCKER_HOST": "unix:///Users/u/.docker/run/docker.sock",
}
KINDS = {
    WS: "dir",
    WS + "/.git": "dir",
    WS + "/.git/hooks": "dir",
    WS + "/.git/config": "file",
    WS + "/.envrc": "file",
    WS + "/sub": "dir",
    WS + "/sub/.envrc": "file",
    HOME + "/.ssh": "dir",
    HOME + "/.gnupg": "link",
}
REALPATHS = {HOME + "/.gnupg": "/Volumes/keys/gnupg"}


def _top(root: str) -> list[tuple[str, str]]:
    return [(f"{root}/{name}", "protected name") for name in sorted(DEFAULT_PROTECTED)]


PROTECTED = (*_top(WS), (WS + "/sub/.envrc", "protected name"), *_top(DATA))


def facts(**changes: Any) -> MacFacts:
    values: dict[str, Any] = {
        "home": HOME, "uid": 501, "environ": dict(ENVIRON), "kinds": dict(KINDS),
        "realpaths": dict(REALPATHS), "protected_paths": PROTECTED, "config_dir": CONFIG,
        "state_dir": CONFIG, "cache_dir": CACHE,
    }
    values.update(changes)
    return MacFacts(**values)


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {
        "workspace": WS, "writable": (DATA,), "deny_read": (WS + "/secrets",),
        "limits": Limits(timeout=600),
    }
    values.update(changes)
    return Policy(**values)


def plan(pol: dict[str, Any] | None = None, **fact_changes: Any) -> Plan:
    return plan_macos(policy(**(pol or {})), CMD, facts(**fact_changes))


# ---------------------------------------------------------------------------------------------
# Goldens.

GOLDEN_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "workspace_write_network_off": ({}, {}),
    "read_only": ({"profile": "read-only", "writable": ()}, {"protected_paths": ()}),
    "full_access": ({"profile": "full-access"}, {}),
    "network_on": ({"network": "on"}, {}),
    "no_process_limit": ({"limits": Limits(max_processes=None)}, {}),
    "env_options": (
        {"env_allow": ("GITHUB_TOKEN",), "env_set": {"CI": "1"}}, {},
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name: str) -> None:
    pol, fact_changes = GOLDEN_CASES[name]
    data = json.loads(json.dumps(explain_plan(plan(pol, **fact_changes))))
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; run with RINGFENCE_UPDATE_GOLDEN=1 to create it")
    assert data == json.loads(path.read_text(encoding="utf-8")), (
        f"{path} differs; if the change is intended, rerun with RINGFENCE_UPDATE_GOLDEN=1"
    )


def test_no_stale_goldens() -> None:
    on_disk = {p.stem for p in GOLDEN.glob("*.json")}
    assert on_disk <= set(GOLDEN_CASES), f"goldens without a case: {on_disk - set(GOLDEN_CASES)}"


# ---------------------------------------------------------------------------------------------
# The profile text.

TOKEN = re.compile(r'\s+|;[^\n]*|#?"(?:[^"\\]|\\.)*"|\(|\)|[^\s()";]+|(.)', re.S)


def sexprs(text: str) -> list[Any]:
    """Parse SBPL as s-expressions: lists, "strings", #"regex literals", atoms, ; comments.
    Raises ValueError on anything unbalanced or unterminated."""
    tokens = TOKEN.finditer(text)
    stack: list[list[Any]] = [[]]
    for tok in tokens:
        if tok.group(1) is not None:
            raise ValueError(f"unexpected {tok.group(1)!r} at {tok.start()}")
        s = tok.group(0)
        if s.isspace() or s.startswith(";"):
            continue
        if s == "(":
            stack.append([])
        elif s == ")":
            if len(stack) == 1:
                raise ValueError(f"unbalanced ) at {tok.start()}")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(s)
    if len(stack) != 1:
        raise ValueError("unbalanced (: the profile ends inside a list")
    return stack[0]


PROFILES = {mode: build_profile(mode) for mode in ("off", "on", "allowlist")}


def test_sexpr_parser_rejects_what_it_should() -> None:
    for bad in ("(allow", "allow)", '(allow "x)', "(a))"):
        with pytest.raises(ValueError):
            sexprs(bad)


@pytest.mark.parametrize("mode", sorted(PROFILES))
def test_profile_parses_and_starts_from_deny_default(mode: str) -> None:
    forms = sexprs(PROFILES[mode])
    assert forms[:2] == [["version", "1"], ["deny", "default"]]
    # the only deny is the default: every other rule is an allow (no rule order to get wrong)
    assert [f[0] for f in forms[2:]] == ["allow"] * (len(forms) - 2)


def test_profile_names_paths_only_through_parameters() -> None:
    """Every string in every profile is an operation filter's constant: no user's path, and
    none of the paths of the plan below appear in it."""
    p = plan()
    assert p.seatbelt is not None
    text = p.seatbelt["profile"]
    assert text == PROFILES["off"]  # the same text for every host and policy
    for path in (HOME, WS, DATA, CONFIG, CACHE, "/Users", "/private/tmp", "/var/folders"):
        assert path not in text
    strings = [t.group(0).lstrip("#")[1:-1] for t in TOKEN.finditer(text)
               if t.group(0).startswith(('"', '#"'))]
    allowed_prefixes = ("/dev/", "com.apple.", "hw.", "machdep.", "kern.", "sysctl.", "vm.",
                        "security.", "^/dev/")  # devices, services, sysctl names
    params = {"WRITABLE", "PROTECTED", "PINNED", "DENY_READ", "TTYS", "PROXY_PORT"}
    for s in strings:
        assert s in params or s.startswith(allowed_prefixes) or s in ("*:*", "localhost:"), s
    # and the parameters named are exactly the ones the plan passes (plus the proxy's port)
    assert set(re.findall(r'\(param "([A-Z_]+)"\)', text)) == set(p.seatbelt["parameters"])


def test_every_allow_rule_has_a_comment() -> None:
    """Each (allow ...) in the data file follows a comment (or another allow of the same
    commented group), so the reason for it is written next to it."""
    here = Path(__file__).parent.parent / "src" / "ringfence" / "backends" / "seatbelt.sb"
    lines = here.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("(allow"):
            continue
        j = i - 1
        while j >= 0 and (lines[j].startswith(("(allow", " ")) and not lines[j].startswith(";")):
            j -= 1  # an allow right after another (and its continuation lines): same group
        assert j >= 0 and lines[j].startswith(";;"), f"line {i + 1}: {line} has no comment"


def test_profile_sections() -> None:
    sections = profile_sections()
    assert {"base", "network-on", "network-proxy"} <= set(sections)
    assert "network" not in PROFILES["off"].split("(deny default)")[1].split(";;")[0]
    assert "(allow network" not in PROFILES["off"]
    assert "(allow network-outbound (remote ip \"*:*\"))" in PROFILES["on"]
    assert '(param "PROXY_PORT")' in PROFILES["allowlist"]
    assert "(remote ip \"*:*\")" not in PROFILES["allowlist"]
    for text in PROFILES.values():
        assert "(allow signal (target same-sandbox))" in text
        assert "(allow default)" not in text
        assert "SecurityServer\")" not in text  # the keychain stays out of reach
        strings = [t.group(0) for t in TOKEN.finditer(text) if t.group(0).startswith('"')]
        assert not any("procargs" in x or "kern.proc.all" in x for x in strings)
        assert '"kern.proc."' not in strings  # only the per-pid entries
        forms = sexprs(text)
        ops = {op for form in forms if form[0] == "allow" for op in form[1:]
               if isinstance(op, str)}
        assert "file-link" not in ops  # no hard links: path rules could be bypassed by one
        assert "default" not in ops and "file*" not in ops and "file-write*" in ops
        assert ["allow", "file-map-executable",
                ["require-not", ["regex", ["param", '"DENY_READ"']]]] in forms


# ---------------------------------------------------------------------------------------------
# Path regexes (matched with Python's re, whose syntax for this subset is Seatbelt's).

def matches(regex: str, path: str) -> bool:
    return re.fullmatch(regex, path) is not None


def test_path_regex_subtree_and_case() -> None:
    r = path_regex([WS + "/.git/hooks", WS + "/.envrc"], subtree=True, fold=True)
    for hit in (WS + "/.git/hooks", WS + "/.git/hooks/pre-commit", WS + "/.GIT/Hooks",
                WS + "/.Git/HOOKS/post-checkout", "/USERS/U/PROJ/.ENVRC", WS + "/.envrc"):
        assert matches(r, hit), hit
    for miss in (WS + "/.git", WS + "/.git/hooksx", WS + "/.envrc2", WS + "/x.envrc",
                 WS + "/.git/config", "/Users/u/proj2/.envrc", WS + "/.git-hooks"):
        assert not matches(r, miss), miss


def test_path_regex_exact_and_case_sensitive() -> None:
    r = path_regex([WS, WS + "/.git"], subtree=False, fold=False)
    assert matches(r, WS) and matches(r, WS + "/.git")
    assert not matches(r, WS + "/.git/hooks") and not matches(r, "/users/u/proj")


def test_path_regex_escapes_regex_syntax() -> None:
    odd = "/Users/u/a.b+c(d)[e]{f}|g^h$i\\j*k?"
    r = path_regex([odd], subtree=True, fold=True)
    assert matches(r, odd) and matches(r, odd + "/x")
    assert not matches(r, odd.replace(".", "X"))


def test_path_regex_empty_matches_nothing() -> None:
    assert path_regex([], subtree=True, fold=True) == NO_PATH
    assert not matches(NO_PATH, "/")


_name = st.text(alphabet="abcXYZ.-_ +()[]$^", min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))
_path = st.lists(_name, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))


@given(st.lists(_path, min_size=1, max_size=6), _path, st.booleans())
def test_path_regex_matches_exactly_its_paths(paths: list[str], probe: str,
                                              subtree: bool) -> None:
    """The trie-merged expression accepts a path exactly when the path (in any letter case) is
    one of the paths, or below one of them with ``subtree``."""
    r = path_regex(paths, subtree=subtree, fold=True)

    def expected(p: str) -> bool:
        low = p.lower()
        for q in paths:
            q = q.lower()
            if low == q or (subtree and low.startswith(q + "/")):
                return True
        return False

    for candidate in (probe, *paths, *(p + "/x" for p in paths), *(p.upper() for p in paths)):
        assert matches(r, candidate) == expected(candidate), (paths, candidate, r)


# ---------------------------------------------------------------------------------------------
# The plan.

def test_argv_shape() -> None:
    p = plan()
    assert p.mode == "seatbelt"
    assert p.argv[:3] == (SANDBOX_EXEC, "-p", p.seatbelt["profile"])  # type: ignore[index]
    tail = p.argv.index("--")
    assert p.argv[tail:] == ("--", *SHIM, *CMD)
    d_args = p.argv[3:tail]
    assert list(d_args[0::2]) == ["-D"] * 5
    assert [a.split("=", 1)[0] for a in d_args[1::2]] == ["WRITABLE", "PROTECTED", "PINNED",
                                                           "DENY_READ", "TTYS"]
    assert dict(a.split("=", 1) for a in d_args[1::2]) == p.seatbelt["parameters"]  # type: ignore[index]


def test_darwin_paths_are_canonical() -> None:
    p = plan()
    sb = p.seatbelt
    assert sb is not None
    assert "/private/tmp/data" in sb["writable"]
    assert "/tmp/data" not in sb["writable"]
    assert "/private/tmp/data/.envrc" in sb["protected"]
    assert darwin_path("/var/folders/x") == "/private/var/folders/x"
    assert darwin_path("/etc/hosts") == "/private/etc/hosts"
    assert darwin_path("/tmpfoo") == "/tmpfoo"
    writable = sb["parameters"]["WRITABLE"]
    assert matches(writable, "/private/tmp/data/file")
    assert not matches(writable, "/tmp/data/file")  # what the kernel never reports anyway


def test_protected_paths_and_their_parents() -> None:
    sb = plan().seatbelt
    assert sb is not None
    prm = sb["parameters"]
    for path in (WS + "/.git/hooks/pre-commit", WS + "/.GIT/hooks/x", WS + "/.envrc",
                 WS + "/.EnvRC", WS + "/sub/.envrc", WS + "/.vscode/tasks.json",
                 WS + "/.Ringfence.toml", "/private/tmp/data/.mcp.json"):
        assert matches(prm["PROTECTED"], path), path
    # writable: ordinary files, .git's other contents (git commit works)
    for path in (WS + "/src/app.py", WS + "/.git/objects/ab/cd", WS + "/.git/index",
                 WS + "/sub/main.c", "/private/tmp/data/x"):
        assert matches(prm["WRITABLE"], path) and not matches(prm["PROTECTED"], path), path
        assert not matches(prm["PINNED"], path) and not matches(prm["DENY_READ"], path), path
    # the roots and .git cannot be renamed away (their contents can change)
    for path in (WS, WS + "/.git", WS + "/.GIT", WS + "/sub", "/private/tmp/data"):
        assert matches(prm["PINNED"], path), path


def test_deny_read() -> None:
    sb = plan().seatbelt
    assert sb is not None
    deny = sb["parameters"]["DENY_READ"]
    for path in (HOME + "/.ssh/id_ed25519", HOME + "/.SSH/id_ed25519", HOME + "/.netrc",
                 HOME + "/Library/Keychains/login.keychain-db", WS + "/secrets/x",
                 "/Volumes/keys/gnupg/private-keys-v1.d", HOME + "/.gnupg",
                 CONFIG + "/config.toml", "/Users/u/.docker/run/docker.sock",
                 "/private/tmp/com.apple.launchd.X/Listeners"):
        assert matches(deny, path), path
    for path in (HOME + "/.bashrc", WS + "/src", "/usr/bin/git", HOME + "/.sshx"):
        assert not matches(deny, path), path


def test_writable_root_inside_deny_read_is_refused() -> None:
    with pytest.raises(PolicyError, match="inside deny-read"):
        plan({"writable": (HOME + "/.ssh/work",)})


def test_read_only_writes_only_the_private_tmp() -> None:
    p = plan({"profile": "read-only", "writable": ()}, protected_paths=())
    assert p.seatbelt is not None
    assert p.seatbelt["writable"] == [TMP_DIR]
    assert not matches(p.seatbelt["parameters"]["WRITABLE"], WS + "/x")


def test_memory_limit_is_refused() -> None:
    with pytest.raises(UnavailableError, match="memory"):
        plan({"limits": Limits(memory=1 << 30)})


def test_process_limit_as_root_is_refused() -> None:
    with pytest.raises(UnavailableError, match="root"):
        plan(uid=0)
    p = plan({"limits": Limits(max_processes=None)}, uid=0)
    assert not any(name == "RLIMIT_NPROC" for name, _ in p.rlimits)


def test_symlinked_protected_path_is_refused() -> None:
    with pytest.raises(UnavailableError, match="symbolic link"):
        plan(kinds={**KINDS, WS + "/.envrc": "link"})
    with pytest.raises(UnavailableError, match="symbolic link above"):
        plan(kinds={**KINDS, WS + "/.git": "link"})


def test_terminals() -> None:
    """Only the terminal ringfence runs in is readable and writable by path; others are not."""
    p = plan(ttys=("/dev/ttys003", "/dev/ttys003"))
    assert p.seatbelt is not None
    ttys = p.seatbelt["parameters"]["TTYS"]
    assert matches(ttys, "/dev/ttys003")
    assert not matches(ttys, "/dev/ttys004") and not matches(ttys, "/dev/ttys0031")
    assert plan().seatbelt["parameters"]["TTYS"] == NO_PATH  # type: ignore[index]
    text = p.seatbelt["profile"]
    other = re.search(r'\(require-not \(regex #"(\^/dev/\(ttys[^"]+)"\)\)', text)
    assert other is not None, "the broad read rule must leave the user's terminals out"
    assert matches(other.group(1), "/dev/ttys004") and matches(other.group(1), "/dev/ptyp0")
    assert not matches(other.group(1), "/dev/null")


def test_rlimits_and_weaker() -> None:
    p = plan()
    assert p.rlimits == (("RLIMIT_NPROC", 4096), ("RLIMIT_FSIZE", 16 << 30))
    assert any("RLIMIT_NPROC" in w for w in p.weaker)
    assert any("setsid" in w for w in p.weaker)


def test_full_access_runs_the_command_directly() -> None:
    p = plan({"profile": "full-access"})
    assert p.mode == "none" and p.argv == CMD and p.seatbelt is None
    assert "GITHUB_TOKEN" not in p.env
    assert p.env["TMPDIR"] == ENVIRON["TMPDIR"]  # no private temp dir to fill in


def test_environment_and_tmp_dir_token() -> None:
    p = plan()
    assert p.env["TMPDIR"] == TMP_DIR
    key = sha256(WS.encode()).hexdigest()[:16]  # one cache per workspace
    assert p.env["PIP_CACHE_DIR"] == CACHE + f"/sandbox/{key}/pip"
    for name in ("GITHUB_TOKEN", "SSH_AUTH_SOCK", "DOCKER_HOST"):
        assert name not in p.env and name in p.env_removed
    argv, env = fill_tmp_dir(p.argv, p.env, "/private/var/folders/x/T/ringfence-tmp-a.b")
    assert env["TMPDIR"] == "/private/var/folders/x/T/ringfence-tmp-a.b"
    assert not any(TMP_DIR in a or "tmp-dir" in a for a in argv)
    writable = dict(a.split("=", 1) for a in argv if a.startswith("WRITABLE="))["WRITABLE"]
    assert matches(writable, "/private/var/folders/x/T/ringfence-tmp-a.b/f")
    assert not matches(writable, "/private/var/folders/x/T/ringfence-tmp-aXb/f")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX sh")
def test_start_shim_marks_the_start_and_becomes_the_command() -> None:
    """What sandbox-exec runs first: it leaves the mark that tells ringfence the profile was
    applied, then execs the command with its arguments and exit status, or gives
    the CLI contract's 127 / 126. Run here with the real /bin/sh, without Seatbelt."""
    from ringfence.backends._spawn import run_group

    root = Path(os.environ.get("RINGFENCE_TEST_ROOT",
                               Path(__file__).parent.parent / ".test-tmp")).resolve()
    tmp = root / f"shim-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        def shim(*command: str) -> Any:
            argv, env = fill_tmp_dir([*SHIM, *command], {"PATH": os.defpath}, str(tmp))
            return run_group(argv, env, str(tmp), (), 30)

        out = shim("/bin/sh", "-c", 'echo "$@"; exit 7', "sh", "a b", "c")
        mark = tmp / Path(STARTED).name
        assert mark.exists()
        assert out.exit_code == 7 and out.stdout == b"a b c\n"
        mark.unlink()
        assert shim("no-such-command-ringfence").exit_code == 127
        assert mark.exists()  # the shim ran: the sandbox was applied; the command was missing
        (tmp / "noexec").write_text("")
        assert shim("./noexec").exit_code == 126
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def test_allowlist_needs_the_proxy_port() -> None:
    # not a Policy value yet (the proxy comes later), so built past Policy's validation
    base = policy()
    pol = Policy.__new__(Policy)
    Frozen.__init__(pol, **{**{n: getattr(base, n) for n in Policy.__slots__},
                            "network": "allowlist"})
    with pytest.raises(UnavailableError, match="proxy"):
        plan_macos(pol, CMD, facts())
    p = plan_macos(pol, CMD, facts(), proxy_port=31337)
    assert p.seatbelt is not None
    assert p.seatbelt["parameters"]["PROXY_PORT"] == "31337"
    assert '(param "PROXY_PORT")' in p.seatbelt["profile"]


def test_no_command() -> None:
    with pytest.raises(PolicyError, match="no command"):
        plan_macos(policy(), (), facts())


# ---------------------------------------------------------------------------------------------
# explain --platform macos (on any OS).

def test_render_text_shows_profile_and_parameters() -> None:
    text = render_text(explain_plan(plan()))
    assert "mode: seatbelt" in text
    assert "-D WRITABLE=..." in text
    assert "seatbelt profile (PROFILE):" in text
    assert "  (deny default)" in text
    assert "protected (in the parameters above):" in text
    assert f"  {WS}/.git/hooks" in text


def test_cli_explain_platform_macos() -> None:
    ws = Path(os.environ.get("RINGFENCE_TEST_ROOT", Path(__file__).parent.parent / ".test-tmp"))
    ws.mkdir(parents=True, exist_ok=True)
    ws = ws.resolve()
    home = ws / "home-of-explain"  # need not exist: deny-read rules are by path
    env = {**os.environ, "HOME": str(home)}
    base = [sys.executable, "-m", "ringfence", "explain", "--platform", "macos",
            "--max-processes", "0", "--workspace", str(ws)]
    out = subprocess.run([*base, "--json", "--", "true"], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["mode"] == "seatbelt"
    assert data["argv"][0] == SANDBOX_EXEC
    assert data["seatbelt"]["profile"].startswith("(version 1)\n(deny default)")
    assert str(home) + "/.ssh" in data["seatbelt"]["deny_read"]
    text = subprocess.run([*base, "--", "true"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert text.returncode == 0 and "seatbelt profile" in text.stdout
    bad = subprocess.run([*base[:4], "--platform", "plan9", "--", "true"], capture_output=True,
                         text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 125
    assert bad.stderr.count("\n") == 1 and "plan9" in bad.stderr and "macos" in bad.stderr


def test_doctor_text_for_a_mac() -> None:
    """``ringfence doctor``'s text for a Mac's report (the probes themselves run on a Mac)."""
    from ringfence.doctor import render_text as doctor_text

    report = {"platform": "darwin", "macos": "15.1", "machine": "arm64", "root": False,
              "sandbox_exec": {"path": SANDBOX_EXEC, "present": True, "applies_a_profile": True,
                               "applies_ringfence_profile": False},
              "process_limit": "RLIMIT_NPROC (counts all of your processes)",
              "profiles": {"read-only": False, "workspace-write": False, "full-access": True},
              "problems": ["sandbox-exec rejects ringfence's profile: x"],
              "default_profile_enforceable": False}
    text = doctor_text(report)
    assert "macOS: 15.1 (arm64)" in text
    assert "trivial profile works, ringfence profile FAILS" in text
    assert "problem: sandbox-exec rejects" in text
    missing = dict(report, sandbox_exec={"path": SANDBOX_EXEC, "present": False})
    assert "sandbox-exec: /usr/bin/sandbox-exec MISSING" in doctor_text(missing)


def test_facts_resolve_secret_stores_below_linked_directories(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """~/.config is a link to another disk: ~/.config/gh is denied where it really is (Seatbelt
    matches resolved paths), and a linked ~/.gnupg by its target. Real files, this OS."""
    from ringfence.backends._macos_facts import gather_facts

    root = Path(os.environ.get("RINGFENCE_TEST_ROOT",
                               Path(__file__).parent.parent / ".test-tmp")).resolve()
    base = root / f"facts-{os.getpid()}"
    home, elsewhere, ws = base / "home", base / "elsewhere", base / "home" / "proj"
    try:
        for d in (ws, elsewhere / "config" / "gh", elsewhere / "gnupg"):
            d.mkdir(parents=True)
        (home / ".config").symlink_to(elsewhere / "config")
        (home / ".gnupg").symlink_to(elsewhere / "gnupg")
        monkeypatch.setenv("HOME", str(home))
        pol = Policy(workspace=str(ws), limits=Limits(max_processes=None))
        f = gather_facts(pol, environ={"PATH": os.defpath, "HOME": str(home)})
        assert f.realpaths[str(home / ".config" / "gh")] == str(elsewhere / "config" / "gh")
        assert f.realpaths[str(home / ".gnupg")] == str(elsewhere / "gnupg")
        deny = plan_macos(pol, CMD, f).seatbelt["deny_read"]  # type: ignore[index]
        for path in (elsewhere / "config" / "gh", elsewhere / "gnupg", home / ".config" / "gh"):
            assert darwin_path(str(path)) in deny, path
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_refuses_when_its_own_files_are_writable() -> None:
    """ringfence (or the virtualenv it runs from) inside the workspace: a command could
    rewrite it, or plant a .pth file, and own every later run. Refused, naming the fix."""
    own = (("the Python environment ringfence runs in", WS + "/.venv"),)
    with pytest.raises(UnavailableError, match="pipx install ringfence"):
        plan_macos(policy(), CMD, facts(own_files=own))
    plan_macos(policy(), CMD, facts(own_files=(("ringfence", "/opt/ringfence"),)))
