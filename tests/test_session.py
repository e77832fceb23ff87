"""Sessions: one sandbox, many commands (ringfence.session).

Behaviour (capture, stream, stdin, pty, concurrency, per-command limits, async) and the
guarantees a session must keep like a one-shot run: the same confinement, nothing of the host's
reaching the commands, and everything dying with the session or with its owner.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

import ringfence
from ringfence.errors import CommandError, PolicyError
from ringfence.session import AsyncSession, Session, SessionError
from tests.conftest import World
from tests.escapes.test_lifetime import find, gone, marker

PY = os.path.realpath(sys.executable)


def policy_of(world: World, **kw: object) -> ringfence.Policy:
    return ringfence.Policy(workspace=str(world.workspace), **kw)


def daemon(mark: str) -> str:
    """A shell command that leaves ``sleep MARK`` running in a session of its own."""
    return (f"setsid sh -c 'echo up > /tmp/{mark}; exec sleep {mark}' >/dev/null 2>&1 "
            f"</dev/null & while [ ! -s /tmp/{mark} ]; do sleep 0.01; done; sleep 0.05")


@pytest.fixture
def session(in_world: World) -> Iterator[Session]:
    with Session(policy_of(in_world)) as s:
        yield s


# -- running commands ------------------------------------------------------------------------

def test_run_captures_output_and_status(session: Session) -> None:
    r = session.run(["/bin/echo", "hello"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"hello\n", b"")
    r = session.run("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert r.mode == "bwrap" and r.command == ("/bin/sh", "-c", "echo out; echo err >&2; exit 3")


def test_commands_share_tmp_and_environment(session: Session, in_world: World) -> None:
    """/tmp is the session's own (kept between commands, never the host's), and so is the
    environment a one-shot run would get."""
    name = f"ringfence-session-{os.getpid()}"
    assert session.run(f"echo kept > /tmp/{name}").exit_code == 0
    assert session.run(["cat", f"/tmp/{name}"]).stdout == b"kept\n"
    assert not os.path.exists(f"/tmp/{name}")  # not the host's /tmp
    r = session.run("echo $RINGFENCE_SANDBOX $TMPDIR $HOME")
    assert r.stdout == f"1 /tmp {in_world.home}\n".encode()


def test_cwd_inside_the_workspace(session: Session, in_world: World) -> None:
    (in_world.workspace / "sub").mkdir()
    assert session.run(["pwd"], cwd="sub").stdout == f"{in_world.workspace}/sub\n".encode()
    assert session.run(["pwd"]).stdout == f"{in_world.workspace}\n".encode()


def test_missing_and_unexecutable_commands(session: Session, in_world: World) -> None:
    with pytest.raises(CommandError) as err:
        session.run(["no-such-command-xyz"])
    assert err.value.exit_code == 127
    script = in_world.workspace / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(CommandError) as err:
        session.run(["./script.sh"])
    assert err.value.exit_code == 126
    assert session.run(["true"]).exit_code == 0  # the session goes on


def test_stdin_bytes_and_interactive(session: Session) -> None:
    assert session.run(["cat"], stdin=b"fed\n").stdout == b"fed\n"
    assert session.run(["cat"]).stdout == b""  # /dev/null by default
    cmd = session.start(["cat"], stdin=True)
    cmd.write(b"one ")
    cmd.write(b"two")
    cmd.close_stdin()
    assert cmd.wait(10).stdout == b"one two"


def test_large_stdin_and_output_flow_both_ways(session: Session) -> None:
    data = os.urandom(3 << 20)
    r = session.run(["cat"], stdin=data)
    assert r.exit_code == 0 and r.stdout == data


def test_stream_yields_output_as_it_comes(session: Session) -> None:
    start = time.monotonic()
    seen: list[tuple[str, bytes, float]] = []
    for stream, chunk in session.stream("echo first; sleep 1; echo second >&2"):
        seen.append((stream, chunk, time.monotonic() - start))
    assert [(s, c) for s, c, _ in seen] == [("stdout", b"first\n"), ("stderr", b"second\n")]
    assert seen[0][2] < 0.8  # before the command ended


def test_pty(session: Session) -> None:
    r = session.run("test -t 0 && test -t 1 && echo on-a-terminal", pty=True)
    assert r.exit_code == 0 and b"on-a-terminal" in (r.stdout or b"")
    r = session.run("test -t 1 && echo on-a-terminal || echo piped")
    assert r.stdout == b"piped\n"
    cmd = session.start(["cat"], pty=True, stdin=True)
    cmd.write(b"typed\n")
    cmd.close_stdin()
    assert b"typed" in (cmd.wait(10).stdout or b"")


def test_concurrent_commands_each_with_its_own_timeout(session: Session) -> None:
    start = time.monotonic()
    slow = [session.start(["sleep", "1"]) for _ in range(4)]
    stuck = session.start(["sleep", "100"], timeout=0.3)
    quick = session.run(["echo", "meanwhile"])
    assert quick.stdout == b"meanwhile\n"
    r = stuck.wait(10)
    assert r.exit_code == 137 and "timeout" in r.limits_hit
    assert [c.wait(10).exit_code for c in slow] == [0, 0, 0, 0]
    assert time.monotonic() - start < 3.5  # concurrently, not one after another
    assert any(d.target == "timeout" and d.certain for d in r.denials)


def test_output_cap_stops_the_command(session: Session) -> None:
    """A command that prints without end (``yes``) is stopped at its output cap instead of
    spinning until the timeout; the result says ``output``."""
    r = session.run(["yes"], output_limit=10_000, timeout=30)
    assert r.stdout == b"y\n" * 5000
    assert "output" in r.limits_hit and r.exit_code == 137
    assert r.duration < 10


def test_kill(session: Session) -> None:
    cmd = session.start(["sleep", "100"])
    time.sleep(0.1)
    cmd.kill()
    assert cmd.wait(10).exit_code == 137


def test_iterating_needs_stream(session: Session) -> None:
    cmd = session.start(["true"])
    with pytest.raises(PolicyError):
        list(cmd)
    assert cmd.wait(10).exit_code == 0


# -- the same confinement as a one-shot run ------------------------------------------------------

def test_session_commands_are_confined(session: Session, in_world: World) -> None:
    """A command in a session tries to append to a file outside the workspace and to read the
    fake ssh key; the control (a plain subprocess, no sandbox) shows both work unsandboxed."""
    target = in_world.outside / "target.txt"
    key = in_world.home / ".ssh" / "id_ed25519"
    r = session.run(f"echo PWNED >> '{target}'; cat '{key}'")
    assert target.read_text() == "ORIGINAL\n"
    assert b"FAKE-PRIVATE-KEY" not in (r.stdout or b"")
    control = subprocess.run(["/bin/sh", "-c", f"echo PWNED >> '{target}'; cat '{key}'"],
                             capture_output=True, check=False)
    assert b"FAKE-PRIVATE-KEY" in control.stdout
    assert target.read_text() == "ORIGINAL\nPWNED\n"


def test_session_commands_have_no_network_and_the_seccomp_filter(session: Session) -> None:
    r = session.run([PY, "-c", "import socket; socket.socket(socket.AF_INET)"])
    assert r.exit_code != 0 and b"Address family not supported" in (r.stderr or b"")
    r = session.run(["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"])
    assert b"NoNewPrivs:\t1" in (r.stdout or b"") and b"Seccomp:\t2" in (r.stdout or b"")


def test_commands_get_only_their_own_descriptors(session: Session) -> None:
    """The server's control socket (and anything bwrap was handed) never reaches a command:
    with it, a command could forge requests or read other commands' results."""
    r = session.run(["ls", "/proc/self/fd"])
    fds = sorted(int(x) for x in (r.stdout or b"").split())
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4  # plus ls's own directory fd


