"""The approval engine: command + rules + context → run, ask or forbid. Pure (no I/O).

How one command is judged:

1. A shell string is parsed (tree-sitter's bash grammar) into every simple command in it,
   pipelines, lists, substitutions and loops included; an argv list is one simple command.
   Wrappers (``env``, ``nice``, ``timeout``, ``xargs`` …) and ``sh -c SCRIPT`` are unwrapped: the
   command they run is judged too.
2. Each simple command: the rules that match it decide (the strictest of them); with no rule,
   the built-in always-ask list, then the built-in read-only list; otherwise it is "unknown".
3. The whole: ``curl … | sh`` (a download fed to an interpreter) asks; constructs that hide
   what runs (substitutions, expansions, here-documents fed to interpreters, writes outside the
   writable roots, loops, text that does not parse) make the text not automatically safe.
4. The mode turns that into a verdict: unknown or not-automatically-safe asks in ``untrusted`` and
   runs (sandboxed) otherwise; ``never`` turns every ask into forbid. An escalation (more than
   the policy gives) asks unless an ``allow`` rule with those ``grants`` or an approval from
   this session covers it (a rule's ``grants`` name a root or host exactly,
   ``writable:/srv/cache``, ``network:host``, or a whole kind).
5. The strictest part decides: forbid > ask > run.
"""

from __future__ import annotations

import os

from . import builtin
from .model import NO_ESCALATION, Context, Decision, Escalation, Part, Rule, where

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .builtin import Words
    from .shell import Script

_RANK = {"run": 0, "safe": 0, "unknown": 0, "ask": 1, "forbid": 2}
_RULE_VERDICT = {"allow": "run", "ask": "ask", "forbid": "forbid"}
_RULE_RANK = {"allow": 0, "ask": 1, "forbid": 2}
_MAX_DEPTH = 8
_SAFE_WRITES = ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty")


def decide(
    command: Sequence[str] | str,
    rules: Sequence[Rule] = (),
    context: Context | None = None,
    escalation: Escalation = NO_ESCALATION,
) -> Decision:
    """The verdict on ``command`` (argv, or shell text when a ``str``)."""
    ctx = context or Context(workspace=os.sep)
    if ctx.mode not in ("untrusted", "on-request", "on-failure", "never"):
        from ..errors import PolicyError

        raise PolicyError(f"approval mode {ctx.mode!r} is unknown; use one of untrusted, "
                          "on-request, on-failure, never")
    parts: list[_Raw] = []
    if isinstance(command, str):
        key: tuple[str, ...] = ("/bin/sh", "-c", command)
        _judge_text(command, rules, ctx, parts, 0)
    else:
        from .builtin import Words

        key = tuple(command)
        _judge(Words(key), rules, ctx, parts, 0)
    if escalation:
        parts.append(_escalation(key, rules, escalation, parts))
    return _combine(parts, ctx, escalation, key)


class _Raw:
    """A part before the mode is applied. ``kind``: run|safe|unknown|ask|forbid|flag.
    ``late``: its words whose values are only decided when the command runs (no "session" or
    "always" answer may cover the part: it would cover every later value)."""

    __slots__ = ("argv", "kind", "reason", "rule", "from_rule", "late")

    def __init__(self, argv: tuple[str, ...], kind: str, reason: str, rule: str,
                 from_rule: bool = False, late: tuple[str, ...] = ()) -> None:
        self.argv = argv
        self.kind = kind
        self.reason = reason
        self.rule = rule
        self.from_rule = from_rule
        self.late = late


