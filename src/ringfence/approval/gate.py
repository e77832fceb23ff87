"""One command's way through approvals and into the audit log (the I/O around the pure engine).

``open_gate`` decides (``engine.decide``), asks when the decision is "ask" (an approver callback,
or nobody: then it refuses), remembers "session" answers, writes "always" answers to the user's
config, records the decision in the audit log, and either raises ``ApprovalError`` or returns a
``Gate`` whose ``policy`` carries any escalation that was granted. After the run,
``Gate.record_run`` writes the run's record.
"""

from __future__ import annotations

import os
import sys

from ..errors import RingfenceError
from .model import NO_ESCALATION, Approval, Context, Decision, Escalation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from typing import Any

    from ..cli import Args
    from ..policy.model import Policy
    from ..runner import Result

    Approver = Callable[["ApprovalRequest"], "str | bool"]
    AsyncApprover = Callable[["ApprovalRequest"], Awaitable["str | bool"]]

REFUSED_EXIT = 122
"""``ringfence run`` exits 122 when approvals stop a command (forbidden, denied, or asking with
nobody to ask). 125 stays reserved for "the sandbox could not be set up"."""


class ApprovalError(RingfenceError):
    """The command was not approved: forbidden, denied, or it asks and nobody can answer."""

    exit_code = REFUSED_EXIT

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class ApprovalRequest:
    """What an approver is asked. Answer with ``once``, ``session``, ``always`` or ``deny``
    (True means once, False deny). ``always`` is only honoured when ``always_ok`` (else it
    counts as ``session``), ``session`` and ``always`` only when ``session_ok``: not when a
    word of what asks is only known when it runs (``run_time``, e.g. ``$X/build``), as an
    approval of its text would cover every later value (they count as ``once``)."""

    __slots__ = ("command", "cwd", "workspace", "reason", "rule", "grants", "justification",
                 "always_ok", "session_ok", "run_time", "decision")

    def __init__(self, command: tuple[str, ...], cwd: str, workspace: str,
                 decision: Decision) -> None:
        self.command = command
        self.cwd = cwd
        self.workspace = workspace
        self.reason = decision.reason
        self.rule = decision.rule
        self.grants = decision.grants
        self.justification = decision.escalation.justification
        self.always_ok = decision.always_ok
        self.session_ok = not decision.run_time
        self.run_time = decision.run_time
        self.decision = decision

    def __repr__(self) -> str:
        return f"ApprovalRequest(command={self.command!r}, reason={self.reason!r})"


class SessionApprovals:
    """The "for this session" answers. The library keeps one per process by default; the
    command line keeps one per terminal session in the state directory."""

    def __init__(self, path: str | Callable[[], str] | None = None) -> None:
        self._path = path
        self._items: list[Approval] | None = None if path else []

    @property
    def path(self) -> str | None:
        if callable(self._path):
            self._path = self._path()
        return self._path

    @property
    def items(self) -> tuple[Approval, ...]:
        if self._items is None:
            self._items = _load_session(self.path or "")
        return tuple(self._items)

    def add(self, approval: Approval) -> None:
        self.items  # load first  # noqa: B018
        assert self._items is not None
        self._items.append(approval)
        path = self.path
        if path:
            _save_session(path, approval)


PROCESS_SESSION = SessionApprovals()


def terminal_session() -> SessionApprovals:
    """The session of the terminal ringfence was started from (boot id + session id); its file
    is only found and read when a decision would ask."""
    return SessionApprovals(_terminal_session_path)


def _terminal_session_path() -> str:
    from .._dirs import state_dir

    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
            boot = fh.read().decode("ascii").strip()  # (no codec import, unlike encoding=)
    except OSError:
        boot = "boot"
    if sys.platform == "win32":
        sid = os.getppid()
    else:
        sid = os.getsid(0)
    return os.path.join(state_dir(), "sessions", f"{boot}-{sid}.session")


