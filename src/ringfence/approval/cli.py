"""The command line's approval pieces: the gate for ``run``, ``check`` and ``rules test``."""

from __future__ import annotations

import sys

from ..errors import PolicyError
from .gate import cli_gate, escalation_from
from .model import Escalation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..cli import Args
    from ..policy.model import Policy
    from .gate import Gate


def command_of(args: Args) -> list[str] | str:
    shell = args.values.get("--shell")
    if shell:
        if len(shell) > 1 or args.command:
            raise PolicyError("give either --shell TEXT or a command after --, not both")
        return shell[0]
    if not args.command:
        raise PolicyError("no command given; put it after --, e.g. ringfence run -- pytest -q")
    return args.command


def after_failure(args: Args, policy: Policy, command: list[str] | str, cwd: str,
                  exit_code: int) -> Gate | None:
    """``on-failure``: after a failed sandboxed run, ask to run it again without the sandbox.

    Returns the gate for the second run, or None (not this mode, nobody to ask, or denied).
    """
    from .gate import ApprovalError

    if policy.approval_mode != "on-failure" or exit_code == 0 or policy.profile == "full-access":
        return None
    esc = Escalation(no_sandbox=True,
                     justification=f"it failed in the sandbox (exit status {exit_code})")
    try:
        return cli_gate(args, policy, command, cwd, esc)
    except ApprovalError as exc:
        from .prompt import visible

        print(visible(f"ringfence: not run again without the sandbox: {exc}"), file=sys.stderr)
        return None


# --- ringfence check ---------------------------------------------------------------------------

def cmd_check(args: Args, policy: Policy, cwd: str) -> int:
    """Print the decision and the deciding rule; run nothing. Exit 0 run, 1 ask, 2 forbid."""
    from .gate import check, command_text

    command = command_of(args)
    esc = escalation_from(args)
    decision = check(policy, command, cwd=cwd, escalation=esc)
    if "--json" in args.flags:
        from ..cli import _print_json

        data = decision.to_json()
        data["command"] = command if isinstance(command, str) else list(command)
        data["approval_mode"] = policy.approval_mode
        _print_json(data)
    else:
        from .prompt import visible

        out = [f"decision: {decision.verdict}", f"command:  {visible(command_text(command))}",
               f"reason:   {visible(decision.reason)}", f"rule:     {visible(decision.rule)}",
               f"mode:     {policy.approval_mode}"]
        out += [f"gets:     {g}" for g in decision.grants]
        if decision.run_time:
            from .gate import late_words

            out.append(f"run time: {late_words(decision.run_time)} (only known when it "
                       "runs: no session or always approval)")
        if len(decision.parts) > 1:
            out.append("parts:")
            out += [f"  {p.verdict:6} {visible(command_text(p.argv))}  [{visible(p.rule)}]"
                    for p in decision.parts]
        sys.stdout.write("\n".join(out) + "\n")
    return {"run": 0, "ask": 1, "forbid": 2}[decision.verdict]


# --- ringfence rules test ----------------------------------------------------------------------

def cmd_rules(argv: list[str]) -> int:
    """``rules test [FILE...]``: load the rules and check every example (exit 1 on a failure)."""
    from ..policy.load import read_toml, user_config_path
    from ..policy.model import PROJECT_POLICY_NAME
    from .rules import parse_rules

    if not argv or argv[0] != "test":
        raise PolicyError("usage: ringfence rules test [FILE...]")
    files = argv[1:]
    trusted = {f: True for f in files}
    if not files:
        import os

        files = [user_config_path(), os.path.join(os.getcwd(), PROJECT_POLICY_NAME)]
        trusted = {files[0]: True, files[1]: True}  # trust is checked by run, not by examples
    total = 0
    failed = 0
    for path in files:
        data = read_toml(path, cache=False)
        if data is None:
            if path in argv[1:]:
                raise PolicyError(f"{path}: no such file")
            continue
        try:
            rules = parse_rules(data.get("rules", []), path, trusted=trusted[path])
        except PolicyError as exc:
            from .prompt import visible

            print(visible(f"FAIL {exc}"))
            failed += 1
            continue
        examples = sum(len(r.match) + len(r.not_match) for r in rules)
        total += len(rules)
        print(f"ok   {path}: {len(rules)} rules, {examples} examples")
    if failed:
        return 1
    print(f"{total} rules checked")
    return 0
