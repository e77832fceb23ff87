"""``plan_linux`` for made-up hosts (golden files), and ``find_protected`` on real trees.

The goldens in tests/golden/ are ``explain_plan(plan)`` for hand-built ``HostFacts``; the seccomp
rule table is replaced by the two flags the plan passes to it (the table has its own tests and
changes with seccomp.rules). Rewrite them after an intended change with

    RINGFENCE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_plan.py

and review the diff.
"""

from __future__ import annotations

import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from ringfence.errors import PolicyError, UnavailableError
from ringfence.explain import explain_plan
from ringfence.network.rules import NetworkRules
from ringfence.plan import (
    GATE_SCRIPT,
    GPU_DEVICES,
    INCLUDED_BY,
    RUN_KEEP_NETWORK,
    SECCOMP_FD,
    STATUS_FD,
    HostFacts,
    Plan,
    find_protected,
    plan_linux,
)
from ringfence.policy.model import DEFAULT_PROTECTED, Limits, Policy

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1"

HOME = "/home/u"
WS = "/home/u/proj"
DATA = "/srv/data"
CONFIG = "/home/u/.config/ringfence"
STATE = "/home/u/.local/state/ringfence"
CACHE = "/home/u/.cache/ringfence"
SANDBOX_CACHE = CACHE + "/sandbox/" + sha256(WS.encode()).hexdigest()[:16]  # per workspace
BWRAP = "/opt/bwrap"
CMD = ("pytest", "-q")

ENVIRON = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME,
    "USER": "u",
    "LANG": "C.UTF-8",
    "TERM": "xterm-256color",
    "GIT_AUTHOR_NAME": "U Ser",
    "GITHUB_TOKEN": "ghp_FAKE",
    "OPENAI_API_KEY": "sk-FAKE",
    "AWS_SECRET_ACCESS_KEY": "FAKE",
    "SSH_AUTH_SOCK": "/tmp/ssh-XYZ/agent.42",
    "DOCKER_HOST": "unix:///home/u/.local/share/docker.sock",
    "XDG_RUNTIME_DIR": "/run/user/1000",
}

KINDS = {
    "/bin/sh": "file",  # the start gate's shell
    # secrets in $HOME (the rest of DEFAULT_DENY_READ_HOME is missing on this host)
    "/home/u/.ssh": "dir",
    "/home/u/.aws": "dir",
    "/home/u/.netrc": "file",
    "/home/u/.bash_history": "file",
    "/home/u/.gnupg": "link",
    "/data/gnupg": "dir",
    CONFIG: "dir",
    STATE: "dir",
    "/var/tmp": "dir",
    "/var/run": "link",
    "/run/systemd/resolve": "dir",
    "/tmp/ssh-XYZ/agent.42": "other",
    "/home/u/.local/share/docker.sock": "other",
    # the workspace: a repository with a submodule, a subdirectory with its own .envrc
    WS: "dir",
    WS + "/.git": "dir",
    WS + "/.git/hooks": "dir",
    WS + "/.git/config": "file",
    WS + "/.git/modules": "dir",
    WS + "/.git/modules/m": "dir",
    WS + "/.git/modules/m/hooks": "dir",
    WS + "/.git/modules/m/config": "file",
    WS + "/.vscode": "dir",
    WS + "/.envrc": "file",
    WS + "/sub": "dir",
    WS + "/sub/.envrc": "file",
    WS + "/secrets": "dir",
    # an extra writable root without a repository
    DATA: "dir",
}
REALPATHS = {"/home/u/.gnupg": "/data/gnupg", "/var/run": "/run"}


def _top(root: str) -> list[tuple[str, str]]:
    """What find_protected gives first for a root: every protected name, existing or not."""
    return [(f"{root}/{name}", "protected name") for name in sorted(DEFAULT_PROTECTED)]


PROTECTED: tuple[tuple[str, str], ...] = (
    *_top(WS),
    (WS + "/.git/modules/m/hooks", "git internals"),
    (WS + "/.git/modules/m/config", "git internals"),
    (WS + "/.git/modules/m/config.worktree", "git internals"),
    (WS + "/sub/.envrc", "protected name"),
    *_top(DATA),
)


def facts(**changes: Any) -> HostFacts:
    values: dict[str, Any] = {
        "home": HOME, "uid": 1000, "environ": dict(ENVIRON), "bwrap": BWRAP,
        "kinds": dict(KINDS), "realpaths": dict(REALPATHS), "protected_paths": PROTECTED,
        "config_dir": CONFIG, "state_dir": STATE, "cache_dir": CACHE,
        "python": "/usr/bin/python3", "fallback_exec": "/opt/ringfence/_fallback_exec.py",
    }
    values.update(changes)
    return HostFacts(**values)


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {
        "workspace": WS, "writable": (DATA,), "deny_read": (WS + "/secrets", "/nonexistent"),
        "limits": Limits(timeout=600, memory=4 << 30),
    }
    values.update(changes)
    return Policy(**values)


def explained(plan: Plan) -> dict[str, Any]:
    data = explain_plan(plan)
    if plan.seccomp is not None:
        assert data.pop("seccomp"), "explain lists the seccomp rules"
        data["seccomp"] = {"block_inet": plan.seccomp[0], "block_unix": plan.seccomp[1]}
    return json.loads(json.dumps(data))


def check_golden(name: str, plan: Plan) -> None:
    data = explained(plan)
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; run with RINGFENCE_UPDATE_GOLDEN=1 to create it")
    assert data == json.loads(path.read_text(encoding="utf-8")), (
        f"{path} differs; if the change is intended, rerun with RINGFENCE_UPDATE_GOLDEN=1"
    )


# ---------------------------------------------------------------------------------------------
# Goldens.