def test_commands_see_no_host_process(session: Session) -> None:
    r = session.run(["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
    assert int(r.stdout or b"0") < 10  # bwrap's init, the server, this command


def test_limits_apply_to_each_command(in_world: World) -> None:
    """The policy's rlimits bind every command of the session (file size here)."""
    policy = policy_of(in_world, limits=ringfence.Limits(file_size=1 << 20))
    with Session(policy) as s:
        r = s.run("head -c 2097152 /dev/zero > big.bin")
        assert r.exit_code == 128 + 25 and "file_size" in r.limits_hit
        assert (in_world.workspace / "big.bin").stat().st_size <= 1 << 20
        assert s.run(["true"]).exit_code == 0


# -- ending ------------------------------------------------------------------------------------

def test_close_kills_everything_in_the_session(in_world: World) -> None:
    """A command starts a daemon in a session of its own (so its process group is not
    killed when it ends); closing the session kills it."""
    mark = marker()
    s = Session(policy_of(in_world))
    r = s.run(daemon(mark))
    assert r.exit_code == 0
    assert find(mark), "the daemon did not start"
    running = s.start(["sleep", marker()])
    s.close()
    assert gone(mark)
    with pytest.raises(SessionError):
        running.wait(10)
    with pytest.raises(SessionError):
        s.run(["true"])
    s.close()  # idempotent


def test_a_commands_group_dies_with_it(session: Session) -> None:
    mark = marker()
    r = session.run(f"sleep {mark} & echo started")
    assert r.stdout == b"started\n"
    assert gone(mark)


def test_owner_killed_takes_the_session_down(in_world: World) -> None:
    """The process owning the session is SIGKILLed (no cleanup runs): the kernel kills
    bubblewrap (die-with-parent) and with it the session's PID namespace."""
    mark = marker()
    code = textwrap.dedent(f"""
        import sys, time, ringfence
        from ringfence.session import Session
        s = Session(ringfence.Policy(workspace={str(in_world.workspace)!r}))
        s.run({daemon(mark)!r})
        print("ready", flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             env=dict(os.environ))
    assert owner.stdout is not None
    assert owner.stdout.readline() == b"ready\n"
    assert find(mark)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert gone(mark, within=5)


def test_server_killed_from_inside(session: Session) -> None:
    """A command kills the session's server (same user inside the sandbox): the session ends
    and says so; nothing hangs."""
    cmd = session.start(["sleep", "100"])
    with pytest.raises(SessionError, match="ended unexpectedly"):
        session.run("kill -9 $(pgrep -f _session_server.py)")  # it goes down with it
    with pytest.raises(SessionError, match="ended unexpectedly"):
        cmd.wait(10)
    with pytest.raises(SessionError):
        session.run(["true"])


def test_server_stopped_from_inside_cannot_outlast_a_timeout(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a command sends SIGSTOP to the session's server (its parent, same user inside
    the sandbox) and then runs on. Timeouts are carried out by the server, so the host's kill
    request went unanswered and ``run`` (an MCP tool call, an agent's step) waited forever,
    whatever its timeout. Now, when a killed command's end is not reported within a grace
    period, the host kills the whole sandbox and the call fails with SessionError."""
    import threading

    from ringfence.backends import _linux_session

    monkeypatch.setattr(_linux_session, "_KILL_GRACE", 1.0)
    outcome: list[object] = []

    def attack() -> None:
        try:
            outcome.append(session.run("kill -STOP $PPID; exec sleep 60", timeout=1))
        except SessionError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    thread.join(20)
    hung = thread.is_alive()
    session.close()  # without the fix, this is what ends the wait
    thread.join(10)
    assert not hung, "run() outlasted its timeout by far more than the grace period"
    assert isinstance(outcome[0], SessionError) and "did not end" in str(outcome[0])


# -- widening ----------------------------------------------------------------------------------

def test_widen_restarts_and_says_so(in_world: World) -> None:
    extra = in_world.base / "extra"
    extra.mkdir()
    with Session(policy_of(in_world)) as s:
        s.run("echo before > /tmp/state")
        r = s.run(f"echo x > '{extra}/f'")
        assert r.exit_code != 0
        [denial] = [d for d in r.denials if d.kind == "write"]
        assert denial.suggestion is not None
        assert denial.suggestion.to_request()["value"] == str(extra)
        busy = s.start(["sleep", "100"])
        with pytest.raises(PolicyError, match="still running"):
            s.widen(writable=[str(extra)])
        busy.kill()
        busy.wait(10)
        w = s.widen(writable=[denial.suggestion.value])
        assert w.restarted and "restarted" in w.notice and "/tmp" in w.notice
        assert s.restarts == 1 and str(extra) in s.policy.writable
        assert s.run(f"echo x > '{extra}/f'").exit_code == 0
        assert (extra / "f").read_text() == "x\n"
        assert s.run("cat /tmp/state").exit_code != 0  # the old /tmp is gone, as said
        assert not s.widen(writable=[str(extra)]).restarted  # nothing new: no restart


def test_widen_network(in_world: World) -> None:
    with Session(policy_of(in_world)) as s:
        code = "import socket; socket.socket(socket.AF_INET).close()"
        assert s.run([PY, "-c", code]).exit_code != 0
        w = s.widen(network="on")
        assert w.restarted and s.policy.network == "on"
        assert s.run([PY, "-c", code]).exit_code == 0


def test_full_access_has_no_session(in_world: World) -> None:
    with pytest.raises(PolicyError, match="full-access"):
        Session(policy_of(in_world, profile="full-access"))


# -- asyncio ----------------------------------------------------------------------------------

def test_async_session(in_world: World) -> None:
    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with AsyncSession(policy_of(in_world)) as s:
            t = asyncio.create_task(ticker())
            results = await asyncio.gather(*(s.run(["sleep", "0.5"]) for _ in range(3)),
                                           s.run(["echo", "hi"]))
            t.cancel()
            assert [r.exit_code for r in results] == [0, 0, 0, 0]
            assert results[-1].stdout == b"hi\n"
            assert ticks > 20  # the loop kept running while the commands did
            chunks = [c async for c in s.stream("echo a; echo b >&2")]
            assert sorted(chunks) == [("stderr", b"b\n"), ("stdout", b"a\n")]
            cmd = s.start(["cat"], stdin=True)
            cmd.write(b"async stdin")
            cmd.close_stdin()
            assert (await cmd.wait()).stdout == b"async stdin"
            r = await s.run(["sleep", "10"], timeout=0.2)
            assert "timeout" in r.limits_hit

    asyncio.run(main())


def test_async_cancel_kills_the_command(in_world: World) -> None:
    """The caller goes away mid-command (its task is cancelled, as when an MCP client
    disconnects): the command is killed, not left running in the session."""
    mark = marker()

    async def main() -> None:
        async with AsyncSession(policy_of(in_world)) as s:
            task = asyncio.create_task(s.run(["sleep", mark]))
            deadline = time.monotonic() + 5
            while not find(mark) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert gone(mark)
            assert (await s.run(["true"])).exit_code == 0

    asyncio.run(main())


# -- approvals and the audit log, as for a one-shot run --------------------------------------

def test_session_commands_are_decided_and_recorded(session: Session, in_world: World) -> None:
    """A session (and the MCP server, which runs its commands through one) decides every
    command with the approval engine and records the decision and the run in the audit log,
    as a one-shot run does. Without that, an agent on a session ran what the rules ask about
    (``dd`` to a device, ``git push --force``) with no question and no record."""
    from ringfence.approval.gate import ApprovalError

    ran = in_world.workspace / "ran"
    asks = "dd if=/dev/zero of=/dev/shm/x count=1 2>/dev/null; touch ran"
    with pytest.raises(ApprovalError, match="approval"):
        session.run(asks)
    assert not ran.exists()
    assert session.run(["echo", "recorded-run"]).exit_code == 0
    log = in_world.home / ".local" / "state" / "ringfence" / "audit" / "audit.jsonl"
    records = [line for line in log.read_text().splitlines() if "recorded-run" in line]
    assert len(records) == 2, records  # the decision, then the run
    assert any("dd if=/dev/zero" in line for line in log.read_text().splitlines())
    # the control: where the user's rules allow it, the same command runs
    from ringfence.approval.model import Rule

    allow = Rule(prefix=("dd",), decision="allow", source="test")
    with Session(policy_of(in_world, rules=(allow,))) as s:
        assert s.run(asks).exit_code == 0
    assert ran.exists()


def test_async_session_commands_are_decided_too(in_world: World) -> None:
    from ringfence.approval.gate import ApprovalError

    async def main() -> None:
        async with AsyncSession(policy_of(in_world)) as s:
            with pytest.raises(ApprovalError):
                await s.run("dd if=/dev/zero of=/dev/shm/x count=1")
            assert (await s.run(["true"])).exit_code == 0

    asyncio.run(main())


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 1e309, -1.0, True, 1e18,
                                     366 * 86400.0 + 1])
def test_timeout_that_is_not_a_number_of_seconds(session: Session, timeout: float) -> None:
    """A NaN or infinite timeout (``1e309`` from JSON) made the session's I/O thread fail and
    the session restart, losing /tmp and every command in it; it is refused up front. So is a
    finite one past a year (``1e18``: "timeout is too large" in the I/O thread, the same
    loss)."""
    with pytest.raises(PolicyError, match="timeout"):
        session.run(["true"], timeout=timeout)
    assert session.run(["true"]).exit_code == 0 and session.restarts == 0


def test_policy_timeout_is_a_ceiling(in_world: World) -> None:
    """A command's timeout was the caller's alone (0: none), so a policy's `timeout` -- the
    user's `--timeout` behind `ringfence mcp`, where the model is the caller -- could be lifted.
    Now it is at most the policy's, and 0 or None mean the policy's."""
    policy = policy_of(in_world, limits=ringfence.Limits(timeout=0.5))
    with Session(policy) as s:
        for timeout in (None, 0, 60):
            start = time.monotonic()
            r = s.run(["sleep", "3"], timeout=timeout)
            assert r.limits_hit == ("timeout",) and time.monotonic() - start < 2.5, timeout
        assert s.run(["sleep", "0.1"], timeout=0.3).exit_code == 0
