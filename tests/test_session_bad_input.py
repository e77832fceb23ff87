"""Sessions under bad input and heavy use: clear errors, and nothing leaked.

Leaks are counted on the host before a session starts and after it closes: this process's file
descriptors and threads, its child processes, the host's mount table, temporary directories, the
placeholders in the workspace and ringfence's state directory.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

import ringfence
from ringfence.errors import PolicyError
from ringfence.session import Session
from tests.conftest import World


@pytest.fixture
def session(in_world: World) -> Iterator[Session]:
    with Session(ringfence.Policy(workspace=str(in_world.workspace))) as s:
        yield s


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("command", [["echo", "a\0b"], "echo a\0b", ["a\0"]])
def test_nul_bytes(session: Session, command: list[str] | str) -> None:
    with pytest.raises(PolicyError) as err:
        session.run(command)
    assert "NUL" in one_line(err.value)
    assert session.run(["true"]).exit_code == 0


def test_not_a_command(session: Session) -> None:
    with pytest.raises(PolicyError, match="no command"):
        session.run([])
    with pytest.raises(PolicyError, match="not a string"):
        session.run(["echo", 3])  # type: ignore[list-item]


def test_enormous_command_line(session: Session) -> None:
    with pytest.raises(PolicyError) as err:
        session.run(["echo", "x" * (1 << 20)])
    assert "KiB" in one_line(err.value) and "file" in str(err.value)
    assert session.run(["echo", "x" * 50_000]).stdout == b"x" * 50_000 + b"\n"


def test_cwd_outside_the_workspace(session: Session, in_world: World) -> None:
    (in_world.workspace / "escape").symlink_to(in_world.outside)
    for cwd in ("/etc", "..", "../../..", str(in_world.outside), "escape", "a\0b"):
        with pytest.raises(PolicyError) as err:
            session.run(["pwd"], cwd=cwd)
        assert "workspace" in one_line(err.value) or "NUL" in str(err.value)
    with pytest.raises(PolicyError, match="does not exist"):
        session.run(["pwd"], cwd="missing")
    assert session.run(["pwd"], cwd=str(in_world.workspace)).exit_code == 0


def test_enormous_output(session: Session) -> None:
    """100 MB of output against a 1 MB cap: the command is stopped at the cap, the memory this
    process holds stays bounded, and the session goes on."""
    start = time.monotonic()
    r = session.run("head -c 104857600 /dev/zero; echo done >&2", output_limit=1 << 20)
    assert len(r.stdout or b"") == 1 << 20
    assert "output" in r.limits_hit and time.monotonic() - start < 20
    r = session.run("head -c 3000000 /dev/zero")  # under the policy's default cap: all of it
    assert len(r.stdout or b"") == 3_000_000 and not r.limits_hit


def _children() -> list[int]:
    """Live (non-zombie) processes whose parent is this process."""
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.append(int(name))
    return found


def _counts(world: World) -> dict[str, object]:
    state = world.home / ".local" / "state"
    tmp = tempfile.gettempdir()
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "children": len(_children()),
        "mounts": len(open("/proc/self/mountinfo").read().splitlines()),
        "tmp": sorted(n for n in os.listdir(tmp) if "ringfence" in n),
        "workspace": sorted(os.listdir(world.workspace)),
        "placeholder records": sorted(
            n for n in (os.listdir(state / "ringfence" / "placeholders")
                        if (state / "ringfence" / "placeholders").is_dir() else ())
            if not n.endswith((".lock", ".users")) and n != "pool"),  # pool: spare dirs
    }


def test_thousands_of_commands_and_no_leaks(in_world: World) -> None:
    """2,000 commands in a row, 50 at once, a few timeouts and failures: afterwards this
    process has the descriptors, threads and children it had, the host the same mounts, and
    the workspace and temp dirs are as they were."""
    world = in_world
    before = _counts(world)
    s = Session(ringfence.Policy(workspace=str(world.workspace)))
    assert s.run(["true"]).exit_code == 0
    fds_started = len(os.listdir("/proc/self/fd"))
    for i in range(2000):
        r = s.run(["/bin/echo", str(i)])
        assert r.stdout == f"{i}\n".encode()
    assert len(os.listdir("/proc/self/fd")) == fds_started  # nothing per command
    many = [s.start(["sh", "-c", f"echo {i}; sleep 0.2"]) for i in range(50)]
    assert [c.wait(30).stdout for c in many] == [f"{i}\n".encode() for i in range(50)]
    assert s.run(["sleep", "5"], timeout=0.1).limits_hit == ("timeout",)
    with pytest.raises(ringfence.CommandError):
        s.run(["no-such-command-xyz"])
    assert s.run(["cat"], stdin=b"x", pty=True).exit_code == 0
    abandoned = s.start(["sleep", "100"])  # never waited for
    assert len(os.listdir("/proc/self/fd")) > fds_started
    s.close()
    del abandoned
    deadline = time.monotonic() + 5
    while _counts(world) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counts(world) == before