GOLDEN_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "workspace_write_network_off": ({}, {}),
    "read_only": ({"profile": "read-only", "writable": ()}, {"protected_paths": ()}),
    "full_access": ({"profile": "full-access"}, {}),
    "network_on": ({"network": "on"}, {}),
    "overlay_masks": ({}, {"overlay_lower": (HOME + "/.local/state/ringfence/empty/lower",
                                             HOME + "/.local/state/ringfence/empty/upper")}),
    "network_allowlist": (
        {"network": "allowlist",
         "network_rules": NetworkRules(allow=("example.org", "*.example.net"),
                                       deny=("bad.example.net",), presets=("pip",))},
        {"preset_hosts": (("pip", "index.example.com"),)},
    ),
    "gpu": ({"gpu": True}, {"kinds": {**KINDS, "/dev/dri": "dir", "/dev/nvidiactl": "other",
                                       "/dev/nvidia0": "other"}}),
    "root_with_pids_cgroup": ({}, {"uid": 0, "pids_cgroup": "/sys/fs/cgroup/user.slice",
                                   "kinds": {**KINDS, "/proc/sys": "dir", "/proc/irq": "dir",
                                             "/proc/bus": "dir"}}),
    "root_without_process_limit": ({"limits": Limits(max_processes=None)}, {"uid": 0}),
    "landlock_fallback": (
        {"fallback": "landlock"},
        {"userns": "user namespaces are disabled (user.max_user_namespaces = 0)",
         "landlock_abi": 4},
    ),
    "env_options": (
        {"env_allow": ("GITHUB_TOKEN", "XDG_RUNTIME_DIR"), "env_deny": ("LANG", "GIT_*"),
         "env_set": {"CI": "1", "PATH": "/opt/bin:/usr/bin"}},
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name: str) -> None:
    pol_changes, fact_changes = GOLDEN_CASES[name]
    plan = plan_linux(policy(**pol_changes), CMD, facts(**fact_changes))
    check_golden(name, plan)


def test_no_stale_goldens() -> None:
    on_disk = {p.stem for p in GOLDEN.glob("*.json")}
    assert on_disk <= set(GOLDEN_CASES), f"goldens without a case: {on_disk - set(GOLDEN_CASES)}"


# ---------------------------------------------------------------------------------------------
# Argument order and content, spelled out.

def ops(argv: tuple[str, ...] | list[str]) -> list[tuple[str, ...]]:
    """The bwrap argv split into operations: ("--bind", src, dest), ("--tmpfs", dest) …"""
    arity = {"--bind": 2, "--ro-bind": 2, "--dev-bind": 2, "--tmpfs": 1, "--remount-ro": 1,
             "--dev": 1, "--proc": 1, "--size": 1, "--chdir": 1, "--seccomp": 1,
             "--json-status-fd": 1, "--cap-drop": 1, "--overlay-src": 1, "--ro-overlay": 1}
    out: list[tuple[str, ...]] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        if args[i] == "--":
            out.append(tuple(args[i:]))
            break
        n = arity.get(args[i], 0)
        out.append(tuple(args[i:i + n + 1]))
        i += n + 1
    return out


def where(plan_ops: list[tuple[str, ...]], *op: str) -> int:
    assert op in plan_ops, f"{op} not in plan"
    return plan_ops.index(op)


def default_plan(**pol: Any) -> Plan:
    return plan_linux(policy(**pol), CMD, facts())


def test_bwrap_basics() -> None:
    plan = default_plan()
    assert plan.mode == "bwrap"
    assert plan.argv[0] == BWRAP
    assert plan.argv[-7:] == ("--", "/bin/sh", "-c", GATE_SCRIPT, "ringfence-gate", *CMD)
    o = ops(plan.argv)
    for flag in ("--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net",
                 "--die-with-parent", "--new-session"):
        assert (flag,) in o
    assert ("--cap-drop", "ALL") in o
    assert o[-4:-1] == [("--chdir", WS), ("--seccomp", SECCOMP_FD),
                        ("--json-status-fd", STATUS_FD)]
    assert plan.seccomp == (True, False)
    assert plan.rlimits == (("RLIMIT_NPROC", 4096), ("RLIMIT_DATA", 4 << 30),
                            ("RLIMIT_FSIZE", 16 << 30))
    assert plan.timeout == 600
    assert plan.weaker == ()


def test_writable_binds_come_after_the_read_only_root() -> None:
    o = ops(default_plan().argv)
    root = where(o, "--ro-bind", "/", "/")
    assert where(o, "--bind", WS, WS) > root
    assert where(o, "--bind", DATA, DATA) > root
    assert where(o, "--bind", SANDBOX_CACHE, SANDBOX_CACHE) > root
    # and after the fresh /tmp and /run, which would otherwise hide a root below them
    assert where(o, "--bind", WS, WS) > where(o, "--remount-ro", "/run")
    assert where(o, "--bind", WS, WS) > where(o, "--tmpfs", "/tmp")


def test_deny_read_masks_come_after_the_writable_binds() -> None:
    o = ops(default_plan().argv)
    last_bind = max(i for i, op in enumerate(o) if op[0] == "--bind")
    masks = {
        WS + "/secrets": [("--tmpfs", WS + "/secrets"), ("--remount-ro", WS + "/secrets")],
        "/home/u/.ssh": [("--tmpfs", "/home/u/.ssh"), ("--remount-ro", "/home/u/.ssh")],
        "/data/gnupg": [("--tmpfs", "/data/gnupg"), ("--remount-ro", "/data/gnupg")],
        CONFIG: [("--tmpfs", CONFIG), ("--remount-ro", CONFIG)],
        STATE: [("--tmpfs", STATE), ("--remount-ro", STATE)],
        "/home/u/.netrc": [("--ro-bind", "/dev/null", "/home/u/.netrc")],
        "/home/u/.local/share/docker.sock": [
            ("--ro-bind", "/dev/null", "/home/u/.local/share/docker.sock")],
    }
    for path, expected in masks.items():
        first = where(o, *expected[0])
        assert first > last_bind, f"mask of {path} must follow every writable bind"
        assert o[first:first + len(expected)] == expected
    # deny wins over protected too: masks follow every protected ro-bind
    last_protected = max(i for i, op in enumerate(o)
                         if op[0] == "--ro-bind" and op[2].startswith((WS + "/", DATA + "/")))
    assert where(o, "--tmpfs", WS + "/secrets") > last_protected
    # a symlinked secret store is masked at its target; missing ones are not mentioned
    assert not any("/home/u/.gnupg" in op for op in o)
    assert not any("/nonexistent" in op or "/home/u/.kube" in op for op in o)


