"""Give a LangChain agent a shell that runs in ringfence's sandbox.

LangChain (``langchain-core``) is one of the most widely used Python agent frameworks; every
model integration it has (OpenAI, Anthropic, Gemini, local models) calls tools through the same
``BaseTool`` interface, so this one tool works with all of them. The tool runs each command in
one ringfence session: the project is writable, the rest of the machine read-only, secrets
hidden, no network; ``/tmp`` and the environment persist between the agent's commands. When
the sandbox refuses something, the tool's answer says what (``denials``) and the smallest change
that would allow it, so the model can explain or ask for it.

    pip install ringfence langchain-core
    python examples/langchain_shell.py [WORKSPACE]     # runs one tool call, no model needed

With a model (not run here)::

    model = init_chat_model("...").bind_tools([shell])
    # for each tool call the model makes: messages.append(shell.invoke(tool_call))
"""

from __future__ import annotations

import json
import sys

from langchain_core.tools import BaseTool, StructuredTool

import ringfence
from ringfence.agent import report


def make_shell_tool(session: ringfence.Session) -> BaseTool:
    """A LangChain tool named ``shell`` backed by ``session``."""

    def shell(command: str, cwd: str | None = None, timeout: float = 120) -> str:
        """Run a shell command in the project's sandbox and return JSON with exit_code,
        stdout, stderr, limits_hit and denials (what the sandbox refused, with a suggested
        change). cwd is a directory inside the project; timeout is in seconds."""
        try:
            result = session.run(command, cwd=cwd, timeout=timeout)
        except ringfence.CommandError as exc:
            return json.dumps({"exit_code": exc.exit_code, "stderr": str(exc)})
        except ringfence.RingfenceError as exc:  # bad input (cwd outside the project ...)
            return json.dumps({"error": str(exc)})
        return json.dumps(report(result))

    return StructuredTool.from_function(shell, name="shell")


def main() -> int:
    workspace = sys.argv[1] if len(sys.argv) > 1 else "."
    with ringfence.Session(workspace=workspace) as session:
        shell = make_shell_tool(session)
        # what a LangChain agent does with a model's tool call: invoke the tool with it
        call = {"name": "shell", "args": {"command": "ls -a | head; touch ~/.profile"},
                "id": "call_1", "type": "tool_call"}
        message = shell.invoke(call)
        print(message.content)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