def _load_session(path: str) -> list[Approval]:
    """The terminal session's approvals: one JSON object a line (only read when a decision
    asks, so ``json`` stays off the run path). A line in another shape (an older ringfence's
    prefix approvals or lines without ``sandboxed``, or damage) is skipped: that command is
    simply asked again."""
    try:
        with open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
    except OSError:
        return []
    import json

    out = []
    for line in lines:
        try:
            item = json.loads(line)
            argv, grants = item["argv"], item["grants"]
            cwd, workspace, sandboxed = item["cwd"], item["workspace"], item["sandboxed"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # (RecursionError: a line nested too deeply for the parser)
        if isinstance(argv, list) and isinstance(grants, list) and isinstance(
                sandboxed, bool) and all(
                isinstance(w, str) for w in (*argv, *grants, cwd, workspace)):
            out.append(Approval(argv=tuple(argv), grants=tuple(grants), cwd=cwd,
                                workspace=workspace, sandboxed=sandboxed))
    return out


def _save_session(path: str, approval: Approval) -> None:
    import json

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    line = json.dumps({"argv": list(approval.argv), "grants": list(approval.grants),
                       "cwd": approval.cwd, "workspace": approval.workspace,
                       "sandboxed": approval.sandboxed}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.write(fd, line.encode("ascii"))  # (json escapes everything else, surrogates too)
    finally:
        os.close(fd)


def context_for(policy: Policy, cwd: str | None, approved: tuple[Approval, ...] = (),
                escalation: Escalation = NO_ESCALATION) -> Context:
    return Context(
        mode=policy.approval_mode, workspace=policy.workspace,
        writable=policy.writable_roots() or (policy.workspace,),
        cwd=os.path.abspath(cwd) if cwd else policy.workspace,
        sandboxed=policy.profile != "full-access" and not escalation.no_sandbox,
        approved=approved, resolve=os.path.realpath,
    )


def check(policy: Policy, command: Sequence[str] | str, *, cwd: str | None = None,
          escalation: Escalation = NO_ESCALATION,
          session: SessionApprovals | None = None) -> Decision:
    """The decision for ``command`` under ``policy`` (what ``ringfence check`` prints)."""
    from .engine import decide

    approved = session.items if session is not None else ()
    return decide(command, policy.rules, context_for(policy, cwd, approved, escalation),
                  escalation)


def apply_escalation(policy: Policy, esc: Escalation) -> Policy:
    """The policy with a granted escalation: network on, more hosts on the allow list, more
    writable roots, or no sandbox."""
    if not esc:
        return policy
    changes: dict[str, Any] = {}
    if esc.network:
        changes["network"] = "on"
    elif esc.hosts and policy.network != "on":
        changes.update(allow_hosts(policy, esc.hosts))
    if esc.writable:
        changes["writable"] = (*policy.writable, *esc.writable)
    if esc.no_sandbox:
        changes["profile"] = "full-access"
    result: Policy = policy.replace(**changes)
    return result


def allow_hosts(policy: Policy, hosts: Sequence[str]) -> dict[str, Any]:
    """The changes that add ``hosts`` to the policy's allow list (mode ``allowlist``; from
    ``off``, an allow list of just these hosts); the list's other entries stay as they are."""
    from ..network.rules import NetworkRules

    rules = policy.network_rules if policy.network == "allowlist" and \
        policy.network_rules is not None else NetworkRules()
    allow = (*rules.allow, *(h for h in hosts if h not in rules.allow))
    return {"network": "allowlist", "network_rules": rules.replace(allow=allow)}


def check_words(command: Sequence[str] | str, cwd: str | None) -> None:
    """Refuse (``PolicyError``) what no program can receive before anything is decided or
    recorded: a NUL, or a lone surrogate (``"\\ud800"`` in a model's JSON) that cannot be
    encoded for the operating system (an undecodable byte read from it, U+DC80-U+DCFF, can)."""
    words = (command,) if isinstance(command, str) else tuple(command)
    for word in (*words, cwd or ""):
        if not isinstance(word, str):
            continue  # (the caller's own check names it)
        if "\0" in word:
            from ..errors import PolicyError

            raise PolicyError(f"command argument {word[:40]!r} contains a NUL byte, which no "
                              "program can receive; remove it")
        try:
            word.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            from ..errors import PolicyError

            raise PolicyError(f"command argument {word[:40]!r} contains a lone surrogate (a "
                              "broken UTF-16 escape such as \\ud800), which cannot be passed "
                              "to a program; send valid Unicode") from None


def command_text(command: Sequence[str] | str) -> str:
    if isinstance(command, str):
        return command
    import shlex

    return shlex.join(command)


class Gate:
    """A command that passed approvals: ``policy`` to run it with; ``record_run`` afterwards."""

    def __init__(self, policy: Policy, command: tuple[str, ...] | str, decision: Decision,
                 answer: str, approved_by: str, seq: int, writer: Any) -> None:
        self.policy = policy
        self.command = command
        self.decision = decision
        self.answer = answer
        self.approved_by = approved_by
        self.seq = seq
        self.writer = writer

    def record_run(self, *, mode: str, layers: Sequence[str], weaker: Sequence[str],
                   exit_code: int, duration: float, limits_hit: Sequence[str],
                   stderr: bytes | None = None, setup_failed: bool = False,
                   network: Sequence[Any] = (), git_warnings: Sequence[str] = ()) -> None:
        if self.writer is None:
            return
        from ..audit.log import run_record

        self.writer.append(run_record(
            self.policy, self.command, decision_seq=self.seq, mode=mode, layers=layers,
            weaker=weaker, exit_code=exit_code, duration=duration, limits_hit=limits_hit,
            stderr=stderr, setup_failed=setup_failed, network=network,
            git_warnings=git_warnings))

    def record_failure(self, plan: Any, exc: BaseException, *, setup_failed: bool = True
                       ) -> None:
        """Record a run of ``plan`` that ``exc`` stopped before it could start."""
        self.record_run(mode=plan.mode, layers=plan.layers, weaker=plan.weaker,
                        exit_code=getattr(exc, "exit_code", 125), duration=0.0,
                        limits_hit=(), setup_failed=setup_failed)

    def durable(self) -> None:
        """Make the decision record durable (``open_gate(defer_sync=True)``); call it before the
        command starts. Raises ``UnavailableError`` when it cannot be."""
        if self.writer is not None:
            self.writer.sync()

    def record_result(self, result: Result) -> None:
        self.record_run(mode=result.mode, layers=result.layers, weaker=result.weaker,
                        exit_code=result.exit_code, duration=result.duration,
                        limits_hit=result.limits_hit, stderr=result.stderr,
                        network=result.network, git_warnings=result.git_warnings)


def open_gate(
    policy: Policy,
    command: Sequence[str] | str,
    *,
    cwd: str | None = None,
    escalation: Escalation = NO_ESCALATION,
    approver: Approver | None = None,
    session: SessionApprovals | None = None,
    audit: bool = True,
    cli: bool = False,
    defer_sync: bool = False,
) -> Gate:
    """Decide, ask if needed, record the decision. Raises ApprovalError when it may not run.

    ``defer_sync``: the record of a decision to run is written but made durable only by
    ``Gate.durable()``, which the caller calls while the sandbox is being built."""
    from .engine import decide

    check_words(command, cwd)
    key: tuple[str, ...] | str = command if isinstance(command, str) else tuple(command)
    ctx = context_for(policy, cwd, (), escalation)
    decision = decide(key, policy.rules, ctx, escalation)
    if decision.verdict == "ask" and session is not None and session.items:
        decision = decide(key, policy.rules, ctx.replace(approved=session.items), escalation)
    writer = None
    if audit:
        from ..audit.log import Writer

        writer = Writer()
    answer = ""
    approved_by = decision.approved_by
    granted = policy
    if decision.verdict == "ask":
        if approver is None:
            _record(writer, policy, key, decision, "nobody to ask", "", cwd)
            raise ApprovalError(refusal(key, decision, cli=cli), decision)
        try:
            answer = _answer(approver(ApprovalRequest(
                key if isinstance(key, tuple) else ("/bin/sh", "-c", key),
                cwd or policy.workspace, policy.workspace, decision)), decision)
        except ApprovalError as exc:
            nobody = exc.args and "no terminal" in str(exc.args[0])
            _record(writer, policy, key, decision, "nobody to ask" if nobody else "no answer",
                    "", cwd)
            raise
        if answer == "deny":
            _record(writer, policy, key, decision, answer, "", cwd)
            raise ApprovalError(f"not run: {command_text(key)}: denied at the prompt "
                                f"({decision.reason})", decision)
        approved_by = str(getattr(approver, "who", "approver callback"))
        asked = [p for p in decision.parts if p.verdict == "ask"]
        escalated = any(p.rule == "escalation" for p in asked)
        if answer in ("session", "always") and session is not None:
            # this very command (the words the question showed), here, with exactly what it
            # was granted: not a longer command, another directory or another root or host
            whole = key if isinstance(key, tuple) else ("/bin/sh", "-c", key)
            session.add(Approval(argv=whole, grants=escalation.exact() if escalated else (),
                                 cwd=ctx.cwd, workspace=ctx.workspace,
                                 sandboxed=ctx.sandboxed))
        if answer == "always":
            from .rules import append_user_rule

            # an exact rule for every part that asked (not only the one the question named),
            # granting exactly the roots and hosts asked for (not their kinds)
            for argv, grants in dict.fromkeys(
                    (p.argv, escalation.exact() if p.rule == "escalation" else ())
                    for p in asked):
                append_user_rule(argv, grants)
    elif decision.verdict == "forbid":
        _record(writer, policy, key, decision, "", "", cwd)
        raise ApprovalError(f"forbidden: {command_text(key)}: {decision.reason} "
                            f"[{decision.rule}]", decision)
    granted = apply_escalation(policy, escalation)  # reaching here means it was approved
    seq = _record(writer, policy, key, decision, answer, approved_by, cwd, defer=defer_sync)
    return Gate(granted, key, decision, answer, approved_by, seq, writer)


def sync_approver(approver: Approver | AsyncApprover | None) -> Approver | None:
    """A plain approver as is; a coroutine approver run to completion (outside an event loop —
    inside one, use ``ringfence.arun``)."""
    if approver is None:
        return None

    def call(request: ApprovalRequest) -> str | bool:
        answer: Any = approver(request)
        if hasattr(answer, "__await__"):
            import asyncio

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_await(answer))  # type: ignore[no-any-return]
            answer.close() if hasattr(answer, "close") else None
            raise ApprovalError("an async approver was given to run() inside an event loop; "
                                "use ringfence.arun for asyncio code")
        return answer  # type: ignore[no-any-return]

    call.who = getattr(approver, "who", "approver callback")  # type: ignore[attr-defined]
    return call


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _answer(value: object, decision: Decision) -> str:
    if value is True:
        return "once"
    if value is False or value is None:
        return "deny"
    if value in ("once", "session", "always", "deny"):
        if value in ("session", "always") and decision.run_time:
            return "once"  # its text with another value later is not what was approved
        if value == "always" and not decision.always_ok:
            return "session"  # the user's own ask rule keeps asking in later sessions
        return str(value)
    raise ApprovalError(f"the approver answered {value!r}; answer once, session, always or "
                        "deny (or True/False)", decision)


def _record(writer: Any, policy: Policy, command: tuple[str, ...] | str, decision: Decision,
            answer: str, approved_by: str, cwd: str | None, *, defer: bool = False) -> int:
    if writer is None:
        return 0
    from ..audit.log import decision_record

    seq: int = writer.append(decision_record(policy, command, decision, answer=answer,
                                             approved_by=approved_by, cwd=cwd), defer=defer)
    return seq


def refusal(command: tuple[str, ...] | str, decision: Decision, *, cli: bool) -> str:
    """The one-line refusal when a command asks and nobody can answer: what would allow it."""
    text = command_text(command)
    ways = []
    esc = decision.escalation
    if decision.rule == "escalation" and esc:
        opts = []
        if esc.network:
            opts.append("--network on")
        opts += [f"--allow-domain {h}" for h in esc.hosts if not esc.network]
        opts += [f"--writable {w}" for w in esc.writable]
        if esc.no_sandbox:
            opts.append("--profile full-access")
        ways.append(f"give it yourself with {' '.join(opts)}" if cli else
                    "pass an approver, or widen the policy yourself")
        ways.append(f"or add an allow rule with grants = {list(esc.exact())} to your config")
    elif decision.rule.startswith(("mode:untrusted", "shell")) and "untrusted" in \
            decision.reason:
        ways.append("use --approval-mode on-request (it still runs in the sandbox)" if cli else
                    "use approval mode on-request")
        if decision.run_time:
            ways.append(f"or write out {late_words(decision.run_time)}, which no rule's word "
                        "stands for (its value is only known when it runs), in your config")
        else:
            ways.append(f"or add an allow rule for {command_text(decision.ask_argv)!r} to your "
                        "config")
    elif decision.run_time and decision.rule.startswith(("builtin:", "dynamic", "unknown")):
        # (the built-in list asks; not the user's own rule, which asks whatever the words)
        ways.append(f"{'answer once at a terminal' if cli else 'pass an approver'}, or write "
                    f"out {late_words(decision.run_time)}: its value is only known when it "
                    "runs, so no allow rule's word stands for it in your config")
    elif decision.always_ok:
        words = command_text(decision.ask_argv)
        ways.append(f"pass --allow {_quote(words)}" if cli else "pass an approver")
        ways.append("or add an allow rule for it to your config")
    else:
        ways.append(f"change {decision.rule}, which asks")
    from ..policy.load import user_config_path

    where = "on" if cli else "for"
    return (f"not run: {text}: it needs approval ({decision.reason} [{decision.rule}]) and "
            f"there is no terminal to ask {where}; to allow it, {' '.join(ways)} "
            f"({user_config_path()})")


def late_words(words: Sequence[str]) -> str:
    """``$X/build`` and ``*.o``: words only known when the command runs, for a message."""
    from .prompt import visible

    shown = [f"`{visible(w)}`" for w in words[:3]]
    more = f" and {len(words) - 3} more" if len(words) > 3 else ""
    return " and ".join(shown) + more


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# --- the command line ------------------------------------------------------------------------

def escalation_from(args: Args) -> Escalation:
    """``--escalate network|no-sandbox|writable:DIR`` (repeatable) and ``--justification``."""
    import os

    wanted = args.values.get("--escalate", [])
    justification = " ".join(args.values.get("--justification", []))
    if not wanted:
        if justification:
            from ..errors import PolicyError

            raise PolicyError("--justification goes with --escalate; see ringfence --help")
        return NO_ESCALATION
    network = no_sandbox = False
    writable: list[str] = []
    for item in wanted:
        if item == "network":
            network = True
        elif item == "no-sandbox":
            no_sandbox = True
        elif item.startswith("writable:") and len(item) > 9:
            path = os.path.realpath(os.path.expanduser(item[9:]))
            if not os.path.isdir(path):
                from ..errors import PolicyError

                raise PolicyError(f"--escalate {item}: {path} is not a directory")
            writable.append(path)
        else:
            from ..errors import PolicyError

            raise PolicyError(f"--escalate {item!r}: use network, no-sandbox or writable:DIR")
    return Escalation(network=network, writable=tuple(writable), no_sandbox=no_sandbox,
                      justification=justification)


def cli_gate(args: Args, policy: Policy, command: list[str] | str, cwd: str,
             escalation: Escalation | None = None,
             before_asking: Callable[[], None] | None = None) -> Gate:
    """Decide; ask on the terminal when needed (refuse without one); record the decision.
    ``before_asking`` is called before a question is put to anyone (or refused for want of a
    terminal)."""
    esc = escalation if escalation is not None else escalation_from(args)
    asker = _LazyTerminal(before_asking)
    try:
        return open_gate(policy, command, cwd=cwd, escalation=esc, approver=asker,
                         session=terminal_session(), cli=True, defer_sync=True)
    finally:
        asker.close()


class _LazyTerminal:
    """Opens /dev/tty only when a question is actually asked (the run path never pays)."""

    who = "user at the terminal"

    def __init__(self, before_asking: Callable[[], None] | None = None) -> None:
        self.tty: Any = None
        self.before_asking = before_asking

    def __call__(self, request: ApprovalRequest) -> str:
        from .prompt import terminal_approver

        if self.before_asking is not None:
            self.before_asking()
        self.tty = terminal_approver()
        if self.tty is None:
            raise ApprovalError(refusal(request.command, request.decision, cli=True),
                                request.decision)
        answer: str = self.tty(request)
        return answer

    def close(self) -> None:
        if self.tty is not None:
            self.tty.close()
            self.tty = None
