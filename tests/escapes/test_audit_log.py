"""Attack: read, rewrite, truncate or remove the audit log (and the approval rules) from inside
the sandbox, so the record lies or the next run is freer.

The log lives in the user's state directory, which every sandbox sees as an empty, read-only
directory. Each attack runs sandboxed (it must fail and leave the log intact, verifiable) and as
an unguarded control (``--profile full-access``, allowed through approvals) that shows the same
script does reach the log without the guard.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import World


def _rf(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringfence", *args], cwd=world.workspace,
                          env=world.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def _audit(world: World) -> Path:
    return Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "audit"


def _seed(world: World) -> bytes:
    assert _rf(world, "run", "--", "true").returncode == 0
    return (_audit(world) / "audit.jsonl").read_bytes()


ATTACKS = {
    "read": "cat {log}",
    "append": "echo '{{\"seq\":99}}' >> {log}",
    "truncate": ": > {log}",
    "truncate-command": "truncate -s 0 {log}",
    "remove": "rm {log}",
    "rename": "mv {log} {log}.gone",
    "head": "echo '1 0000' > {dir}/head",
    "replace-dir": "rm -rf {dir} && mkdir -p {dir}",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_sandbox_cannot_touch_the_audit_log(world: World, attack: str) -> None:
    before = _seed(world)
    directory = _audit(world)
    script = ATTACKS[attack].format(log=directory / "audit.jsonl", dir=directory)
    result = _rf(world, "run", "--", "/bin/sh", "-c", script)
    assert '"seq":1' not in result.stdout, "the sandbox read the log"
    if attack != "read":
        assert result.returncode != 0, result.stderr
    now = (directory / "audit.jsonl").read_bytes()
    assert now.startswith(before), "the sandbox changed the log"
    verified = _rf(world, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    # the control: the same script without the sandbox reaches the log
    control = _rf(world, "run", "--allow", "rm", "--profile", "full-access", "--",
                  "/bin/sh", "-c", f"{{ {script}; }} > {world.outside}/control.out")
    assert control.returncode == 0, control.stderr
    if attack == "read":
        assert '"seq":1' in (world.outside / "control.out").read_text()


def test_log_dir_looks_empty_inside(world: World) -> None:
    _seed(world)
    result = _rf(world, "run", "--", "/bin/sh", "-c", f"ls -A {_audit(world)}")
    assert result.stdout.strip() == "", result.stdout


def test_sandbox_cannot_add_an_allow_rule(world: World) -> None:
    """Plant ``[[rules]] prefix=["sudo"] decision="allow"`` in the user's config (where "always"
    answers go) so a later run is not asked: the config directory is read-only and empty."""
    config = world.home / ".config" / "ringfence" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("")
    script = f"printf '[[rules]]\\nprefix = [\"sudo\"]\\ndecision = \"allow\"\\n' >> {config}"
    assert _rf(world, "run", "--", "/bin/sh", "-c", script).returncode != 0
    assert config.read_text() == ""
    assert _rf(world, "check", "--", "sudo", "x").returncode == 1
    control = _rf(world, "run", "--profile", "full-access", "--", "/bin/sh", "-c", script)
    assert control.returncode == 0, control.stderr
    assert _rf(world, "check", "--", "sudo", "x").returncode == 0


def test_sandbox_cannot_plant_a_session_approval(world: World) -> None:
    """Write a "session" approval for ``eval`` into ringfence's state: the state dir is empty
    and read-only inside, so the next ``eval`` is still asked about."""
    _seed(world)
    sessions = Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "sessions"
    script = f"mkdir -p {sessions} && for s in $(seq 1 5); do echo x > {sessions}/x; done"
    assert _rf(world, "run", "--", "/bin/sh", "-c", script).returncode != 0
    assert not sessions.exists()
    record = json.loads((_audit(world) / "audit.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "run" and record["exit_code"] != 0


def test_log_protected_even_inside_a_writable_root(world: World) -> None:
    """``--writable ~/.local``: the state directory now lies inside a writable root, yet the
    log stays hidden and unwritable (its mask is an empty read-only directory)."""
    before = _seed(world)
    local = world.home / ".local"
    log = _audit(world) / "audit.jsonl"
    for script in (f"cat {log}", f": > {log}", f"rm -rf {local}/state"):
        result = _rf(world, "run", "--allow", "rm", "--writable", str(local), "--",
                     "/bin/sh", "-c", script)
        assert '"seq":1' not in result.stdout
        assert log.read_bytes().startswith(before), script
    assert _rf(world, "audit", "verify").returncode == 0
    control = _rf(world, "run", "--allow", "rm", "--profile", "full-access", "--",
                  "/bin/sh", "-c", f": > {log}")
    assert control.returncode == 0 and _rf(world, "audit", "verify").returncode == 1


def test_log_cannot_be_renamed_away_inside_a_writable_root(world: World) -> None:
    """``--writable ~/.local``: the command renames ``~/.local/state`` away. The log itself
    is masked, but a parent of the mask was not pinned: the next run would start a new chain
    at seq 1, which ``verify`` finds intact, and the history would be gone from where
    ringfence looks. Every parent inside the root is pinned."""
    before = _seed(world)
    local = world.home / ".local"
    target = local / "state"
    script = f"mv {target} {target}.old"
    _rf(world, "run", "--writable", str(local), "--", "/bin/sh", "-c", script)
    log = _audit(world) / "audit.jsonl"
    assert log.read_bytes().startswith(before), "the log was moved away"
    control = _rf(world, "run", "--profile", "full-access", "--", "/bin/sh", "-c", script)
    assert control.returncode == 0  # the control: unpinned, the history moves away
    assert not log.exists() or not log.read_bytes().startswith(before)


@pytest.mark.parametrize("attack", ["read", "append", "truncate", "remove", "head"])
def test_landlock_mode_cannot_touch_the_audit_log(world: World, attack: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The same attacks in the weaker Landlock mode (no mount namespace: the log is not
    masked, Landlock's rules keep it unreadable and unwritable)."""
    import ringfence
    from ringfence.backends import _landlock, linux

    if _landlock.abi_version() < 1:
        pytest.skip("no Landlock here")
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(linux, "_userns_status", lambda uid: "disabled (test)")
    pol = ringfence.Policy(workspace=str(world.workspace), fallback="landlock",
                           limits=ringfence.Limits(max_processes=0))
    assert ringfence.run(["true"], pol).exit_code == 0
    log = _audit(world) / "audit.jsonl"
    before = log.read_bytes()
    script = ATTACKS[attack].format(log=log, dir=_audit(world))
    result = ringfence.run(["/bin/sh", "-c", script], pol)
    assert b'"seq":1' not in (result.stdout or b"")
    assert result.exit_code != 0
    assert log.read_bytes().startswith(before)
    assert _rf(world, "audit", "verify").returncode == 0
    control = ringfence.run(["/bin/sh", "-c", script], pol.replace(profile="full-access"),
                            approver=lambda r: True)
    assert control.exit_code == 0, control.stderr


