"""``ringfence explain``: the resolved policy and the plan, as data and as text. Pure."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .plan import Plan
    from .policy.model import Policy


def explain_plan(plan: Plan) -> dict[str, Any]:
    """Everything a reader needs to see what will be enforced, JSON-ready."""
    from .backends._seccomp import describe

    data: dict[str, Any] = {
        "policy": plan.policy.to_dict(),
        "mode": plan.mode,
        "layers": list(plan.layers),
        "weaker": list(plan.weaker),
        "command": list(plan.command),
        "cwd": plan.cwd,
        "argv": list(plan.argv),
        "environment": dict(sorted(plan.env.items())),
        "environment_removed": list(plan.env_removed),
        "rlimits": {name: value for name, value in plan.rlimits},
        "pids_cgroup": plan.pids_cgroup,
        "timeout": plan.timeout,
        "output_limit": plan.output_limit,
        "placeholders": list(plan.placeholders),
    }
    from .runner import unenforceable

    if plan.placeholder_files:  # included config files: their placeholders are files
        data["placeholder_files"] = list(plan.placeholder_files)
    problem = unenforceable(plan.policy)
    if problem:
        data["unenforceable"] = problem  # ringfence run refuses this policy here
    if plan.seccomp is not None:
        block_inet, block_unix = plan.seccomp
        data["seccomp"] = [
            {"syscall": s, "action": a, "why": w}
            for s, a, w in describe(block_inet=block_inet, block_unix=block_unix)
        ]
    if plan.landlock is not None:
        data["landlock"] = plan.landlock
    if plan.seatbelt is not None:
        data["seatbelt"] = plan.seatbelt
    if plan.network is not None:
        from .plan import PROXY_PORT

        data["network"] = {"proxy": f"127.0.0.1:{PROXY_PORT}", **plan.network.to_dict()}
    if plan.ssh_agent is not None:
        data["ssh_agent"] = {"host": plan.ssh_agent,
                             "inside": plan.env.get("SSH_AUTH_SOCK", plan.ssh_agent)}
    return data


def explain(command: Sequence[str] | str, policy: Policy, *, cwd: str | None = None,
            platform: str | None = None) -> dict[str, Any]:
    """The plan for ``command`` under ``policy`` on this host, without running anything; with
    ``platform`` (``linux``, ``macos``), the plan that OS would run, from this host's files."""
    return explain_plan(plan_for(platform, policy, command, cwd=cwd))


def _plan_macos(policy: Policy, command: Sequence[str] | str, cwd: str | None) -> Plan:
    from .backends._macos_facts import gather_facts
    from .plan_macos import plan_macos
    from .runner import _command

    return plan_macos(policy, _command(command), gather_facts(policy), cwd=cwd)


def _plan_linux(policy: Policy, command: Sequence[str] | str, cwd: str | None) -> Plan:
    import sys

    from .errors import UnavailableError
    from .runner import make_plan

    if sys.platform != "linux":
        raise UnavailableError("explain --platform linux needs a Linux host (its facts come "
                               "from the kernel); run it on Linux")
    return make_plan(policy, command, cwd=cwd, check=False)


# ``explain --platform NAME``: the planner for each OS, from this host's files.
PLANNERS: dict[str, Callable[[Policy, Sequence[str] | str, str | None], Plan]] = {
    "linux": _plan_linux,
    "macos": _plan_macos,
}


def plan_for(platform: str | None, policy: Policy, command: Sequence[str] | str, *,
             cwd: str | None = None) -> Plan:
    """The plan on this host (``platform`` None) or for the named OS (see ``PLANNERS``)."""
    if platform is None:
        from .runner import make_plan

        return make_plan(policy, command, cwd=cwd, check=False)
    planner = PLANNERS.get(platform)
    if planner is None:
        from .errors import PolicyError

        raise PolicyError(f"--platform {platform!r}: use one of "
                          f"{', '.join([*PLANNERS, 'windows'])}")
    return planner(policy, command, cwd)