def _judge_text(text: str, rules: Sequence[Rule], ctx: Context, out: list[_Raw],
                depth: int, covered: str = "") -> None:
    from . import shell
    from .builtin import Words

    script = shell.parse(text)
    whole = ("/bin/sh", "-c", text)
    for r in rules:
        if r.decision == "allow" and r.matches(whole):
            # the user allowed this very text ("always" at a prompt): its shape and its
            # unknown commands; rules and the always-ask list still judge what is inside
            covered = r.label()
            script.flags.clear()
            script.writes.clear()
            script.write_words.clear()
    if not script.read:  # nothing inside could be judged, so no rule covers it
        script.flag(shell.UNREADABLE)
    ctx = _after_cd(script, ctx)
    for flag in script.flags:
        out.append(_Raw(("/bin/sh", "-c", text), "flag",
                        f"the shell text contains {flag}, so it is not automatically safe",
                        "shell"))
    for target, written in zip(script.writes, script.write_words, strict=False):
        if target is None or not _write_ok(target, ctx):
            where = "a path only known at run time" if target is None else target
            out.append(_Raw(("/bin/sh", "-c", text), "flag",
                            f"a redirection writes to {where}, outside the writable roots",
                            "shell", late=(written,) if target is None else ()))
    for cmd in script.commands:
        if cmd.argv:
            _judge(Words(cmd.argv, cmd.dynamic, cmd.glob), rules, ctx, out, depth, covered)
    _download_to_interpreter(script, text, out)


_MOVES = frozenset({"cd", "pushd", "popd"})
_ELSEWHERE = "~"  # a cwd no relative path resolves inside a writable root from


def _elsewhere(ctx: Context) -> Context:
    moved: Context = ctx.replace(cwd=_ELSEWHERE)
    return moved


def _after_cd(script: Script, ctx: Context) -> Context:
    """Where the text's relative paths point, when it changes directory (``cd ~ && rm -rf
    .config``). Every ``cd``/``pushd`` must go to a literal directory inside a writable root,
    or relative targets anywhere in the text are taken as outside them (the text's order is
    not followed: ``rm -rf x; cd /`` asks too)."""
    for cmd in script.commands:
        if not cmd.argv or os.path.basename(cmd.argv[0]) not in _MOVES:
            continue
        # (a glob is only known at run time too: `cd .?` is `cd ..` to dash)
        args = [(a, d or g) for a, d, g in zip(cmd.argv[1:], cmd.dynamic[1:], cmd.glob[1:],
                                               strict=False)
                if a == "-" or not a.startswith("-")]  # (-L, -P)
        if os.path.basename(cmd.argv[0]) == "popd" or not args:
            return _elsewhere(ctx)  # back to where it was, or home: not known
        target, dynamic = args[0]
        if dynamic or target == "-" or target.startswith(("~", "+")):
            return _elsewhere(ctx)
        full = where(ctx, target, follow=True)
        if not any(full == r or full.startswith(r.rstrip("/") + "/")
                   for r in ctx.writable or (ctx.workspace,)):
            return _elsewhere(ctx)
    return ctx


def _download_to_interpreter(script: Script, text: str, out: list[_Raw]) -> None:
    from .shell import INTERPRETERS

    def name(cmd: object) -> str:
        argv = getattr(cmd, "argv", ())
        return os.path.basename(argv[0]) if argv else ""

    downloads = [c for c in script.commands if name(c) in builtin.DOWNLOADERS]
    if not downloads:
        return
    hit = False
    for stages in script.pipelines:
        names = [name(s) if s is not None else "?" for s in stages]
        for i, n in enumerate(names):
            if n in builtin.DOWNLOADERS and any(
                    m in INTERPRETERS or m == "?" for m in names[i + 1:]):
                hit = True
    for cmd in script.fed_interpreters:
        if name(cmd) in INTERPRETERS:
            hit = True
    for cmd in script.commands:
        if name(cmd) in INTERPRETERS and any(cmd.dynamic[1:]):
            hit = True
    if hit:
        out.append(_Raw(("/bin/sh", "-c", text), "ask",
                        "it runs what it downloads (a download fed to an interpreter)",
                        "builtin:download-to-interpreter"))