def _sync_times(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record when the audit log's records are made durable (the real fdatasync still runs);
    CLOCK_MONOTONIC is the same clock inside the sandbox (no time namespace)."""
    import time

    from ringfence.audit import log

    times: list[float] = []
    real = log._datasync

    def timed(fd: int) -> None:
        real(fd)
        times.append(time.monotonic())

    monkeypatch.setattr(log, "_datasync", timed)
    return times


def test_decision_is_durable_before_the_command_starts(
        in_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision record's sync overlaps bubblewrap building the sandbox; the command must
    still start only after it. The command prints its own start on the same monotonic clock."""
    import ringfence

    times = _sync_times(monkeypatch)
    code = "import time; print(time.monotonic())"
    result = ringfence.run([sys.executable, "-c", code], workspace=str(in_world.workspace))
    assert result.exit_code == 0, result.stderr
    started = float(result.stdout)
    assert len(times) == 2  # the decision, then the run
    assert times[0] < started < times[1]


def test_run_record_is_durable_before_the_result_returns(
        in_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run record is durable before ``run`` returns its result (a slow disk: each sync
    takes 0.2 s; a result returned first, with the sync left to later or to another thread,
    would find the second one missing)."""
    import time

    import ringfence
    from ringfence.audit import log

    times: list[float] = []
    real = log._datasync

    def slow(fd: int) -> None:
        time.sleep(0.2)
        real(fd)
        times.append(time.monotonic())

    monkeypatch.setattr(log, "_datasync", slow)
    result = ringfence.run(["/bin/true"], workspace=str(in_world.workspace))
    returned = time.monotonic()
    assert result.exit_code == 0, result.stderr
    assert len(times) == 2 and times[1] <= returned


def test_run_record_that_cannot_be_made_durable_is_an_error(
        in_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed after the run too: an I/O error syncing the run record reaches the caller
    as UnavailableError, and the placeholders are still released."""
    import ringfence
    from ringfence.audit import log

    calls: list[int] = []
    real = log._datasync

    def second_breaks(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(log, "_datasync", second_breaks)
    with pytest.raises(ringfence.UnavailableError, match="audit log"):
        ringfence.run(["/bin/true"], workspace=str(in_world.workspace))
    assert len(calls) == 2
    assert not (in_world.workspace / ".vscode").exists()  # a placeholder, released


def test_command_never_runs_when_the_decision_cannot_be_made_durable(
        in_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack on fail-closed: a full disk or an I/O error while syncing the decision record
    (which now happens while bubblewrap builds the sandbox) must stop the command before it
    starts, as the synchronous write did."""
    import time

    import ringfence
    from ringfence.audit import log

    def broken(fd: int) -> None:
        time.sleep(0.2)  # bubblewrap's outer process has released its side by now
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(log, "_datasync", broken)
    flag = in_world.workspace / "ran"
    with pytest.raises(ringfence.UnavailableError, match="audit log"):
        ringfence.run([sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"],
                      workspace=str(in_world.workspace))
    time.sleep(1.0)
    assert not flag.exists()

