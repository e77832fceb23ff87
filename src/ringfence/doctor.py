"""``ringfence doctor``: what this host offers and which profiles it can enforce.

The probes are the backend's (``backends.linux.diagnose``); this module dispatches and prints.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def diagnose() -> dict[str, Any]:
    """The doctor's report as data."""
    if sys.platform == "linux":
        from .backends.linux import diagnose as diagnose_linux

        return diagnose_linux()
    if sys.platform == "darwin":
        from .backends.macos import diagnose as diagnose_macos

        return diagnose_macos()
    return {"platform": sys.platform, "default_profile_enforceable": False,
            "profiles": {"read-only": False, "workspace-write": False, "full-access": True},
            "problems": [f"no sandbox backend for {sys.platform} yet"]}


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
        if "overlay_masks" in report:
            lines.append("read-only overlays in the sandbox: " + (
                "yes (one mount per placeholder and deny-read directory)" if report["overlay_masks"]
                else "no (bind mounts and tmpfs instead; a little slower)"))
        lines.append(f"seccomp: {'yes' if report['seccomp'] else 'no'}")
        lines.append(f"landlock ABI: {report['landlock_abi'] or 'none'}")
        cg = report["cgroup_v2"]
        lines.append(f"cgroup v2: {'mounted' if cg['mounted'] else 'not mounted'}"
                     + (", delegated to you" if cg.get("delegated") else ", not delegated"))
        lines.append(f"process limit: {report['process_limit']}")
        lines.append(f"landlock fallback: {report['fallback_landlock']}")
        lines.append(f"network allowlist: {report['network_allowlist']}")
    if report["platform"] == "darwin":
        lines.append(f"macOS: {report['macos']} ({report['machine']})"
                     + ("  running as root" if report["root"] else ""))
        info = report["sandbox_exec"]
        lines.append(f"sandbox-exec: {info['path']} "
                     + ("present" if info["present"] else "MISSING")
                     + (f", trivial profile {'works' if info.get('applies_a_profile') else 'FAILS'}"
                        f", ringfence profile "
                        f"{'works' if info.get('applies_ringfence_profile') else 'FAILS'}"
                        if info["present"] else ""))
        lines.append(f"process limit: {report['process_limit']}")
    lines.append("profiles: " + ", ".join(
        f"{name} {'yes' if ok else 'NO'}" for name, ok in report["profiles"].items()))
    for problem in report["problems"]:
        lines.append(f"problem: {problem}")
    return "\n".join(lines) + "\n"