def render_text(data: dict[str, Any]) -> str:
    import shlex

    lines = [f"mode: {data['mode']}", f"layers: {', '.join(data['layers']) or '-'}"]
    for item in data["weaker"]:
        lines.append(f"weaker: {item}")
    if data.get("unenforceable"):
        lines.append(f"refused: {data['unenforceable']}")
    policy = data["policy"]
    lines.append(f"profile: {policy['profile']}   network: {policy['network']}")
    lines.append(f"workspace: {policy['workspace']}")
    lines.append(f"cwd: {data['cwd']}")
    lines.append("limits: " + ", ".join(
        f"{k}={v}" for k, v in policy["limits"].items() if v is not None))
    lines.append("command: " + shlex.join(data["command"]))
    lines.append("")
    lines.append("argv:")
    argv = data["argv"]
    seatbelt = data.get("seatbelt")
    if seatbelt:  # the profile and the -D values are printed in full below
        argv = [argv[0], "-p", "PROFILE", *[
            f"{a.partition('=')[0]}=..." if argv[i - 1] == "-D" else a
            for i, a in enumerate(argv[3:], start=3)]]
    line = "  "
    for arg in argv:
        if arg.startswith("--") and line.strip():
            lines.append(line.rstrip())
            line = "  "
        line += shlex.quote(arg) + " "
    lines.append(line.rstrip())
    if data["placeholders"]:
        lines += ["", "placeholders (missing protected paths, kept uncreatable):"]
        files = set(data.get("placeholder_files", ()))
        lines += [f"  {p}" + ("  (a file: included git config)" if p in files else "")
                  for p in data["placeholders"]]
    if data["rlimits"]:
        lines += ["", "rlimits:"] + [f"  {k} = {v}" for k, v in data["rlimits"].items()]
    if data.get("seccomp"):
        lines += ["", "seccomp (everything else allowed):"]
        lines += [f"  {r['syscall']:<34} {r['action']:<14} {r['why']}" for r in data["seccomp"]]
    if data.get("landlock"):
        lines += ["", "landlock:"] + [f"  {k}: {v}" for k, v in data["landlock"].items()]
    if seatbelt:
        lines += ["", "seatbelt parameters (-D NAME=VALUE):"]
        lines += [f"  {k}={v}" for k, v in seatbelt["parameters"].items()]
        for key in ("writable", "protected", "pinned", "deny_read"):
            lines += ["", f"{key} (in the parameters above):"]
            lines += [f"  {p}" for p in seatbelt[key]] or ["  -"]
        lines += ["", "seatbelt profile (PROFILE):"]
        lines += [f"  {line}" if line else "" for line in seatbelt["profile"].splitlines()]
    if data.get("network"):
        net = data["network"]
        lines += ["", f"network allowlist (proxy inside the sandbox on {net['proxy']}):"]
        lines.append("  allow: " + (", ".join(net["allow"]) or "nothing"))
        lines += [f"  allow (preset {name}): {host}" for name, host in net["preset_hosts"]]
        lines.append("  deny: " + (", ".join(net["deny"]) or "-"))
        lines.append("  ports: " + ", ".join(str(p) for p in net["ports"]))
        lines.append(f"  loopback/own addresses: {'allowed' if net['allow_local'] else 'refused'}"
                     f"; private/link-local: {'allowed' if net['allow_private'] else 'refused'}")
        lines.append("  (*.example.org matches names below example.org, not example.org)")
    if data.get("ssh_agent"):
        agent = data["ssh_agent"]
        lines += ["", f"ssh-agent (network.ssh_agent): {agent['host']} is reachable inside as "
                      f"{agent['inside']} (SSH_AUTH_SOCK); the command can sign with your keys"]
    lines += ["", "environment removed: " + (", ".join(data["environment_removed"]) or "-")]
    lines += ["environment set:"]
    lines += [f"  {k}={v}" for k, v in data["environment"].items()]
    from .approval.prompt import visible

    # each entry one line, nothing in it acting on the terminal: a project's environment
    # values, protected names and paths are the repository's text
    return "".join(visible(line) + "\n" for line in lines)
