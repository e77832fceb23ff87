"""The approval values. Pure: no I/O.

A command is judged part by part (a shell string is split into its simple commands); each part
gets a verdict, and the strictest verdict decides: ``forbid`` beats ``ask`` beats ``run``.
"""

from __future__ import annotations

import os

from ..policy.model import APPROVAL_MODES, Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, ClassVar

MODES = APPROVAL_MODES
"""Codex's approval modes.

- ``untrusted``: only known read-only commands (and ``allow`` rules) run without asking.
- ``on-request`` (default): everything runs in the sandbox without asking, except what a rule or
  the built-in always-ask list says to ask about, and requests for more than the policy gives.
- ``on-failure``: as on-request; and when a command fails in the sandbox in a way that looks like
  a denial, the person is asked whether to run it again without the sandbox.
- ``never``: nobody is asked; whatever would ask is refused instead.
"""

DECISIONS = ("allow", "ask", "forbid")
"""Rule decisions, loosest first (the strictest matching one wins)."""

VERDICTS = ("run", "ask", "forbid")
"""Engine outcomes, loosest first."""

GRANTS = ("network", "writable", "no-sandbox")
"""What an escalation may ask for on top of the policy."""

ANSWERS = ("once", "session", "always", "deny")


class Rule(Frozen):
    """``prefix``: words a command starts with (a word may be a tuple of alternatives).

    ``decision``: allow | ask | forbid. ``grants``: for ``allow``, the escalations it pre-approves
    (``network``, ``writable``, ``no-sandbox``). ``source``: the file it came from (or
    ``session``, ``command line``); ``name``: how messages name it. ``exact``: the command must
    be exactly these words, no more (what an "always" answer writes), and the program is
    compared as written, not by its base name.
    """

    __slots__ = ("prefix", "decision", "justification", "match", "not_match", "grants",
                 "source", "name", "exact")
    prefix: tuple[str | tuple[str, ...], ...]
    decision: str
    justification: str
    match: tuple[str, ...]
    not_match: tuple[str, ...]
    grants: tuple[str, ...]
    source: str
    name: str
    exact: bool
    _defaults: ClassVar[Mapping[str, Any]] = {
        "justification": "", "match": (), "not_match": (), "grants": (), "source": "",
        "name": "", "exact": False,
    }

    def matches(self, argv: tuple[str, ...] | list[str],
                late: Sequence[bool] | None = None) -> bool:
        """Whether ``argv`` starts with the prefix (the program compared by its base name too),
        or, for an ``exact`` rule, is exactly its words.

        ``late``: per word, whether its value is only decided when the shell runs (``$X``,
        ``$(…)``, ``$((…))``, ``<(…)``, a glob, ``~``, a brace; then the word is its text). An
        ``allow`` rule's word never matches such a word: ``rm -r $X/build`` is not the command
        a rule for the words ``rm -r $X/build`` allowed, whatever X is later. An ``ask`` or
        ``forbid`` rule's word still matches it as written (stricter, never looser)."""
        if len(argv) < len(self.prefix) or (self.exact and len(argv) != len(self.prefix)):
            return False
        for i, want in enumerate(self.prefix):
            word = argv[i]
            if late is not None and late[i] and self.decision == "allow":
                return False
            options = want if isinstance(want, tuple) else (want,)
            if word in options:
                continue
            if i == 0 and not self.exact and "/" in word and word.rsplit("/", 1)[1] in options:
                continue
            return False
        return True

    def label(self) -> str:
        words = [("|".join(w) if isinstance(w, tuple) else w) for w in self.prefix]
        where = f" in {self.source}" if self.source else ""
        exact = "exact " if self.exact else ""
        return self.name or f"{exact}rule {' '.join(words)!r}{where}"


class Escalation(Frozen):
    """More than the policy gives, asked for with a justification.

    ``network``: the whole network (mode ``on``: every host and port, this machine's own
    services included). ``hosts``: only these hosts, as allow-list entries (mode ``allowlist``,
    added to any allow list the policy has). ``writable``: more writable roots. ``no_sandbox``:
    run without a sandbox.
    """

    __slots__ = ("network", "hosts", "writable", "no_sandbox", "justification")
    network: bool
    hosts: tuple[str, ...]
    writable: tuple[str, ...]
    no_sandbox: bool
    justification: str
    _defaults: ClassVar[Mapping[str, Any]] = {
        "network": False, "hosts": (), "writable": (), "no_sandbox": False,
        "justification": "",
    }

    def kinds(self) -> tuple[str, ...]:
        """The kinds a rule's ``grants`` name (``network`` covers ``hosts`` too)."""
        out = []
        if self.network or self.hosts:
            out.append("network")
        if self.writable:
            out.append("writable")
        if self.no_sandbox:
            out.append("no-sandbox")
        return tuple(out)

    def describe(self) -> tuple[str, ...]:
        """What more the command would get, in words."""
        out = []
        if self.no_sandbox:
            out.append("no sandbox: full access to your account's files, network and processes")
        if self.network:
            out.append("network access: every host and port, this machine's own services "
                       "included (network mode on, no allow list)")
        elif self.hosts:
            out.append(f"network access to {', '.join(self.hosts)} only (added to the allow "
                       "list; no other host)")
        for root in self.writable:
            out.append(f"write access to {root}")
        return tuple(out)

    def exact(self) -> tuple[str, ...]:
        """Exactly what is granted, item by item (what a "session" answer remembers): a grant
        for one host or one root does not cover another."""
        out = []
        if self.no_sandbox:
            out.append("no-sandbox")
        if self.network:
            out.append("network")
        out += [f"network:{h}" for h in self.hosts]
        out += [f"writable:{w}" for w in self.writable]
        return tuple(out)

    def __bool__(self) -> bool:
        return bool(self.network or self.hosts or self.writable or self.no_sandbox)


