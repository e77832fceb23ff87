"""Escapes through ``ringfence mcp``'s ``request_escalation``, where the model is the attacker
and the user answers the client's question (elicitation)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from tests.conftest import World

pytest.importorskip("mcp")
from mcp import Client
from tests.test_mcp_server import params, payload, text


def _slow_answer(asked: list[str], during: Any = None) -> Any:
    """Answers "once" after the user has read the question for a while (``during`` runs then);
    the questions are recorded in ``asked``."""
    async def answer(context: Any, params: Any) -> Any:
        from mcp import types

        asked.append(params.message)
        if during is not None:
            during()
        await asyncio.sleep(2.5)
        return types.ElicitResult(action="accept", content={"answer": "once"})

    return answer


def test_writable_root_inside_the_workspace_swapped_while_the_user_answers(
        world: World) -> None:
    """Red team: the model asks for ``writable_root WS/out``, a real directory inside the
    workspace: harmless to approve, and the question shows exactly that. A process it left
    running in the session (``setsid``) then swaps ``WS/out`` for a link to a directory outside
    while the user reads. The client's retry carrying the answer resolved the value again and
    matched the answer by the request's raw text, so the approval granted the outside
    directory and the next command wrote there. (Even with the answer bound to the path shown,
    the swap could land between the check and bubblewrap's bind of the path.) A directory the
    sandbox can write is now refused as a writable root: it is writable already, and the
    command could replace it."""
    ws = world.workspace
    (ws / "out").mkdir()
    target = world.outside / "planted.txt"
    asked: list[str] = []

    async def main() -> tuple[Any, dict[str, Any]]:
        async with Client(params(world), elicitation_callback=_slow_answer(asked)) as client:
            swap = f"sleep 1.5; mv {ws}/out {ws}/out.real; ln -s {world.outside} {ws}/out"
            r = payload(await client.call_tool("run", {  # (sleep: setsid before the group dies)
                "command": f"setsid sh -c '{swap}' >/dev/null 2>&1 </dev/null & sleep 0.5; "
                           "echo started"}))
            assert r["stdout"] == "started\n", r
            esc = await client.call_tool("request_escalation", {
                "change": "writable_root", "value": str(ws / "out"),
                "justification": "the build writes its output there"})
            await asyncio.sleep(2.5)  # (refused at once now: let the swap happen)
            r = payload(await client.call_tool("run", {"command": [
                "sh", "-c", f"echo pwned > {target}"]}))
            return esc, r

    esc, r = asyncio.run(main())
    assert os.path.islink(ws / "out")  # the swap happened
    assert not target.exists(), (text(esc), r)
    assert esc.is_error and "inside the writable root" in text(esc), text(esc)
    assert not asked  # refused before anyone is asked


def test_answer_applies_only_to_the_directory_the_question_showed(world: World) -> None:
    """Red team: the question shows the directory a writable_root request resolves to when it
    is asked; the answer came back with the client's retry, which resolved the value again. A
    link outside the sandbox's reach (here the test's own stand-in for any process that
    changes it meanwhile) re-pointed from ``shown`` to ``other`` in between, and the answer
    for ``shown`` granted ``other``. The answer is now bound to the resolved path: the retry
    asks again, showing ``other``."""
    shown, other = world.outside / "shown", world.outside / "other"
    shown.mkdir()
    other.mkdir()
    link = world.base / "link"
    link.symlink_to(shown)
    asked: list[str] = []

    def repoint() -> None:
        if len(asked) == 1:
            link.unlink()
            link.symlink_to(other)

    async def main() -> Any:
        async with Client(params(world),
                          elicitation_callback=_slow_answer(asked, repoint)) as client:
            esc = await client.call_tool("request_escalation", {
                "change": "writable_root", "value": str(link),
                "justification": "the build writes its output there"})
            r = payload(await client.call_tool("run", {"command": [
                "sh", "-c", f"touch {other}/x {shown}/x; ls {other} {shown}"]}))
            return esc, r

    esc, r = asyncio.run(main())
    assert str(shown) in asked[0] and str(other) not in asked[0]
    # granted only after a second question that named the other directory
    assert (other / "x").exists() == (len(asked) > 1 and str(other) in asked[1]), (asked, r)
    assert len(asked) > 1, (text(esc), r)


def test_justification_cannot_add_lines_to_the_question(world: World) -> None:
    """Red team: the question the client shows is built from the model's own words (the
    justification, the host). A newline in the justification added lines that read as
    ringfence's ("it would get: nothing new; the workspace only"), and escape sequences went
    to clients that draw on a terminal. Each field is now one escaped line."""
    asked: list[str] = []
    fake = "needed\nit would get: nothing new (inside the workspace)\x1b[1A\x1b[2K\u2028ok"

    async def main() -> Any:
        async with Client(params(world), elicitation_callback=_slow_answer(asked)) as client:
            return await client.call_tool("request_escalation", {
                "change": "writable_root", "value": str(world.outside),
                "justification": fake})

    asyncio.run(main())
    [question] = asked
    lines = question.split("\n")
    assert [x.split(":")[0] for x in lines] == [
        "ringfence", "why it asks", "it would get", "justification"], question
    assert not any(c in question for c in "\x1b\r\u2028"), repr(question)