def _write_ok(target: str, ctx: Context) -> bool:
    if target in _SAFE_WRITES or target.startswith("/dev/fd/"):
        return True
    if target.startswith("~"):
        return False
    full = where(ctx, target, follow=True)  # (opening a link for writing follows it)
    roots = ctx.writable or (ctx.workspace,)
    return any(full == r or full.startswith(r.rstrip("/") + "/") for r in roots)


def _judge(w: Words, rules: Sequence[Rule], ctx: Context, out: list[_Raw], depth: int,
           covered: str = "") -> None:
    if depth > _MAX_DEPTH:
        out.append(_Raw(w.argv, "ask", "the command nests shells and wrappers too deeply to "
                        "judge", "builtin:depth"))
        return
    argv = w.argv
    if not argv:
        return
    # words whose values the shell decides when it runs: no rule's literal word allows them,
    # and no "session" or "always" answer covers them
    flags = tuple(d or g for d, g in zip(w.dynamic, w.glob, strict=True))
    late = tuple(a for a, f in zip(argv, flags, strict=True) if f)

    def part(kind: str, reason: str, rule: str, from_rule: bool = False) -> None:
        out.append(_Raw(argv, kind, reason, rule, from_rule, late))

    matched = [r for r in rules if r.matches(argv, flags)]
    if matched:
        rule = max(matched, key=lambda r: _RULE_RANK[r.decision])
        why = rule.justification or f"{rule.label()} says {rule.decision}"
        part(_RULE_VERDICT[rule.decision], why, rule.label(), from_rule=True)
    elif w.dynamic[0]:
        part("unknown", "the program's name is only known when the shell runs, so no rule "
             "can be checked", "dynamic")
    else:
        label = builtin.applies("ask", w, ctx)
        if label is not None:
            part("ask", f"{w.name} is on the built-in always-ask list", label)
        else:
            label = builtin.applies("safe", w, ctx)
            # (find is no wrapper: what its -exec runs is judged below, and it stays unknown)
            wraps = (w.name != "find" and bool(builtin.unwrap(w))) \
                or builtin.shell_script(w) is not None
            if label is not None:
                part("safe", f"{w.name} only reads", label)
            elif wraps:
                # a wrapper or `sh -c SCRIPT`: what it runs is judged below, and decides
                part("safe", f"{w.name} runs the command judged next",
                     f"builtin:{w.name} (wrapper)")
            elif covered:
                part("run", f"allowed with the text around it by {covered}", covered,
                     from_rule=True)
            else:
                part("unknown", f"{w.name or argv[0]!r} is not a known read-only command",
                     "unknown")
    for inner in builtin.unwrap(w):
        if inner.argv:
            _judge(inner, rules, ctx, out, depth + 1, covered)
    script = builtin.shell_script(w)
    if script is not None:
        text, _ = script
        if text is None:
            part("flag", "the shell script is only known at run time", "dynamic")
        elif text:
            _judge_text(text, rules, ctx, out, depth + 1, covered)


def _escalation(key: tuple[str, ...], rules: Sequence[Rule], esc: Escalation,
                parts: list[_Raw]) -> _Raw:
    need = esc.exact()
    for rule in rules:
        if rule.decision == "allow" and rule.grants and rule.matches(key) and all(
                _grants(rule, item) for item in need):
            return _Raw(key, "run", f"{rule.label()} grants {', '.join(need)}", rule.label(),
                        from_rule=True)
    why = f"it asks for more than the policy gives ({', '.join(esc.kinds())})"
    if esc.justification:
        why += f": {esc.justification}"
    return _Raw(key, "ask", why, "escalation")


def _grants(rule: Rule, item: str) -> bool:
    """Whether ``rule`` grants one item of ``Escalation.exact`` (``writable:/srv/cache``,
    ``network:host``, ``network``, ``no-sandbox``): named exactly, or by its kind. An exact
    rule's bare kind covers only the roots and hosts its own words name (an older ringfence's
    "always" answer to ``escalate writable_root /srv/cache`` wrote ``grants = ["writable"]``;
    a real program spelled so must not get every root with it)."""
    if item in rule.grants:
        return True
    kind, _, value = item.partition(":")
    if not value or kind not in rule.grants:
        return False
    return not rule.exact or value in rule.prefix