def test_protected_paths_are_read_only_after_their_pins() -> None:
    o = ops(default_plan().argv)
    pins = [WS + "/.git", WS + "/.git/modules", WS + "/.git/modules/m", WS + "/sub"]
    pin_at = {p: where(o, "--bind", p, p) for p in pins}
    assert pin_at[WS + "/.git"] > where(o, "--bind", WS, WS)
    assert pin_at[WS + "/.git"] < pin_at[WS + "/.git/modules"] < pin_at[WS + "/.git/modules/m"]
    ro = {
        WS + "/.git/hooks": [WS + "/.git"],
        WS + "/.git/config": [WS + "/.git"],
        WS + "/.git/modules/m/hooks": [WS + "/.git", WS + "/.git/modules",
                                       WS + "/.git/modules/m"],
        WS + "/.git/modules/m/config": [WS + "/.git/modules/m"],
        WS + "/sub/.envrc": [WS + "/sub"],
        WS + "/.envrc": [],
        WS + "/.vscode": [],
    }
    for path, parents in ro.items():
        at = where(o, "--ro-bind", path, path)
        assert at > where(o, "--bind", WS, WS)
        for parent in parents:
            assert at > pin_at[parent], f"{path} must be read-only after {parent} is pinned"
    # the workspace itself and paths outside every writable root are never pinned
    assert [op for op in o if op[0] == "--bind"] == [
        ("--bind", WS, WS), ("--bind", DATA, DATA), ("--bind", SANDBOX_CACHE, SANDBOX_CACHE),
        *[("--bind", p, p) for p in sorted(pins, key=len)],
    ]


def test_missing_protected_names_get_placeholders() -> None:
    plan = default_plan()
    o = ops(plan.argv)
    expected = [
        WS + "/.agents", WS + "/.claude", WS + "/.codex", WS + "/.cursor",
        WS + "/.git/commondir",
        WS + "/.git/config.worktree", WS + "/.idea", WS + "/.mcp.json", WS + "/.ringfence.toml",
        WS + "/.git/modules/m/config.worktree",
        DATA + "/.agents", DATA + "/.claude", DATA + "/.codex", DATA + "/.cursor",
        DATA + "/.envrc", DATA + "/.git", DATA + "/.idea", DATA + "/.mcp.json",
        DATA + "/.ringfence.toml", DATA + "/.vscode",
        *(root + "/" + name for root in (WS, DATA) for name in (
            ".gemini", "opencode.json", "opencode.jsonc", ".opencode", ".roo", ".kiro",
            ".amazonq", ".continue", ".aider.conf.yml", ".devcontainer")),
    ]
    assert sorted(plan.placeholders) == sorted(expected)
    for path in expected:  # ringfence creates each one; it is bound read-only onto itself
        assert ("--ro-bind", path, path) in o
    # .git/hooks, .git/config and .git/config.worktree without .git: .git itself, once
    assert plan.placeholders.count(DATA + "/.git") == 1
    assert not any(op[-1].startswith(DATA + "/.git/") for op in o)
    # existing protected paths are bound onto themselves, not replaced
    assert WS + "/.envrc" not in plan.placeholders
    assert ("--ro-bind", "/dev/null", WS + "/.envrc") not in o


def test_placeholder_at_the_highest_missing_ancestor() -> None:
    """A protected path whose parents are missing too (a core.hooksPath of tools/git/hooks
    in a workspace without tools/): the highest missing ancestor inside the root is covered,
    so nothing can be created on the way down."""
    prot = ((WS + "/nothere/.git/hooks", "protected name"),)
    plan = plan_linux(policy(writable=()), CMD, facts(protected_paths=prot))
    assert plan.placeholders == (WS + "/nothere",)
    prot = (("/elsewhere/a/b", "protected name"),)  # outside every writable root: left alone
    plan = plan_linux(policy(writable=()), CMD, facts(protected_paths=prot))
    assert plan.placeholders == ()


def test_protected_path_outside_every_writable_root_is_left_alone_when_missing() -> None:
    prot = (("/etc/somewhere/.envrc", "protected name"), ("/etc/hosts", "protected name"))
    kinds = {**KINDS, "/etc/hosts": "file", "/etc/somewhere": "dir"}
    plan = plan_linux(policy(), CMD, facts(protected_paths=prot, kinds=kinds))
    o = ops(plan.argv)
    assert plan.placeholders == ()
    # read-only already: no mount at all (only paths strictly inside a writable root count)
    assert not any(len(op) > 1 and op[1].startswith("/etc/") for op in o)


def test_protected_path_leading_out_of_the_root_pins_nothing() -> None:
    """Attack (a project's ``protected = ["../x"]``, or a policy built in code): the joined
    path ``/home/u/proj/../x`` passed the string test for "inside the workspace", and every
    directory between was pinned with a read-write bind: ``--bind /home/u/proj/..`` made the
    whole home writable. Normalised first, it lies outside: no pin, no placeholder."""
    prot = tuple((f"{WS}/{up}x", "protected name") for up in ("../", "../../", "../../../"))
    prot += ((WS, "protected name"),)
    kinds = {**KINDS, f"{WS}/..": "dir", f"{WS}/../..": "dir", f"{WS}/../../..": "dir"}
    plan = plan_linux(policy(), CMD, facts(protected_paths=prot, kinds=kinds))
    binds = [op for op in ops(plan.argv) if op[0] in ("--bind", "--ro-bind")]
    assert not any(".." in op[1] or op[1] in ("/home", HOME) for op in binds), binds
    assert ("--bind", "/", "/") not in binds
    assert ("--ro-bind", WS, WS) not in binds
    assert not any(".." in p or p in ("/x", "/home/x", HOME + "/x") for p in plan.placeholders)
    # inside the root but not in normal form (the facts were read for the path as written)
    with pytest.raises(PolicyError, match="normal form"):
        plan_linux(policy(), CMD, facts(protected_paths=((f"{WS}/./.envrc", "x"),)))


def test_network_off_and_on() -> None:
    off = ops(default_plan().argv)
    on_plan = default_plan(network="on")
    on = ops(on_plan.argv)
    assert ("--unshare-net",) in off
    assert ("--unshare-net",) not in on
    resolve = ("--ro-bind", "/run/systemd/resolve", "/run/systemd/resolve")
    assert resolve not in off
    # kept under the fresh /run, before it becomes read-only
    assert where(on, "--tmpfs", "/run") < where(on, *resolve) < where(on, "--remount-ro", "/run")
    for missing in RUN_KEEP_NETWORK[1:]:
        assert not any(missing in op for op in on)
    assert on_plan.seccomp == (False, False)