NO_ESCALATION = Escalation()


class Approval(Frozen):
    """One remembered "session" answer: the very command it covers (its argv, or
    ``("/bin/sh", "-c", TEXT)`` for shell text; never a longer one), the directory it runs in
    and the workspace (a relative path means another file elsewhere), exactly what it was
    granted (``Escalation.exact``), and whether it ran in a sandbox (an answer given where the
    sandbox would stop ``rm -rf ~/x`` does not cover the same words under full-access)."""

    __slots__ = ("argv", "grants", "cwd", "workspace", "sandboxed")
    argv: tuple[str, ...]
    grants: tuple[str, ...]
    cwd: str
    workspace: str
    sandboxed: bool
    _defaults: ClassVar[Mapping[str, Any]] = {"sandboxed": True}


class Context(Frozen):
    """What the engine knows besides the command.

    - ``mode``: one of ``MODES``.
    - ``workspace``: absolute path; ``writable``: the writable roots (workspace included).
    - ``cwd``: where the command runs (relative paths in it are resolved against this).
    - ``sandboxed``: whether the command runs in a sandbox (False for full-access).
    - ``approved``: approvals given earlier in this session.
    - ``resolve``: the real path of an absolute path, given by the caller that may look at the
      filesystem (the gate passes ``os.path.realpath``): a link in the workspace can point
      anywhere, so ``rm -rf out/x`` with ``out -> /`` removes ``/x``. None: paths are taken as
      written (the engine itself never looks; see ``where``).
    """

    __slots__ = ("mode", "workspace", "writable", "cwd", "sandboxed", "approved", "resolve")
    mode: str
    workspace: str
    writable: tuple[str, ...]
    cwd: str
    sandboxed: bool
    approved: tuple[Approval, ...]
    resolve: Callable[[str], str] | None
    _defaults: ClassVar[Mapping[str, Any]] = {
        "mode": "on-request", "writable": (), "cwd": "", "sandboxed": True, "approved": (),
        "resolve": None,
    }


def where(ctx: Context, target: str, *, follow: bool) -> str:
    """The absolute path ``target`` (relative to the context's cwd) names, with the links on
    the way resolved by ``ctx.resolve``: those of its parent directories always, its own only
    when ``follow`` (a redirection or ``cd`` follows a link; ``rm -r link`` removes the link
    itself, but ``rm -r link/`` what it points to)."""
    joined = os.path.join(ctx.cwd or ctx.workspace, target)
    if ctx.resolve is None or not joined.startswith("/"):
        # (relative: the cwd is not known, see engine._ELSEWHERE; never inside)
        return os.path.normpath(joined)
    # resolved as written, before any normalising: `out/../etc` with `out -> /` is /etc
    head, tail = os.path.split(joined)
    if follow or tail in ("", ".", "..") or not head:
        return ctx.resolve(joined)
    return os.path.join(ctx.resolve(head), tail)


class Part(Frozen):
    """The verdict on one simple command (or on the shape of the whole)."""

    __slots__ = ("argv", "verdict", "reason", "rule")
    argv: tuple[str, ...]
    verdict: str
    reason: str
    rule: str


class Decision(Frozen):
    """The engine's answer.

    - ``verdict``: run | ask | forbid.
    - ``reason``: one sentence a person can act on; ``rule``: what decided (a rule's label,
      ``builtin:NAME``, ``mode:NAME``, ``session``).
    - ``grants``: for ask, what more the command would get (see ``Escalation.describe``).
    - ``ask_argv``: the words an approval of this ask covers (what "session"/"always" remember).
    - ``approved_by``: for run, who or what let it run (``policy``, ``safe-list``, a rule,
      ``session``).
    - ``parts``: the verdict on each part, for ``ringfence check``.
    - ``always_ok``: whether "always" may be offered (not when the user's own rule asks).
    - ``run_time``: the words of the parts that ask whose values are only decided when the
      command runs (``$X/build``, ``$(cat f)``, ``*.o``, ``~/x``): an approval of their text
      would cover every later value, so neither "session" nor "always" is offered (an answer
      of either counts as "once").
    """

    __slots__ = ("verdict", "reason", "rule", "grants", "escalation", "ask_argv", "approved_by",
                 "parts", "always_ok", "run_time")
    verdict: str
    reason: str
    rule: str
    grants: tuple[str, ...]
    escalation: Escalation
    ask_argv: tuple[str, ...]
    approved_by: str
    parts: tuple[Part, ...]
    always_ok: bool
    run_time: tuple[str, ...]
    _defaults: ClassVar[Mapping[str, Any]] = {
        "grants": (), "escalation": NO_ESCALATION, "ask_argv": (), "approved_by": "",
        "parts": (), "always_ok": True, "run_time": (),
    }

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.verdict, "reason": self.reason, "rule": self.rule,
            "grants": list(self.grants), "approved_by": self.approved_by,
            "escalation": list(self.escalation.kinds()),
            "justification": self.escalation.justification,
            "parts": [{"command": list(p.argv), "decision": p.verdict, "reason": p.reason,
                       "rule": p.rule} for p in self.parts],
            # words whose value the shell decides when it runs ($X, globs, ~): no rule's
            # literal word matches them, so "session" and "always" are not offered
            "run_time": list(self.run_time), "always_ok": self.always_ok,
        }
