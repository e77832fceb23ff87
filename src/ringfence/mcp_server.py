"""``ringfence mcp``: the Model Context Protocol on stdio, over a ringfence session.

Built on the official ``mcp`` SDK (``pip install 'ringfence[mcp]'``). Any MCP client (Claude
Code, Codex, Cursor, an in-house agent) gets two tools:

- ``run``: run a command (an argv list, or a string for ``/bin/sh -c``) in the sandbox, in a
  working directory inside the workspace, with a timeout; returns the exit code, the output,
  the limits hit and the denials (what the sandbox refused and the smallest change that would
  allow it). All commands of one MCP connection share one session (its ``/tmp`` and
  environment); the session is started on the first call and ends with the connection.
- ``request_escalation``: ask for a change to the policy (a writable root, the network, more
  time) with a justification. Decided by the approval engine through ``ringfence.escalation``;
  until that engine is part of ringfence, it refuses every request and says so.

When the client goes away mid-command, the tool call is cancelled and the command is killed;
when the connection ends, the session and everything in it end.
"""

from __future__ import annotations

import sys
from typing import Any  # the SDK reads the tools' annotations at run time

from .errors import CommandError, PolicyError, RingfenceError, UnavailableError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .policy.model import Policy
    from .session import AsyncSession

def build_server(policy: Policy) -> Any:
    """The MCP server (an ``mcp.server.mcpserver.MCPServer``) for ``policy``."""
    try:
        from mcp.server.mcpserver import Context, MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp_types import InputRequiredResult
    except ImportError:
        raise UnavailableError("ringfence mcp needs the MCP SDK: pip install 'ringfence[mcp]'"
                               ) from None
    import contextlib

    from .session import AsyncSession

    # the SDK resolves the tools' (string) annotations in this module's globals
    globals().update(Context=Context, InputRequiredResult=InputRequiredResult)
    holder: dict[str, AsyncSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(server: Any) -> Any:
        try:
            yield {}
        finally:
            session = holder.pop("session", None)
            if session is not None:
                await session.close()

    server = MCPServer(
        name="ringfence",
        instructions=(
            "Run shell commands in ringfence's sandbox: the workspace "
            f"{policy.workspace} is writable, the rest of the machine read-only, secrets "
            f"hidden, the network {policy.network}. Commands share one session (/tmp and the "
            "environment persist between them). When a command fails because the sandbox "
            "refused something, the result's denials say what and suggest the smallest change; "
            "send that with a justification to request_escalation."
        ),
        lifespan=lifespan,
    )

    async def session() -> AsyncSession:
        if "session" not in holder:
            s = AsyncSession(policy)
            await s.open()
            holder["session"] = s
        current = holder["session"]
        if current.session.closed:  # ended under us (its server was killed): start afresh
            await current.close()
            del holder["session"]
            return await session()
        return current

    @server.tool(name="run")
    async def run(command: str | list[str], cwd: str | None = None,
                  timeout: float | None = None, stdin: str | None = None) -> dict[str, Any]:
        """Run a command in the sandbox and return its exit code, output and any denials.

        command: an argv list (["pytest", "-q"]) or a shell string ("make test 2>&1 | tail").
        cwd: a directory inside the workspace (relative to it, or absolute); default the
        workspace. timeout: seconds, then the command and its children are killed (default:
        the policy's). stdin: text fed to the command (default: none).
        """
        s = await session()
        try:
            result = await s.run(command, cwd=cwd, timeout=timeout,
                                 stdin=stdin.encode() if stdin is not None else None)
        except CommandError as exc:
            return {"exit_code": exc.exit_code, "stdout": "", "stderr": str(exc),
                    "duration": 0.0, "limits_hit": [], "denials": []}
        except RingfenceError as exc:
            raise ToolError(str(exc)) from None
        from .agent import report

        return report(result)

    @server.tool(name="request_escalation")
    async def request_escalation(change: str, justification: str,
                                 value: str | int | float | None = None,
                                 ctx: Context | None = None,
                                 ) -> dict[str, Any] | InputRequiredResult:
        """Ask for more than the policy allows, saying why.

        change: writable_root (value: a directory), network (value: the host, which is then
        added to the allow list; without a value, the whole network),
        timeout / output / memory / max_processes / cpu_seconds / file_size (value: the new
        limit), allow_read (value: a deny-read path). Use the suggestion from a denial.
        justification: why the task needs it, for the person approving.
        """
        import asyncio

        from .escalation import submit

        request = {"change": change, "value": value, "justification": justification}
        s = await session()
        current = s.session.policy
        approver = _ElicitApprover.for_call(ctx, request)
        try:
            # The approval mode and rules decide. Where they say ask, and the client can be
            # asked (elicitation), the first call returns the question (InputRequiredResult)
            # and the client's retry carries the answer; otherwise it is refused, naming the
            # rule or option that would allow it.
            widened = await asyncio.to_thread(submit, request, current, approver=approver)
            before = current.network_rules.allow if current.network_rules else ()
            after = widened.network_rules.allow if widened.network_rules and \
                widened.network == "allowlist" else ()
            done = await s.widen(
                writable=[w for w in widened.writable if w not in current.writable],
                network=widened.network if widened.network != current.network else None,
                allow_hosts=[h for h in after if h not in before], force=True)
        except _NeedAnswer as need:
            question: InputRequiredResult = need.result
            return question
        except RingfenceError as exc:
            raise ToolError(str(exc)) from None
        return {"granted": request, "notice": done.notice}

    return server


class _NeedAnswer(Exception):  # a control-flow signal, not an error
    """Raised by the approver on the first round: the tool returns ``result`` (the question)."""

    def __init__(self, result: Any) -> None:
        super().__init__("the user has not answered yet")
        self.result = result


class _ElicitApprover:
    """The approval engine's approver for an MCP client that supports elicitation.

    Multi-round (the SDK's InputRequiredResult): the first call finds no answer and raises
    ``_NeedAnswer`` carrying the question (the command, why it asks, what more it would get,
    the justification) as a form with one choice: once / session / always / deny. The client
    shows it, and retries the same call with the answer; ``request_state`` is a digest of the
    request, so an answer only applies to the question it was given for. Declining or
    cancelling is deny. Who answers is the client's business; the audit log records the MCP
    client as the approver.
    """

    who = "the MCP client (elicitation)"
    KEY = "ringfence-approval"

    def __init__(self, ctx: Any, state: str) -> None:
        self.ctx = ctx
        self.state = state

    @classmethod
    def for_call(cls, ctx: Any, request: dict[str, Any]) -> _ElicitApprover | None:
        import hashlib
        import json

        if ctx is None:
            return None
        try:
            caps = ctx.client_capabilities
        except (AttributeError, LookupError, ValueError):
            return None
        if caps is None or getattr(caps, "elicitation", None) is None:
            return None
        blob = json.dumps(request, sort_keys=True, default=str).encode()
        return cls(ctx, hashlib.sha256(blob).hexdigest())

    def __call__(self, request: Any) -> str:
        import hashlib
        import json

        # the answer applies to the question as shown: the request's words resolved (a
        # directory's real path, which the command could change while the user reads)
        shown = json.dumps([self.state, list(request.command), list(request.grants),
                            request.justification]).encode()
        state = hashlib.sha256(shown).hexdigest()
        responses = self.ctx.input_responses or {}
        answer = responses.get(self.KEY)
        if answer is not None and self.ctx.request_state == state:
            if getattr(answer, "action", "") == "accept" and answer.content:
                return str(answer.content.get("answer", "deny"))
            return "deny"
        raise _NeedAnswer(self._question(request, state))

    def _question(self, request: Any, state: str) -> Any:
        from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

        from .approval.gate import command_text
        from .approval.prompt import visible

        # each line escaped: the justification and the value are the model's words, and a
        # newline in them would add a line of its choosing ("it would get: nothing new")
        lines = [f"ringfence: approve this escalation? {visible(command_text(request.command))}",
                 f"why it asks: {visible(request.reason)} [{visible(request.rule)}]"]
        lines += [f"it would get: {visible(grant)}" for grant in request.grants]
        if request.justification:
            lines.append(f"justification: {visible(request.justification)}")
        schema = {"type": "object", "required": ["answer"], "properties": {"answer": {
            "type": "string", "enum": ["once", "session", "always", "deny"],
            "description": "once or session: grant this request now (session answers are "
                           "not kept between requests); always: add an allow rule for "
                           "exactly this request to your ringfence config; deny: refuse"}}}
        form = ElicitRequestFormParams(message="\n".join(lines), requested_schema=schema)
        return InputRequiredResult(input_requests={self.KEY: ElicitRequest(params=form)},
                                   request_state=state)


def main(argv: list[str]) -> int:
    """``ringfence mcp [OPTIONS]``: serve until the client closes stdin."""
    from .cli import _VALUE_OPTS, options_from, parse
    from .policy.load import resolve

    args = parse(argv, _VALUE_OPTS, {"--ssh-agent", "--no-unix-sockets"})
    if args.command:
        raise PolicyError(f"ringfence mcp takes no command (got {args.command[0]!r}); the "
                          "client sends commands through the run tool")
    policy = resolve(options_from(args))  # the workspace defaults to the current directory
    server = build_server(policy)
    # stdout carries the protocol: nothing else may write there
    print(f"ringfence mcp: serving {policy.workspace} (profile {policy.profile}, network "
          f"{policy.network})", file=sys.stderr)
    server.run("stdio")
    return 0