def test_run_is_one_read_only_overlay_when_nothing_in_it_is_kept() -> None:
    """With overlays, an empty read-only /run takes one mount and no remount (each remount
    makes bwrap re-read the whole mount table); what the network keeps needs the tmpfs."""
    lower = (HOME + "/.local/state/ringfence/empty/lower",
             HOME + "/.local/state/ringfence/empty/upper")
    off = ops(plan_linux(policy(), CMD, facts(overlay_lower=lower)).argv)
    assert ("--ro-overlay", "/run") in off
    assert ("--tmpfs", "/run") not in off and ("--remount-ro", "/run") not in off
    on = ops(plan_linux(policy(network="on"), CMD, facts(overlay_lower=lower)).argv)
    resolve = ("--ro-bind", "/run/systemd/resolve", "/run/systemd/resolve")
    assert where(on, "--tmpfs", "/run") < where(on, *resolve) < where(on, "--remount-ro", "/run")
    assert ("--ro-overlay", "/run") not in on


def test_missing_included_config_gets_a_file_placeholder() -> None:
    """git fails on a directory where its config includes a file: a missing included file's
    placeholder is a file, bound read-only (an overlay covers only directories)."""
    lower = (HOME + "/.local/state/ringfence/empty/lower",
             HOME + "/.local/state/ringfence/empty/upper")
    local = WS + "/.gitconfig.local"
    prot = (*PROTECTED, (local, INCLUDED_BY + WS + "/.git/config"))
    plan = plan_linux(policy(), CMD, facts(protected_paths=prot, overlay_lower=lower))
    assert local in plan.placeholders and plan.placeholder_files == (local,)
    o = ops(plan.argv)
    assert ("--ro-bind", local, local) in o and ("--ro-overlay", local) not in o
    assert any(op[0] == "--ro-overlay" and op[1].startswith(WS + "/.") for op in o)  # others
    assert plan_linux(policy(), CMD, facts(overlay_lower=lower)).placeholder_files == ()


def test_gpu_devices_only_when_asked_and_present() -> None:
    kinds = {**KINDS, "/dev/dri": "dir", "/dev/nvidia0": "other"}
    with_gpu = ops(plan_linux(policy(gpu=True), CMD, facts(kinds=kinds)).argv)
    without = ops(plan_linux(policy(), CMD, facts(kinds=kinds)).argv)
    assert [op for op in with_gpu if op[0] == "--dev-bind"] == [
        ("--dev-bind", "/dev/dri", "/dev/dri"), ("--dev-bind", "/dev/nvidia0", "/dev/nvidia0")]
    assert where(with_gpu, "--dev-bind", "/dev/dri", "/dev/dri") > where(with_gpu, "--dev",
                                                                          "/dev")
    assert not any(op[0] == "--dev-bind" for op in without)
    assert len(GPU_DEVICES) > 2


def test_read_only_has_no_writable_binds() -> None:
    plan = plan_linux(policy(profile="read-only", writable=(DATA,)), CMD,
                      facts(protected_paths=()))
    assert not any(op[0] == "--bind" for op in ops(plan.argv))
    assert plan.placeholders == ()


def test_full_access_runs_the_command_directly() -> None:
    plan = default_plan(profile="full-access")
    assert plan.mode == "none"
    assert plan.argv == CMD
    assert plan.seccomp is None and plan.landlock is None
    assert plan.weaker
    assert ("RLIMIT_NPROC", 4096) not in plan.rlimits
    assert "GITHUB_TOKEN" not in plan.env  # the environment is still scrubbed


def test_environment() -> None:
    plan = default_plan(env_set={"CI": "1"})
    assert plan.env["PATH"] == ENVIRON["PATH"]
    assert plan.env["CI"] == "1"
    assert plan.env["TMPDIR"] == "/tmp"
    assert plan.env["RINGFENCE_SANDBOX"] == "1"
    assert plan.env["PIP_CACHE_DIR"] == SANDBOX_CACHE + "/pip"
    for name in ("GITHUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "SSH_AUTH_SOCK",
                 "DOCKER_HOST", "XDG_RUNTIME_DIR"):
        assert name not in plan.env
        assert name in plan.env_removed
    assert list(plan.env_removed) == sorted(plan.env_removed)


def test_root_needs_a_pids_cgroup_for_the_process_limit() -> None:
    with pytest.raises(UnavailableError, match="--max-processes 0"):
        plan_linux(policy(), CMD, facts(uid=0))
    plan = plan_linux(policy(), CMD, facts(uid=0, pids_cgroup="/sys/fs/cgroup/x"))
    assert plan.pids_cgroup == 4096
    assert "pids cgroup" in plan.layers
    assert not any(name == "RLIMIT_NPROC" for name, _ in plan.rlimits)
    plan = plan_linux(policy(limits=Limits(max_processes=None)), CMD, facts(uid=0))
    assert plan.pids_cgroup is None


def test_root_gets_host_kernel_settings_read_only() -> None:
    """As root, /proc/sys and friends are bound read-only (root's uid is the host's inside);
    an ordinary user's sandbox cannot write them anyway and pays no mount for them."""
    kinds = {**KINDS, "/proc/sys": "dir", "/proc/sysrq-trigger": "file", "/proc/irq": "dir"}
    plan = plan_linux(policy(), CMD, facts(uid=0, pids_cgroup="/sys/fs/cgroup/x", kinds=kinds))
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq"):
        assert ("--ro-bind", path, path) in ops(plan.argv)
    assert not any("/proc/bus" in op for op in ops(plan.argv))
    plan = plan_linux(policy(), CMD, facts(kinds=kinds))
    assert not any("/proc/sys" in op for op in ops(plan.argv))


def test_ordinary_user_limits_processes_by_rlimit() -> None:
    plan = default_plan(limits=Limits(max_processes=10))
    assert ("RLIMIT_NPROC", 10) in plan.rlimits
    assert plan.pids_cgroup is None


USERNS_OFF = "unprivileged user namespaces are disabled (sysctl ...)"


def test_no_user_namespaces_refuses_by_default() -> None:
    with pytest.raises(UnavailableError, match="--fallback landlock") as info:
        plan_linux(policy(), CMD, facts(userns=USERNS_OFF, landlock_abi=4))
    assert USERNS_OFF in str(info.value)


def test_no_user_namespaces_and_no_landlock() -> None:
    with pytest.raises(UnavailableError, match="Landlock"):
        plan_linux(policy(fallback="landlock"), CMD, facts(userns=USERNS_OFF, landlock_abi=0))


