"""``ringfence mcp``: the real server in a subprocess, driven by the MCP SDK's own client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import World
from tests.escapes.test_lifetime import find, gone, marker

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402


def params(world: World, *options: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "ringfence", "mcp", *options],
        env={**world.env, "PYTHONPATH": os.pathsep.join(sys.path)}, cwd=str(world.workspace))


def payload(result: Any) -> dict[str, Any]:
    """The tool's dict, from the structured content (or the JSON text block)."""
    if result.structured_content is not None:
        data = result.structured_content
        return dict(data.get("result", data)) if isinstance(data, dict) else data
    return dict(json.loads(result.content[0].text))


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def test_tools_over_stdio(world: World) -> None:
    async def main() -> None:
        async with Client(params(world)) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"run", "request_escalation"}
            assert "command" in tools["run"].input_schema["properties"]

            r = payload(await client.call_tool("run", {"command": ["echo", "hello"]}))
            assert (r["exit_code"], r["stdout"]) == (0, "hello\n")

            # one session: /tmp and the environment persist between calls
            await client.call_tool("run", {"command": "echo kept > /tmp/state"})
            r = payload(await client.call_tool("run", {"command": "cat /tmp/state; pwd",
                                                       "cwd": "sub"}))
            assert r["stdout"] == f"kept\n{world.workspace}/sub\n"

            r = payload(await client.call_tool("run", {"command": "cat", "stdin": "fed"}))
            assert r["stdout"] == "fed"

            # a denial the model can act on
            target = world.outside / "x.txt"
            r = payload(await client.call_tool("run", {"command": ["touch", str(target)]}))
            assert r["exit_code"] != 0 and not target.exists()
            [d] = r["denials"]
            assert d["kind"] == "write" and d["certain"] is False
            assert d["suggestion"]["change"] == "writable_root"
            assert d["suggestion"]["value"] == str(world.outside)

            r = payload(await client.call_tool("run", {"command": ["sleep", "5"],
                                                       "timeout": 0.2}))
            assert r["exit_code"] == 137 and r["limits_hit"] == ["timeout"]

            r = payload(await client.call_tool("run", {"command": ["no-such-cmd-xyz"]}))
            assert r["exit_code"] == 127

            # bad input: clear errors, and the server goes on
            bad = await client.call_tool("run", {"command": ["ls"], "cwd": "/etc"})
            assert bad.is_error and "outside the workspace" in text(bad)
            bad = await client.call_tool("run", {"command": ["echo", "a\0b"]})
            assert bad.is_error and "NUL" in text(bad)

            # escalation goes through the approval engine: in the default on-request mode an
            # escalation asks, and the server has no one to ask, so it is refused with the
            # option or rule that would allow it
            esc = await client.call_tool("request_escalation", {
                "change": "writable_root", "value": str(world.outside),
                "justification": "the task writes its report there"})
            assert esc.is_error and "needs approval" in text(esc), text(esc)
            assert not target.exists()
            r = payload(await client.call_tool("run", {"command": ["touch", str(target)]}))
            assert r["exit_code"] != 0 and not target.exists()
            esc = await client.call_tool("request_escalation", {
                "change": "root-shell", "justification": "x"})
            assert esc.is_error and "unknown" in text(esc)

            r = payload(await client.call_tool("run", {"command": ["true"]}))
            assert r["exit_code"] == 0

            # a command the rules ask about is refused, as for `ringfence run` without a
            # terminal, and is not run (the engine's decision, recorded in the audit log)
            asks = await client.call_tool("run", {
                "command": "dd if=/dev/zero of=/dev/shm/x count=1; touch ran"})
            assert asks.is_error and "approval" in text(asks), text(asks)
            assert not (world.workspace / "ran").exists()

    (world.workspace / "sub").mkdir()
    asyncio.run(main())


def test_client_disconnecting_mid_command_leaves_nothing(world: World) -> None:
    """The client goes away while a command runs (its process ends and stdin closes): the
    server ends, and so do the session and the command."""
    mark = marker()

    async def main() -> None:
        async with Client(params(world)) as client:
            task = asyncio.create_task(client.call_tool("run", {"command": ["sleep", mark]}))
            deadline = time.monotonic() + 20
            while not find(mark) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert find(mark), "the command did not start"
            task.cancel()
            try:
                await task
            except BaseException:
                pass

    asyncio.run(main())
    assert gone(mark, within=10)


def test_mcp_refuses_bad_options(world: World) -> None:
    r = world.run("mcp", "--network", "sideways")
    assert r.returncode == 125 and "--network" in r.stderr and "Traceback" not in r.stderr
    r = world.run("mcp", "--", "ls")
    assert r.returncode == 125 and "takes no command" in r.stderr


def test_mcp_ends_when_stdin_closes(world: World) -> None:
    proc = subprocess.run([sys.executable, "-m", "ringfence", "mcp"], input=b"",
                          capture_output=True, timeout=60, cwd=world.workspace,
                          env={**world.env, "PYTHONPATH": os.pathsep.join(sys.path)},
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""  # nothing but the protocol on stdout


def _answering(answer: str | None) -> Any:
    """An elicitation callback that answers ``answer`` (None: decline), recording questions."""
    from mcp import types

    asked: list[str] = []

    async def callback(context: Any, params: Any) -> Any:
        asked.append(params.message)
        if answer is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"answer": answer})

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


