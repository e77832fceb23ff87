"""The library's one-shot run: policy + command → plan → backend → ``Result``."""

from __future__ import annotations

import sys

from .errors import RingfenceError, UnavailableError
from .policy.model import Frozen, Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, ClassVar

    from .approval.gate import Approver, AsyncApprover, SessionApprovals
    from .approval.model import Escalation
    from .backends import Outcome
    from .plan import Plan


class Result(Frozen):
    """How a sandboxed command ended.

    - ``exit_code``: the command's status; 128+N when signal N killed it; 125 when the sandbox
      could not be set up.
    - ``duration``: wall-clock seconds.
    - ``limits_hit``: names from ``timeout``, ``output``, ``cpu``, ``file_size``,
      ``max_processes`` (each only where the OS tells us for certain).
    - ``mode``: ``bwrap``, ``landlock`` (the weaker fallback), ``seatbelt`` (macOS) or ``none``
      (full-access).
    - ``stdout`` / ``stderr``: captured bytes (capped at the policy's output limit), or None.
    - ``weaker``: what this run could not guarantee (empty in the full bwrap mode).
    - ``network``: one ``ringfence.network.proxy.Connection`` per connection the allowlist proxy
      saw (host, port, decision and rule, bytes each way, duration); empty in other modes.
    - ``denials``: when the command failed, what the sandbox (probably) refused and the
      smallest change that would allow it (``ringfence.denials.Denial``).
    - ``git_warnings``: what the command left in a git index that git on the host would act
      on (a submodule entry, taken out again; files marked so that git status skips them).
    """

    __slots__ = ("exit_code", "duration", "limits_hit", "mode", "stdout", "stderr", "command",
                 "env_removed", "weaker", "layers", "network", "denials", "git_warnings")
    exit_code: int
    duration: float
    limits_hit: tuple[str, ...]
    mode: str
    stdout: bytes | None
    stderr: bytes | None
    command: tuple[str, ...]
    env_removed: tuple[str, ...]
    weaker: tuple[str, ...]
    layers: tuple[str, ...]
    network: tuple[Any, ...]
    denials: tuple[Any, ...]
    git_warnings: tuple[str, ...]
    _defaults: ClassVar[Mapping[str, Any]] = {"network": (), "denials": (), "git_warnings": ()}

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, object]:
        """The ``--json`` object (without captured output)."""
        return {
            "exit_code": self.exit_code,
            "duration": round(self.duration, 6),
            "limits_hit": list(self.limits_hit),
            "mode": self.mode,
            "layers": list(self.layers),
            "weaker": list(self.weaker),
            "command": list(self.command),
            "env_removed": list(self.env_removed),
            "network": [c.to_dict() for c in self.network],
            "denials": [d.to_dict() for d in self.denials],
            "git_warnings": list(self.git_warnings),
        }