def test_landlock_fallback_says_when_the_reaper_can_be_killed() -> None:
    """Below Landlock ABI 6 the command can signal the reaper (backends/_reaper.py); the run
    says so. From ABI 6 it cannot, and nothing the command starts outlives the run."""
    def notes(abi: int) -> list[str]:
        plan = plan_linux(policy(fallback="landlock"), CMD,
                          facts(userns=USERNS_OFF, landlock_abi=abi))
        return [w for w in plan.weaker if "reaper" in w]

    assert len(notes(5)) == 1 and notes(5)[0].startswith("Landlock ABI 5 < 6:")
    assert notes(6) == []


def test_landlock_fallback() -> None:
    plan = plan_linux(policy(fallback="landlock"), CMD, facts(userns=USERNS_OFF,
                                                               landlock_abi=1))
    assert plan.mode == "landlock"
    assert plan.weaker
    assert plan.argv[0] == "/usr/bin/python3"
    assert plan.landlock is not None
    assert plan.landlock["write_roots"] == [WS, DATA, SANDBOX_CACHE]
    assert WS + "/.git/hooks" in plan.landlock["protected"]
    assert "/home/u/.ssh" in plan.landlock["deny_read"]
    assert plan.landlock["block_tcp"] is True
    assert plan.seccomp == (True, True)
    assert ("RLIMIT_NPROC", 4096) in plan.rlimits


def test_protected_symlink_is_refused() -> None:
    kinds = {**KINDS, WS + "/.envrc": "link"}
    with pytest.raises(UnavailableError, match=r"\.envrc") as info:
        plan_linux(policy(), CMD, facts(kinds=kinds))
    assert "symbolic link" in str(info.value)


def test_protected_path_below_a_symlinked_parent_is_refused() -> None:
    kinds = {**KINDS, WS + "/.git": "link", WS + "/.git/config.worktree": "file"}
    realpaths = {**REALPATHS, WS + "/.git": "/srv/git/proj.git"}
    prot = tuple(p for p in PROTECTED if "/modules/" not in p[0])
    try:
        plan = plan_linux(policy(), CMD, facts(kinds=kinds, realpaths=realpaths,
                                               protected_paths=prot))
    except UnavailableError:
        return
    o = ops(plan.argv)
    assert ("--ro-bind", WS + "/.git/hooks", WS + "/.git/hooks") in o
    raise AssertionError(f"{WS}/.git is a symlink that the sandbox can replace")


def test_writable_root_inside_a_deny_read_path_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"/home/u/\.ssh") as info:
        plan_linux(policy(writable=("/home/u/.ssh/work",)), CMD, facts())
    assert "deny-read" in str(info.value)
    with pytest.raises(PolicyError, match="deny-read"):
        plan_linux(policy(writable=(CONFIG,)), CMD, facts())
    with pytest.raises(PolicyError, match="deny-read"):
        plan_linux(policy(deny_read=(WS,)), CMD, facts())


def test_sandbox_cache_inside_a_deny_read_path_is_refused() -> None:
    kinds = {**KINDS, "/home/u/.cache": "dir"}
    with pytest.raises(PolicyError, match="sandbox"):
        plan_linux(policy(deny_read=("/home/u/.cache",)), CMD, facts(kinds=kinds))
    # read-only has no cache root, so nothing conflicts
    plan = plan_linux(policy(profile="read-only", deny_read=("/home/u/.cache",)), CMD,
                      facts(kinds=kinds, protected_paths=()))
    assert ("--tmpfs", "/home/u/.cache") in ops(plan.argv)


def test_empty_command_is_refused() -> None:
    with pytest.raises(PolicyError, match="no command"):
        plan_linux(policy(), (), facts())


def test_cwd_defaults_to_the_workspace_and_can_be_given() -> None:
    assert ("--chdir", WS) in ops(default_plan().argv)
    plan = plan_linux(policy(), CMD, facts(), cwd=WS + "/sub")
    assert ("--chdir", WS + "/sub") in ops(plan.argv)
    assert plan.cwd == WS + "/sub"


def test_tmp_size() -> None:
    o = ops(default_plan(limits=Limits(tmp_size=1 << 20)).argv)
    i = where(o, "--tmpfs", "/tmp")
    assert o[i - 1] == ("--size", str(1 << 20))
    o = ops(default_plan(limits=Limits(tmp_size=None)).argv)
    i = where(o, "--tmpfs", "/tmp")
    assert o[i - 1] == ("--size", str(2 << 30))


def test_var_run_symlink_is_not_replaced() -> None:
    o = ops(default_plan().argv)
    assert ("--tmpfs", "/var/run") not in o
    o = ops(plan_linux(policy(), CMD, facts(kinds={**KINDS, "/var/run": "dir"})).argv)
    assert where(o, "--tmpfs", "/var/run") > where(o, "--tmpfs", "/run")


def test_paths_with_odd_characters_stay_single_arguments() -> None:
    ws = "/home/u/my proj\nü"
    prot = ((ws + "/.envrc", "protected name"),)
    kinds = {**KINDS, ws: "dir"}
    plan = plan_linux(policy(workspace=ws, writable=()), CMD,
                      facts(kinds=kinds, protected_paths=prot))
    o = ops(plan.argv)
    assert ("--bind", ws, ws) in o
    assert ("--ro-bind", ws + "/.envrc", ws + "/.envrc") in o
    assert ("--chdir", ws) in o


def test_no_masks_below_the_read_only_run() -> None:
    environ = {**ENVIRON, "XDG_RUNTIME_DIR": "/run/user/1000",
               "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus,guid=abc"}
    kinds = {**KINDS, "/run/user/1000": "dir", "/run/user/1000/bus": "other"}
    plan = plan_linux(policy(), CMD, facts(environ=environ, kinds=kinds))
    o = ops(plan.argv)
    assert "DBUS_SESSION_BUS_ADDRESS" in plan.env_removed
    after = o[where(o, "--remount-ro", "/run") + 1:]
    kept = {("--ro-bind", p, p) for p in RUN_KEEP_NETWORK}
    bad = [op for op in after if op[0] != "--" and op not in kept
           and op[-1].startswith("/run/")]
    assert not bad, f"mount points to create inside the read-only /run: {bad}"


# ---------------------------------------------------------------------------------------------
# find_protected on real trees.