@pytest.mark.parametrize("answer", ["once", None, "deny"])
def test_escalation_asks_the_user_through_elicitation(world: World, answer: str | None) -> None:
    """A client that supports elicitation is asked: the question names the command, what more
    it would get and the justification. Accepted, the session restarts with the extra root and
    the write that was refused succeeds; declined or denied, it stays refused."""
    target = world.outside / "report.txt"
    callback = _answering(answer)

    async def main() -> None:
        async with Client(params(world), elicitation_callback=callback) as client:
            r = payload(await client.call_tool("run", {"command": ["touch", str(target)]}))
            assert r["exit_code"] != 0 and not target.exists()
            esc = await client.call_tool("request_escalation", {
                "change": "writable_root", "value": str(world.outside),
                "justification": "the task writes its report there"})
            r = payload(await client.call_tool("run", {"command": ["touch", str(target)]}))
            if answer == "once":
                assert not esc.is_error, text(esc)
                assert r["exit_code"] == 0 and target.exists()
            else:
                assert esc.is_error and "denied" in text(esc), text(esc)
                assert r["exit_code"] != 0 and not target.exists()

    asyncio.run(main())
    [question] = callback.asked
    assert str(world.outside) in question and "the task writes its report there" in question


def test_run_timeout_cannot_lift_the_users_limit(world: World) -> None:
    """Red team: `run`'s `timeout` (chosen by the model) replaced the user's `--timeout`, and
    0 removed it: `ringfence mcp --timeout 1` then ran `sleep 4` to the end. The user's timeout
    is now a ceiling (0 or none means it), and a timeout past a year (1e18, which killed the
    session's I/O thread and with it /tmp and every background process) is a clear error."""
    async def main() -> None:
        async with Client(params(world, "--timeout", "1")) as client:
            await client.call_tool("run", {"command": "echo kept > /tmp/state"})
            for timeout in (0, 100, None):
                args: dict[str, Any] = {"command": "sleep 4; echo done"}
                if timeout is not None:
                    args["timeout"] = timeout
                start = time.monotonic()
                r = payload(await client.call_tool("run", args))
                assert r["limits_hit"] == ["timeout"] and "done" not in r["stdout"], (timeout, r)
                assert time.monotonic() - start < 3.5
            r = payload(await client.call_tool("run", {"command": ["sleep", "0.1"],
                                                       "timeout": 0.5}))
            assert r["exit_code"] == 0  # a shorter one is the caller's to choose
            huge = await client.call_tool("run", {"command": ["true"], "timeout": 1e18})
            assert huge.is_error and "more than a year" in text(huge), text(huge)
            r = payload(await client.call_tool("run", {"command": "cat /tmp/state"}))
            assert r["stdout"] == "kept\n"  # the same session goes on

    asyncio.run(main())


def test_network_escalation_for_a_host_adds_only_that_host(world: World) -> None:
    """Red team: approving `request_escalation {"change": "network", "value": "pkgs.test"}`
    restarted the session with the network on: every host and port, the host's loopback
    services included, the allow list gone. Now the session restarts with pkgs.test added to
    its allow list, and the question says "only"; a loopback service the list keeps out stays
    out."""
    from tests.network.servers import TCPServer

    server = TCPServer()
    hosts = world.base / "hosts"
    hosts.write_text("web.test 127.0.0.1\npkgs.test 127.0.0.1\n")
    world.env["RINGFENCE_PROXY_HOSTS"] = str(hosts)
    pol = world.base / "net.toml"
    pol.write_text(f'[network]\nmode = "allowlist"\nallow = ["web.test"]\n'
                   f"ports = [{server.port}]\nallow_local = true\n")
    callback = _answering("once")
    fetch = ("import sys, urllib.request\ntry:\n    urllib.request.urlopen(sys.argv[1], "
             "timeout=20); print('REACHED')\nexcept Exception as e:\n    print('FAILED', e)\n")
    py = os.path.realpath(sys.executable)

    async def get(client: Any, url: str) -> str:
        r = payload(await client.call_tool("run", {"command": [py, "-c", fetch, url]}))
        return str(r["stdout"])

    async def main() -> None:
        async with Client(params(world, "--policy", str(pol)),
                          elicitation_callback=callback) as client:
            assert "FAILED" in await get(client, f"http://pkgs.test:{server.port}/")
            esc = await client.call_tool("request_escalation", {
                "change": "network", "value": "pkgs.test", "justification": "pip needs it"})
            assert not esc.is_error, text(esc)
            assert "REACHED" in await get(client, f"http://pkgs.test:{server.port}/")
            assert "REACHED" in await get(client, f"http://web.test:{server.port}/")
            seen = len(server.seen)
            assert "FAILED" in await get(client, f"http://127.0.0.1:{server.port}/")
            assert len(server.seen) == seen

    try:
        asyncio.run(main())
    finally:
        server.close()
    [question] = callback.asked
    assert "pkgs.test only" in question and "every host" not in question
