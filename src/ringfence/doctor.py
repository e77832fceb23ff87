"""``ringfence doctor``: what this host offers and which profiles it can enforce.

Unlike ``run``, which only reads sysctls before starting, doctor really tries: it starts bwrap
with every namespace ringfence uses and the seccomp filter, and reads the Landlock ABI.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _probe_bwrap(bwrap: str) -> tuple[bool, str]:
    if sys.platform != "linux":
        return False, "not Linux"
    import subprocess

    from .backends._seccomp import build_filter

    fd = os.memfd_create("ringfence-probe", 0)
    try:
        os.write(fd, build_filter(block_inet=True, block_unix=False))
        os.lseek(fd, 0, os.SEEK_SET)
        proc = subprocess.run(
            [bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net",
             "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session",
             "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--tmpfs", "/tmp", "--seccomp", str(fd), "--", "/bin/true"],
            pass_fds=(fd,), capture_output=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    finally:
        os.close(fd)
    if proc.returncode == 0:
        return True, ""
    return False, proc.stderr.decode(errors="replace").strip().splitlines()[-1:][0] if (
        proc.stderr.strip()) else f"bwrap exited {proc.returncode}"


def _bwrap_version(bwrap: str) -> str:
    import subprocess

    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, timeout=10,
                             check=False).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.removeprefix("bubblewrap ").strip()


def _seccomp_available() -> bool:
    try:
        with open("/proc/self/status") as fh:
            return any(line.startswith("Seccomp:") for line in fh)
    except OSError:
        return False


def _cgroup_v2() -> dict[str, Any]:
    info: dict[str, Any] = {"mounted": os.path.exists("/sys/fs/cgroup/cgroup.controllers")}
    if info["mounted"]:
        try:
            with open("/proc/self/cgroup") as fh:
                own = next((line[3:].strip() for line in fh if line.startswith("0::")), "")
            base = "/sys/fs/cgroup" + own.rstrip("/")
            with open(os.path.join(base, "cgroup.controllers")) as fh:
                info["controllers"] = fh.read().split()
            info["delegated"] = os.access(base, os.W_OK)
        except (OSError, StopIteration):
            info["delegated"] = False
    else:
        info["delegated"] = False
    return info


def diagnose() -> dict[str, Any]:
    """The doctor's report as data."""
    if sys.platform != "linux":
        return {"platform": sys.platform, "default_profile_enforceable": False,
                "profiles": {"read-only": False, "workspace-write": False, "full-access": True},
                "problems": [f"no sandbox backend for {sys.platform} yet"]}
    from .backends import _landlock
    from .backends.linux import find_bwrap
    from .errors import RingfenceError
    from .plan import _pids_cgroup, _userns_status

    uid = os.getuid()
    report: dict[str, Any] = {"platform": "linux", "root": uid == 0,
                              "kernel": os.uname().release, "machine": os.uname().machine}
    problems: list[str] = []
    bwraps: dict[str, Any] = {}
    usable = ""
    for choice in ("bundled", "system"):
        try:
            path, source = find_bwrap(choice)
        except RingfenceError as exc:
            bwraps[choice] = {"found": False, "error": str(exc)}
            continue
        works, why = _probe_bwrap(path)
        bwraps[choice] = {"found": True, "path": path, "source": source,
                          "version": _bwrap_version(path), "works": works}
        if not works:
            bwraps[choice]["error"] = why
        elif not usable:
            usable = choice
    report["bubblewrap"] = bwraps
    report["user_namespaces"] = {"sysctl": _userns_status(uid) or "allowed",
                                 "works": bool(usable)}
    report["seccomp"] = _seccomp_available()
    abi = _landlock.abi_version()
    report["landlock_abi"] = abi
    report["cgroup_v2"] = _cgroup_v2()
    pids = _pids_cgroup() if uid == 0 else ""
    report["process_limit"] = (
        "RLIMIT_NPROC in the sandbox's user namespace" if uid != 0 else
        f"pids cgroup under {pids}" if pids else "unavailable for root (no writable pids cgroup)"
    )
    sandbox_ok = bool(usable) and report["seccomp"]
    limit_ok = uid != 0 or bool(pids)
    if not usable:
        problems.append("bubblewrap cannot create namespaces here: " + "; ".join(
            v.get("error", "") for v in bwraps.values()) + ". Enable unprivileged user "
            "namespaces, or use --fallback landlock (weaker)")
    elif usable != "bundled":
        problems.append("the bundled bwrap does not work here but the system one does: pass "
                        "--bwrap system or set [sandbox] bwrap = \"system\"")
    if not limit_ok:
        problems.append("as root, the default process limit needs a writable pids cgroup; run "
                        "as an ordinary user or pass --max-processes 0")
    enforce = sandbox_ok and limit_ok and usable == "bundled"
    report["profiles"] = {"read-only": enforce, "workspace-write": enforce,
                          "full-access": True}
    report["fallback_landlock"] = (
        "available (weaker; opt in with --fallback landlock)" if abi >= 1 else "unavailable")
    report["problems"] = problems
    report["default_profile_enforceable"] = enforce
    return report


def render_text(report: dict[str, Any]) -> str:
    lines = [f"platform: {report['platform']}"]
    if report["platform"] == "linux":
        lines.append(f"kernel: {report['kernel']} ({report['machine']})"
                     + ("  running as root" if report["root"] else ""))
        for choice, info in report["bubblewrap"].items():
            if info["found"]:
                state = "works" if info["works"] else f"FAILS: {info.get('error', '')}"
                lines.append(f"bubblewrap ({choice}): {info['version']} from {info['source']} "
                             f"at {info['path']}: {state}")
            else:
                lines.append(f"bubblewrap ({choice}): not found")
        lines.append(f"user namespaces: {report['user_namespaces']['sysctl']}")
        lines.append(f"seccomp: {'yes' if report['seccomp'] else 'no'}")
        lines.append(f"landlock ABI: {report['landlock_abi'] or 'none'}")
        cg = report["cgroup_v2"]
        lines.append(f"cgroup v2: {'mounted' if cg['mounted'] else 'not mounted'}"
                     + (", delegated to you" if cg.get("delegated") else ", not delegated"))
        lines.append(f"process limit: {report['process_limit']}")
        lines.append(f"landlock fallback: {report['fallback_landlock']}")
    lines.append("profiles: " + ", ".join(
        f"{name} {'yes' if ok else 'NO'}" for name, ok in report["profiles"].items()))
    for problem in report["problems"]:
        lines.append(f"problem: {problem}")
    return "\n".join(lines) + "\n"