def _mk(path: Path, text: str | None = None) -> Path:
    if text is None:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def test_find_protected_repository_with_worktrees_and_submodules(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    git = root / ".git"
    _mk(git / "hooks")
    _mk(git / "config", "[core]\n")
    _mk(git / "worktrees" / "w" / "commondir", "../..\n")
    _mk(git / "worktrees" / "w" / "HEAD", "ref: refs/heads/w\n")
    _mk(git / "modules" / "m" / "hooks")
    _mk(git / "modules" / "m" / "config", "")
    deep = git / "modules" / "m" / "modules" / "n"
    _mk(deep / "config", "")
    _mk(deep / "modules" / "o" / "config", "")
    _mk(deep / "modules" / "o" / "modules" / "deep" / "config", "")
    for gitdir in (git / "modules" / "m", deep, deep / "modules" / "o",
                   deep / "modules" / "o" / "modules" / "deep"):
        _mk(gitdir / "HEAD", "ref: refs/heads/main\n")  # what makes it a git directory
    # a subdirectory with its own .git file pointing elsewhere (a submodule checkout)
    elsewhere = _mk(tmp_path / "elsewhere" / "sub.git")
    _mk(elsewhere / "config", "")
    _mk(root / "sub" / ".git", "gitdir: ../../elsewhere/sub.git\n")
    _mk(root / "sub" / ".envrc", "")
    _mk(root / "sub" / ".idea")
    # a subdirectory that is a nested repository
    _mk(root / "nested" / ".git" / "hooks")
    # a subdirectory without anything protected; a plain file
    _mk(root / "docs")
    _mk(root / "README", "")
    # a symlinked directory is not followed
    (root / "linked").symlink_to(root / "sub")

    found = find_protected(str(root), DEFAULT_PROTECTED)
    paths = [p for p, _ in found]
    why = dict(found)
    r, g = str(root), str(git)

    assert len(paths) == len(set(paths))
    # every protected name at the top, existing or not, in sorted order first
    assert paths[: len(DEFAULT_PROTECTED)] == [os.path.join(r, n)
                                                for n in sorted(DEFAULT_PROTECTED)]
    assert all(why[os.path.join(r, n)] == "protected name" for n in DEFAULT_PROTECTED)
    for inner in ("worktrees/w", "modules/m", "modules/m/modules/n",
                  "modules/m/modules/n/modules/o"):
        for name in ("hooks", "config", "config.worktree"):
            assert why[os.path.join(g, inner, name)] == "git internals"
    # three levels of submodules, not four
    assert not any("/deep/" in p for p in paths)
    # the worktree's commondir points back at the main .git: listed once
    assert paths.count(os.path.join(g, "hooks")) == 1
    sub = os.path.join(r, "sub")
    assert why[os.path.join(sub, ".git")] == "points git at its directory"
    assert why[os.path.join(sub, ".envrc")] == "protected name"
    assert why[os.path.join(sub, ".idea")] == "protected name"
    for name in ("hooks", "config", "config.worktree"):
        assert why[os.path.join(str(elsewhere), name)] == "git internals"
        assert os.path.join(r, "nested", ".git", name) in why
    # only existing names below the top
    assert os.path.join(sub, ".vscode") not in why
    assert not any(p.startswith(os.path.join(r, "docs")) for p in paths)
    assert not any(p.startswith(os.path.join(r, "linked")) for p in paths)
    assert not any(p.startswith(os.path.join(r, "README") + "/") for p in paths)


BARE = "keeps git from taking the root for a bare repository"


def test_find_protected_linked_worktree(tmp_path: Path) -> None:
    main = tmp_path / "main"
    _mk(main / ".git" / "hooks")
    _mk(main / ".git" / "config", "")
    wt_gitdir = _mk(main / ".git" / "worktrees" / "feature")
    _mk(wt_gitdir / "commondir", "../..\n")
    _mk(wt_gitdir / "config.worktree", "")
    wt = tmp_path / "feature"
    _mk(wt / ".git", f"gitdir: {wt_gitdir}\n")

    found = find_protected(str(wt), DEFAULT_PROTECTED)
    why = dict(found)
    assert why[str(wt / ".git")] == "points git at its directory"
    for name in ("hooks", "config", "config.worktree"):
        assert why[str(wt_gitdir / name)] == "git internals"
        assert why[str(main / ".git" / name)] == "git internals"
    # the top names are still all listed (.git/hooks of a .git file is a placeholder target)
    assert why[str(wt / ".git" / "hooks")] == "protected name"
    assert len(found) == len(why)


def test_find_protected_relative_gitdir_and_garbage(tmp_path: Path) -> None:
    root = tmp_path / "w"
    _mk(root / ".git", "not a gitdir line\n")
    found = dict(find_protected(str(root), [".envrc"]))
    assert found == {str(root / ".envrc"): "protected name", str(root / "objects"): BARE}


def test_find_protected_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "nothere"
    assert find_protected(str(root), [".envrc", ".git/hooks"]) == [
        (str(root / ".envrc"), "protected name"),
        (str(root / ".git/hooks"), "protected name"),
        (str(root / "objects"), BARE),
    ]


def test_find_protected_custom_names_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "w"
    _mk(root / "a" / "Makefile", "")
    found = find_protected(str(root), ["Makefile", "Makefile", ".envrc"])
    assert found == [
        (str(root / ".envrc"), "protected name"),
        (str(root / "Makefile"), "protected name"),
        (str(root / "objects"), BARE),
        (str(root / "a" / "Makefile"), "protected name"),
    ]


def test_find_protected_head_at_the_top(tmp_path: Path) -> None:
    """One of git's marks of a git directory cannot be created at the top of every root (so git
    cannot take the root for a bare repository): ``objects``, else ``refs``, else ``HEAD``;
    where the root has a HEAD, the HEAD and its git files, as the root may be a git
    directory itself."""
    root = tmp_path / "w"
    _mk(root / "sub" / ".envrc", "")
    found = dict(find_protected(str(root), [".envrc"]))
    assert found[str(root / "objects")] == BARE
    assert str(root / "HEAD") not in found  # `git diff HEAD` is not made ambiguous
    assert str(root / "config") not in found
    assert str(root / "sub" / "objects") not in found  # the top only
    _mk(root / "objects" / "x", "")  # a project's own objects/: refs then
    found = dict(find_protected(str(root), [".envrc"]))
    assert found[str(root / "refs")] == BARE and str(root / "objects") not in found
    _mk(root / "refs" / "x", "")  # and both: HEAD, the last choice
    assert dict(find_protected(str(root), [".envrc"]))[str(root / "HEAD")] == BARE
    _mk(root / "HEAD", "ref: refs/heads/main\n")
    found = dict(find_protected(str(root), [".envrc"]))
    assert found[str(root / "HEAD")] == BARE
    for name in ("hooks", "config", "config.worktree", "commondir"):
        assert found[str(root / name)] == "git internals"


def test_deny_read_inside_another_deny_read_path() -> None:
    kinds = {**KINDS, "/home/u/.ssh/id_rsa": "file", "/home/u/.aws/sub": "dir"}
    plan = plan_linux(policy(deny_read=("/home/u/.ssh/id_rsa", "/home/u/.aws/sub")), CMD,
                      facts(kinds=kinds))
    o = ops(plan.argv)
    read_only: list[str] = []
    for op in o:
        if op[0] == "--remount-ro" and op[1] != "/run":
            read_only.append(op[1])
        elif op[0] in ("--tmpfs", "--ro-bind", "--bind"):
            inside = [d for d in read_only if op[-1].startswith(d + "/")]
            assert not inside, f"{op} needs a mount point inside read-only {inside}"


def test_find_protected_memo_gives_the_same_answer(tmp_path: Path, monkeypatch: Any) -> None:
    """With a memo, a second scan answers as a fresh one, and notices a subdirectory that
    gained a protected name (its ctime changed) or was replaced (a new inode)."""
    import ringfence.plan as plan_mod

    monkeypatch.setattr(plan_mod, "RACY_NS", -10**18)  # remember even what just changed
    for i in range(5):
        (tmp_path / f"pkg{i}").mkdir()
    (tmp_path / "pkg1" / ".envrc").write_text("x")
    (tmp_path / "pkg2" / ".git").mkdir()
    memo: dict[str, Any] = {}
    fresh = find_protected(str(tmp_path), DEFAULT_PROTECTED)
    assert find_protected(str(tmp_path), DEFAULT_PROTECTED, memo) == fresh
    assert set(memo) == {f"pkg{i}" for i in range(5)}
    assert find_protected(str(tmp_path), DEFAULT_PROTECTED, memo) == fresh
    (tmp_path / "pkg3" / ".vscode").mkdir()
    os.rename(tmp_path / "pkg4", tmp_path / "gone")
    (tmp_path / "pkg4").mkdir()
    (tmp_path / "pkg4" / ".idea").mkdir()
    again = find_protected(str(tmp_path), DEFAULT_PROTECTED, memo)
    assert again == find_protected(str(tmp_path), DEFAULT_PROTECTED)
    paths = {p for p, _ in again}
    assert str(tmp_path / "pkg3" / ".vscode") in paths
    assert str(tmp_path / "pkg4" / ".idea") in paths
    assert "gone" in memo and "pkg4" in memo


def test_find_protected_memo_skips_recent_changes(tmp_path: Path) -> None:
    """A subdirectory changed within RACY_NS is scanned but not remembered (a coarse clock
    could give a later change in the same tick the same ctime)."""
    (tmp_path / "fresh").mkdir()
    memo: dict[str, Any] = {}
    find_protected(str(tmp_path), DEFAULT_PROTECTED, memo)
    assert memo == {}


def test_find_protected_memo_rereads_gitdir_files(tmp_path: Path, monkeypatch: Any) -> None:
    """A subdirectory's ``.git`` file can be rewritten without its directory changing: its
    target is read afresh on every scan, never taken from the memo."""
    import ringfence.plan as plan_mod

    monkeypatch.setattr(plan_mod, "RACY_NS", -10**18)
    sub = tmp_path / "lib"
    sub.mkdir()
    (sub / ".git").write_text("gitdir: /elsewhere/one\n")
    memo: dict[str, Any] = {}
    first = {p for p, _ in find_protected(str(tmp_path), DEFAULT_PROTECTED, memo)}
    assert "/elsewhere/one/hooks" in first
    (sub / ".git").write_text("gitdir: /elsewhere/two\n")
    second = {p for p, _ in find_protected(str(tmp_path), DEFAULT_PROTECTED, memo)}
    assert "/elsewhere/two/hooks" in second and "/elsewhere/one/hooks" not in second


def test_find_protected_looks_first_where_it_found_something(tmp_path: Path) -> None:
    """A subdirectory the memo says held a protected name is looked at before the others,
    so directories that sort earlier cannot push it past the bound."""
    from ringfence.plan import MAX_SUBDIRS

    root = tmp_path / "w"
    _mk(root / "pkg" / ".envrc", "")
    memo: dict[str, Any] = {}
    assert str(root / "pkg" / ".envrc") in dict(find_protected(str(root), [".envrc"], memo))
    assert memo["pkg"][1]  # remembered, even though it changed just now
    for i in range(MAX_SUBDIRS):
        _mk(root / f"a{i:03d}")
    assert str(root / "pkg" / ".envrc") in dict(find_protected(str(root), [".envrc"], memo))
    assert str(root / "pkg" / ".envrc") not in dict(find_protected(str(root), [".envrc"]))


def test_start_gate() -> None:
    """The command is exec'd by the start gate's shell, which waits for ringfence's word on a
    pipe (see backends.linux.Prepared.started); a host without /bin/sh runs it directly."""
    argv = default_plan().argv
    tail = list(argv[argv.index("--") + 1:])
    assert tail[:4] == ["/bin/sh", "-c", GATE_SCRIPT, "ringfence-gate"]
    assert tail[4:] == list(CMD)
    kinds = {k: v for k, v in KINDS.items() if k != "/bin/sh"}
    argv = plan_linux(policy(), CMD, facts(kinds=kinds)).argv
    assert list(argv[argv.index("--") + 1:]) == list(CMD)


@pytest.mark.parametrize("field,value", [
    ("python", WS + "/.venv/bin/python"),
    ("fallback_exec", WS + "/.venv/lib/python3.11/site-packages/ringfence/backends/x.py"),
    ("bwrap", DATA + "/bin/bwrap"),
])
def test_refuses_when_its_own_files_are_writable(field: str, value: str) -> None:
    """ringfence installed in a virtualenv inside the workspace (or its bwrap in a writable
    root): a command could rewrite ringfence, plant a .pth file the interpreter runs at start,
    or swap bubblewrap, and so escape every later run. Refused, naming the fix."""
    with pytest.raises(UnavailableError, match="pipx install ringfence"):
        plan_linux(policy(), CMD, facts(**{field: value}))
    plan_linux(policy(profile="full-access"), CMD, facts(**{field: value}))  # no sandbox


def test_own_files_are_also_resolved(tmp_path: Path) -> None:
    """A virtualenv reached through a symlink (a project under a symlinked home): its resolved
    path is checked too, as writable roots are resolved. And the interpreter's prefixes
    (sys.prefix, sys.base_prefix ...) are all there: a sitecustomize in any runs at start."""
    import sys

    from ringfence.plan import own_files

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    own = own_files(str(link / "ringfence"), str(link / "bwrap"))
    paths = {p for _, p in own}
    assert str(real / "ringfence") in paths and str(real / "bwrap") in paths
    assert {sys.prefix, sys.base_prefix} <= paths
    with pytest.raises(UnavailableError, match="inside the writable root"):
        plan_linux(policy(writable=(str(real),)), CMD, facts(own_files=own))


def test_find_protected_submodules_by_what_they_are(tmp_path: Path) -> None:
    """Submodules' git directories are found by what they are, not by how deep they sit: a
    submodule named after a path with slashes (``git submodule add URL libs/foo`` keeps its
    git directory in ``.git/modules/libs/foo``), one the config names, and those of a
    repository one level down. Each checkout's ``.git`` file is protected too (a command could
    point it at a git directory of its own). A directory under ``modules`` that is only part
    of a name gets nothing (no placeholders)."""
    root = tmp_path / "repo"
    git = root / ".git"
    _mk(git / "config", '[submodule "third party/x"]\n\turl = ../x\n')
    for gitdir in (git / "modules" / "libs" / "foo", git / "modules" / "third party" / "x",
                   root / "backend" / ".git" / "modules" / "vendored"):
        _mk(gitdir / "HEAD", "ref: refs/heads/main\n")
    _mk(git / "modules" / "libs" / "foo" / "config", "[core]\n\tworktree = ../../../../libs/foo\n")
    _mk(root / "libs" / "foo" / ".git", "gitdir: ../../.git/modules/libs/foo\n")
    _mk(root / "backend" / ".git" / "config", "")

    why = dict(find_protected(str(root), DEFAULT_PROTECTED))
    for inner in (git / "modules" / "libs" / "foo", git / "modules" / "third party" / "x",
                  root / "backend" / ".git" / "modules" / "vendored"):
        for name in ("hooks", "config", "config.worktree", "commondir"):
            assert why[str(inner / name)] == "git internals", inner
    assert why[str(root / "libs" / "foo" / ".git")] == "git internals"
    assert str(git / "modules" / "libs" / "config") not in why
    assert str(git / "modules" / "libs" / "hooks") not in why


def test_find_protected_submodules_bounded(tmp_path: Path) -> None:
    """Directories a command creates under ``.git/modules`` cannot push a submodule the
    repository's config names past the bound (they come first), nor grow start-up without
    end."""
    from ringfence.plan import MAX_SUBMODULES

    root = tmp_path / "repo"
    git = root / ".git"
    _mk(git / "config", '[submodule "zz/real"]\n\turl = ../real\n')
    _mk(git / "modules" / "zz" / "real" / "HEAD", "ref: refs/heads/main\n")
    for i in range(MAX_SUBMODULES + 10):
        _mk(git / "modules" / f"a{i:04d}" / "HEAD", "x\n")
    why = dict(find_protected(str(root), DEFAULT_PROTECTED))
    assert why[str(git / "modules" / "zz" / "real" / "config")] == "git internals"
    gitdirs = {os.path.dirname(p) for p, w in why.items() if "/modules/" in p}
    assert len(gitdirs) <= MAX_SUBMODULES


def test_find_protected_a_planted_fifo_does_not_hang(tmp_path: Path) -> None:
    """A command plants a FIFO where the host's scan reads a small git file (a sub-repository's
    ``.git`` pointer leading to a ``commondir`` that is a FIFO): every later run and explain in
    the workspace would hang in ``open``. Found in a red-team pass."""
    import threading

    root = tmp_path / "repo"
    _mk(root / "pkg" / "evil")
    _mk(root / "pkg" / ".git", "gitdir: evil\n")
    os.mkfifo(root / "pkg" / "evil" / "commondir")
    os.mkfifo(root / "pkg" / "evil" / "config")
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(
        find_protected(str(root), DEFAULT_PROTECTED)), daemon=True)
    t.start()
    t.join(10)
    assert result, "the scan hung on a FIFO"