def _command(command: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(command, str):
        return ("/bin/sh", "-c", command)
    if "\0" in "".join(command):
        from .errors import PolicyError

        raise PolicyError("the command contains a NUL byte, which no program can receive")
    return tuple(command)


def make_plan(policy: Policy, command: Sequence[str] | str, *, cwd: str | None = None,
              check: bool = True) -> Plan:
    """The plan for ``command`` on this host (what ``ringfence explain`` prints). ``check``:
    refuse (UnavailableError) a policy this host cannot enforce; explain passes False and shows
    ``unenforceable`` instead."""
    if check:
        problem = unenforceable(policy)
        if problem:
            raise UnavailableError(problem)
    if sys.platform == "linux":
        from .backends.linux import find_bwrap, gather_facts
        from .plan import plan_linux

        bwrap = ""
        if policy.profile != "full-access":
            bwrap, _ = find_bwrap(policy.bwrap)
        facts = gather_facts(policy, bwrap=bwrap)
        return plan_linux(policy, _command(command), facts, cwd=cwd)
    if sys.platform == "darwin":
        from .backends._macos_facts import gather_facts as gather_macos
        from .plan_macos import plan_macos

        return plan_macos(policy, _command(command), gather_macos(policy), cwd=cwd)
    raise no_backend()


def unenforceable(policy: Policy) -> str | None:
    """Why this host cannot enforce ``policy`` (fail closed), or None."""
    if not policy.unix_sockets and (sys.platform == "win32" or (
            sys.platform == "darwin" and policy.network != "off")):
        where = "Windows" if sys.platform == "win32" else "macOS with the network on"
        return (f"network.unix_sockets = false (--no-unix-sockets) is not enforced on {where} "
                "yet; remove it to run here")
    if policy.limits.cpu_percent is not None and sys.platform != "win32":
        return (f"[limits] cpu_percent = {policy.limits.cpu_percent} cannot be enforced on "
                f"{sys.platform}: it needs a CPU cap on the whole tree (Windows' job object; on "
                "Linux a delegated cgroup v2 cpu controller, which ringfence does not use yet); "
                "remove the key from your policy to run here")
    return None


def no_backend() -> UnavailableError:
    return UnavailableError(
        f"ringfence has no sandbox backend for {sys.platform} yet; Linux and macOS are "
        "supported"
    )


def start_checks(plan: Plan) -> list[str]:
    """Resolve the command as the sandbox will (127/126 errors) and return the argv to exec."""
    if sys.platform == "linux":
        from .backends.linux import resolve_command

        found = resolve_command(plan.command[0], plan.env, plan.cwd)
        return [found, *plan.command[1:]] if plan.mode == "none" else list(plan.argv)
    if sys.platform == "darwin":
        from .backends import macos

        return macos.start_checks(plan)
    raise no_backend()


def run(
    command: Sequence[str] | str,
    policy: Policy | None = None,
    *,
    workspace: str | None = None,
    cwd: str | None = None,
    capture: bool = True,
    stdin: bytes | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
    approver: Approver | AsyncApprover | None = None,
    escalation: Escalation | None = None,
    session: SessionApprovals | None = None,
    audit: bool = True,
) -> Result:
    """Run ``command`` (an argv list, or a string for ``/bin/sh -c``) in a sandbox.

    ``stdin`` is fed to the command; without it the command reads /dev/null.
    Without ``policy`` the layered policy for ``workspace`` (default: the current directory) is
    used: built-in defaults, the user's config, the project's ``.ringfence.toml``. Output is
    captured (``capture=True``, capped by ``limits.output``), streamed to ``on_output(stream,
    chunk)``, or both; with neither it goes to this process's stdout and stderr.

    Approvals: the command is judged first (``policy.approval_mode`` and ``policy.rules``; see
    ``ringfence.approval``). When it asks, ``approver(request)`` answers ``"once"``,
    ``"session"``, ``"always"`` or ``"deny"`` (or True/False); without an approver a command
    that asks is refused. ``escalation`` asks for more than the policy gives (network, extra
    writable roots, no sandbox) with a justification. "session" answers live in ``session``
    (default: one per process). The decision and the run are recorded in the audit log
    (``audit=False`` skips it).

    Raises ``PolicyError`` for a bad policy, ``UnavailableError`` when this host cannot enforce
    it, ``CommandError`` when the command does not exist or is not executable, ``ApprovalError``
    when approvals stop it.
    """
    if policy is None:
        from .policy.load import Options, resolve

        policy = resolve(Options(workspace=workspace))
    from .approval.gate import PROCESS_SESSION, open_gate, sync_approver
    from .approval.model import NO_ESCALATION

    gate = open_gate(policy, command, cwd=cwd, escalation=escalation or NO_ESCALATION,
                     approver=sync_approver(approver), session=session or PROCESS_SESSION,
                     audit=audit, defer_sync=True)
    if sys.platform == "win32":  # the Windows backend has its own plan (ringfence.windows)
        from .windows.run import run_windows

        gate.durable()
        result = run_windows(gate.policy, command, cwd=cwd, capture=capture, stdin=stdin,
                             on_output=on_output)
        gate.record_result(result)
        return result
    try:
        plan = make_plan(gate.policy, command, cwd=cwd)
    except BaseException:
        gate.durable()  # nothing ran, but the decision stays on record
        raise
    try:
        result = run_plan(plan, capture=capture, stdin=stdin, on_output=on_output,
                          before_start=gate.durable)
    except RingfenceError as exc:
        gate.record_failure(plan, exc)
        raise
    gate.record_result(result)
    if (result.exit_code != 0 and approver is not None and result.mode != "none"
            and gate.policy.approval_mode == "on-failure"):
        result = _retry_unsandboxed(gate.policy, command, result, cwd=cwd, capture=capture,
                                    stdin=stdin, on_output=on_output, approver=approver,
                                    session=session, audit=audit)
    return result


def _retry_unsandboxed(policy: Policy, command: Sequence[str] | str, failed: Result, *,
                       cwd: str | None, capture: bool, stdin: bytes | None,
                       on_output: Callable[[str, bytes], None] | None,
                       approver: Approver | AsyncApprover,
                       session: SessionApprovals | None, audit: bool) -> Result:
    """``on-failure``: ask whether to run a command that failed in the sandbox without it."""
    from .approval.gate import PROCESS_SESSION, ApprovalError, open_gate, sync_approver
    from .approval.model import Escalation

    esc = Escalation(no_sandbox=True,
                     justification=f"it failed in the sandbox (exit status {failed.exit_code})")
    try:
        gate = open_gate(policy, command, cwd=cwd, escalation=esc,
                         approver=sync_approver(approver), session=session or PROCESS_SESSION,
                         audit=audit)
    except ApprovalError:
        return failed
    plan = make_plan(gate.policy, command, cwd=cwd)
    result = run_plan(plan, capture=capture, stdin=stdin, on_output=on_output)
    gate.record_result(result)
    return result


async def arun(
    command: Sequence[str] | str,
    policy: Policy | None = None,
    *,
    approver: AsyncApprover | Approver | None = None,
    **kwargs: Any,
) -> Result:
    """``run`` for asyncio code: ``approver`` may be a coroutine function (awaited for the
    answer); the command itself runs in a worker thread so the event loop keeps going."""
    import asyncio

    answer: object = None
    if approver is not None:
        from .approval.gate import check
        from .approval.model import NO_ESCALATION

        if policy is None:
            from .policy.load import Options, resolve

            policy = resolve(Options(workspace=kwargs.pop("workspace", None)))
        decision = check(policy, command, cwd=kwargs.get("cwd"),
                         escalation=kwargs.get("escalation") or NO_ESCALATION,
                         session=kwargs.get("session"))
        if decision.verdict == "ask":
            from .approval.gate import ApprovalRequest

            request = ApprovalRequest(
                tuple(command) if not isinstance(command, str) else ("/bin/sh", "-c", command),
                kwargs.get("cwd") or policy.workspace, policy.workspace, decision)
            answer = approver(request)
            if asyncio.iscoroutine(answer) or isinstance(answer, asyncio.Future):
                answer = await answer
    given = answer

    def fixed(_request: object) -> object:
        return given

    fixed.who = getattr(approver, "who", "approver callback")  # type: ignore[attr-defined]
    return await asyncio.to_thread(
        run, command, policy, approver=fixed if approver is not None else None,  # type: ignore[arg-type]
        **kwargs)


def run_plan(plan: Plan, *, capture: bool = True, stdin: bytes | None = None,
             on_output: Callable[[str, bytes], None] | None = None,
             before_start: Callable[[], None] | None = None) -> Result:
    """Run a plan. ``before_start`` (the audit record's sync) is done before the command starts:
    on Linux while bubblewrap builds the sandbox."""
    if sys.platform == "darwin":
        if before_start is not None:
            before_start()
        from .backends import macos

        outcome = macos.run_captured(plan, capture=capture, stdin=stdin, on_output=on_output)
        if outcome.setup_failed:
            from .errors import SandboxError

            err = outcome.stderr.decode(errors="replace").strip() if outcome.stderr else ""
            raise SandboxError(f"sandbox-exec could not apply ringfence's profile: "
                               f"{err or 'see stderr'}; run ringfence doctor")
        return result_of(plan, outcome)
    if sys.platform != "linux":
        raise no_backend()
    outcome = _run_linux(plan, capture=capture, stdin=stdin, on_output=on_output,
                         before_start=before_start)
    if outcome.setup_failed:
        from .errors import SandboxError

        err = outcome.stderr.decode(errors="replace").strip() if outcome.stderr else ""
        raise SandboxError(f"bubblewrap could not create the sandbox: {err or 'see stderr'}; "
                           "run ringfence doctor")
    return result_of(plan, outcome)


def result_of(plan: Plan, outcome: Outcome) -> Result:
    result = Result(
        exit_code=outcome.exit_code, duration=outcome.duration,
        limits_hit=tuple(outcome.limits_hit), mode=plan.mode, stdout=outcome.stdout,
        stderr=outcome.stderr, command=plan.command, env_removed=plan.env_removed,
        weaker=plan.weaker, layers=plan.layers, network=tuple(outcome.network),
        git_warnings=tuple(outcome.git_warnings),
    )
    refused = any(not getattr(c, "allowed", True) for c in result.network)
    if result.exit_code or result.limits_hit or refused:  # only a failure pays for the import
        from .denials import attach

        result = attach(result, plan.policy, cwd=plan.cwd)
    return result



def _run_linux(plan: Plan, *, capture: bool, stdin: bytes | None,
               on_output: Callable[[str, bytes], None] | None,
               before_start: Callable[[], None] | None = None) -> Outcome:
    if sys.platform == "linux":
        from . import _dirs
        from .backends import linux

        try:
            argv = start_checks(plan)
            prep = linux.prepare(plan, _dirs.state_dir())
        except BaseException:
            if before_start is not None:
                before_start()
            raise
        prep.before_release = before_start
        try:
            if plan.mode == "none":
                prep.argv = argv
            return linux.run_captured(plan, prep, stdin=stdin, capture=capture,
                                      on_output=on_output)
        finally:
            prep.close()
    raise no_backend()
