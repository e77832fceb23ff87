"""examples/langchain_shell.py: the tool called the way LangChain calls it, no model, no
network."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import ringfence
from tests.conftest import ROOT, World

pytest.importorskip("langchain_core")

EXAMPLE = ROOT / "examples" / "langchain_shell.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_shell", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_call_as_the_framework_makes_it(in_world: World) -> None:
    from langchain_core.messages import ToolMessage
    from langchain_core.utils.function_calling import convert_to_openai_tool

    world = in_world
    example = load_example()
    with ringfence.Session(ringfence.Policy(workspace=str(world.workspace))) as session:
        shell = example.make_shell_tool(session)
        # what the model is shown (the schema a chat model binds)
        schema = convert_to_openai_tool(shell)["function"]
        assert schema["name"] == "shell"
        assert set(schema["parameters"]["properties"]) == {"command", "cwd", "timeout"}
        assert schema["parameters"]["required"] == ["command"]

        # a model's tool call, invoked as an agent loop does: a ToolMessage comes back
        call = {"name": "shell", "args": {"command": "echo hi > made.txt; cat made.txt"},
                "id": "call_1", "type": "tool_call"}
        message = shell.invoke(call)
        assert isinstance(message, ToolMessage) and message.tool_call_id == "call_1"
        answer = json.loads(message.content)
        assert (answer["exit_code"], answer["stdout"]) == (0, "hi\n")
        assert (world.workspace / "made.txt").read_text() == "hi\n"

        # a refusal comes back as something the model can act on
        target = world.outside / "target.txt"
        answer = json.loads(shell.invoke({"command": f"echo x >> {target}"}))
        assert answer["exit_code"] != 0 and target.read_text() == "ORIGINAL\n"
        assert answer["denials"][0]["suggestion"]["value"] == str(world.outside)

        # bad input is an answer, not an exception in the agent loop
        answer = json.loads(shell.invoke({"command": "ls", "cwd": "/etc"}))
        assert "outside the workspace" in answer["error"]
        answer = json.loads(shell.invoke({"command": "no-such-command-xyz"}))
        assert answer["exit_code"] == 127

        # the async path agents use (ainvoke)
        import asyncio

        answer = json.loads(asyncio.run(shell.ainvoke({"command": "echo async"})))
        assert answer["stdout"] == "async\n"


def test_example_runs_as_a_script(world: World) -> None:
    env = {**world.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(world.workspace)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["exit_code"] != 0  # touching ~/.profile was refused ...
    assert answer["denials"][0]["kind"] == "write"  # ... and said so
    assert not Path(world.home, ".profile").exists()