def _combine(raw: list[_Raw], ctx: Context, esc: Escalation, key: tuple[str, ...]) -> Decision:
    parts: list[Part] = []
    asks: list[_Raw] = []
    approved_by = "policy"
    for item in raw:
        verdict = "run"
        reason = item.reason
        rule = item.rule
        if item.kind == "forbid":
            verdict = "forbid"
        elif item.kind == "ask":
            verdict = "ask"
        elif item.kind in ("unknown", "flag"):
            if ctx.mode == "untrusted":
                verdict = "ask"
                reason += "; the approval mode is untrusted"
                rule = "mode:untrusted" if item.kind == "unknown" else item.rule
            elif not ctx.sandboxed and (item.rule == "dynamic"
                                        or "does not parse" in item.reason):
                verdict = "ask"
                reason += ", and it would run without a sandbox"
        elif item.kind == "run" and item.from_rule:
            approved_by = item.rule
        if verdict == "ask":
            grants = esc.exact() if item.rule == "escalation" else ()
            # (a "session" answer never covers a part with a word only known at run time)
            approval = not item.late and _session(key, grants, ctx)
            if approval:
                verdict = "run"
                reason = f"approved earlier this session ({reason})"
                rule = "session"
                approved_by = "session"
            elif ctx.mode == "never":
                verdict = "forbid"
                reason += "; the approval mode is never, so nobody can be asked"
                rule = f"{rule} + mode:never"
            else:
                asks.append(item)
        parts.append(Part(argv=item.argv, verdict=verdict, reason=reason, rule=rule))
    if not parts:
        return Decision(verdict="run", reason="nothing to run", rule="policy",
                        approved_by="policy", escalation=esc)
    top = max(_RANK[p.verdict] for p in parts)
    tops = [i for i, p in enumerate(parts) if _RANK[p.verdict] == top]
    # the most telling part: a rule's or the built-in list's word before the mode's
    pick = next((i for i in tops if raw[i].kind in ("ask", "forbid")), tops[0])
    worst, first = parts[pick], raw[pick]
    if worst.verdict == "run":
        if approved_by == "policy" and any(r.kind == "safe" for r in raw) and all(
                r.kind in ("safe", "run") for r in raw):
            approved_by = "safe-list"
        how = "in the sandbox" if ctx.sandboxed else "without a sandbox"
        reason = f"runs {how} (approval mode {ctx.mode})"
        if approved_by == "session":
            reason = "approved earlier this session; " + reason
        return Decision(verdict="run", reason=reason, rule=approved_by, escalation=esc,
                        approved_by=approved_by, parts=tuple(parts))
    if worst.verdict == "forbid":
        return Decision(verdict="forbid", reason=worst.reason, rule=worst.rule, escalation=esc,
                        parts=tuple(parts))
    run_time = tuple(dict.fromkeys(word for a in asks for word in a.late))
    return Decision(
        verdict="ask", reason=worst.reason, rule=worst.rule,
        grants=esc.describe(), escalation=esc,
        ask_argv=key if first.rule == "escalation" or first.kind == "flag" else first.argv,
        parts=tuple(parts), always_ok=not run_time and not any(a.from_rule for a in asks)
        and all(a.argv and a.argv[0] for a in asks), run_time=run_time,
    )


def _session(key: tuple[str, ...], grants: tuple[str, ...], ctx: Context) -> bool:
    """Whether a "session" answer covers this very command (the same words, not a longer
    command that starts with them), run in the same directory of the same workspace, in a
    sandbox or not as then, with every grant it needs granted then."""
    return any(a.argv == key and a.cwd == ctx.cwd and a.workspace == ctx.workspace
               and a.sandboxed == ctx.sandboxed and set(grants) <= set(a.grants)
               for a in ctx.approved)