def test_extra_deny_paths_are_hidden() -> None:
    """The host's extra deny-read paths (the account's home when ``HOME`` names another
    directory; root's machine secrets) are hidden like the home's own: a file is covered, a
    directory emptied, a missing one left alone."""
    kinds = {**KINDS, "/home/real/.ssh": "dir", "/etc/shadow": "file", "/etc/wireguard":
             "missing"}
    plan = plan_linux(policy(), CMD, facts(
        kinds=kinds, extra_deny=("/home/real/.ssh", "/etc/shadow", "/etc/wireguard")))
    joined = " ".join(plan.argv)
    assert "/home/real/.ssh" in joined and "/etc/shadow" in joined
    assert "/etc/wireguard" not in joined


def test_extra_deny_for_another_home_and_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in a red-team pass: deny-read followed ``$HOME`` only, so a harness that runs
    agents with a scratch ``HOME`` left the account's real ``~/.ssh`` readable; and root,
    which keeps uid 0 inside, read ``/etc/shadow`` by its owner bits."""
    import pwd

    from ringfence.backends import linux
    from ringfence.plan import ROOT_DENY_READ

    class Entry:
        pw_dir = "/home/real"

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: Entry())
    out = linux._extra_deny(1000, "/tmp/scratch-home")
    assert "/home/real/.ssh" in out and "/home/real/.aws" in out
    assert not any(p in out for p in ROOT_DENY_READ)
    assert linux._extra_deny(1000, "/home/real/") == []
    as_root = linux._extra_deny(0, "/home/real")
    assert "/etc/shadow" in as_root and "/etc/ssl/private" in as_root


def test_find_protected_links_in_git_modules_do_not_loop(tmp_path: Path) -> None:
    """Found in review: a command makes links in ``.git/modules`` back to ``..`` (each looked
    like a git directory through the link, with the nested scan following it three levels
    deep): every later run hung with its memory growing. Links are not looked through."""
    import time

    root = tmp_path / "repo"
    git = root / ".git"
    _mk(git / "HEAD", "ref: refs/heads/main\n")
    _mk(git / "config", "")
    modules = git / "modules"
    modules.mkdir()
    for i in range(256):
        (modules / f"l{i:03d}").symlink_to("..")
    start = time.monotonic()
    found = find_protected(str(root), DEFAULT_PROTECTED)
    assert time.monotonic() - start < 5
    assert not any("/modules/l" in p for p, _ in found)
