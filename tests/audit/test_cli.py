"""``ringfence audit show`` and ``ringfence audit verify`` over a log written by real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import World


def rf(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringfence", *args], cwd=world.workspace,
                          env=world.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def log_file(world: World) -> Path:
    return Path(world.env["XDG_STATE_HOME"]) / "ringfence" / "audit" / "audit.jsonl"


def test_every_run_leaves_a_decision_and_a_run_record(world: World) -> None:
    assert rf(world, "run", "--", "sh", "-c", "exit 3").returncode == 3
    assert rf(world, "run", "--", "sudo", "x").returncode == 122
    records = [json.loads(x) for x in log_file(world).read_text().splitlines()]
    assert [(r["kind"], r.get("decision"), r.get("exit_code")) for r in records] == [
        ("decision", "run", None), ("run", None, 3), ("decision", "ask", None)]
    decision, run = records[0], records[1]
    assert decision["workspace"] == str(world.workspace)
    assert decision["command"] == ["sh", "-c", "exit 3"]
    assert decision["approved_by"] == "policy" and len(decision["policy"]) == 64
    assert run["decision_seq"] == decision["seq"] and run["sandbox"] == "bwrap"
    assert run["network"] == "off" and run["network_decisions"] == []
    assert "seccomp" in run["layers"] and run["duration"] > 0


def test_limits_and_command_not_found_are_recorded(world: World) -> None:
    assert rf(world, "run", "--timeout", "0.3", "--", "sleep", "5").returncode != 0
    assert rf(world, "run", "--", "no-such-program-x").returncode == 127
    runs = [json.loads(x) for x in log_file(world).read_text().splitlines()]
    runs = [r for r in runs if r["kind"] == "run"]
    assert runs[0]["limits_hit"] == ["timeout"]
    assert runs[1]["exit_code"] == 127


def test_show_and_verify(world: World) -> None:
    rf(world, "run", "--", "true")
    rf(world, "run", "--", "sudo", "x")
    shown = rf(world, "audit", "show")
    assert shown.returncode == 0
    out = shown.stdout.splitlines()
    assert len(out) == 3 and "decision run by safe-list" in out[0] and "sudo x" in out[2]
    as_json = rf(world, "audit", "show", "--json").stdout.splitlines()
    assert [json.loads(x)["seq"] for x in as_json] == [1, 2, 3]
    assert rf(world, "audit", "show", "--since", "1h").stdout.count("\n") == 3
    assert rf(world, "audit", "show", "--since", "2999-01-01").stdout == ""
    bad = rf(world, "audit", "show", "--since", "yesterday-ish")
    assert bad.returncode == 125 and "--since" in bad.stderr
    ok = rf(world, "audit", "verify")
    assert ok.returncode == 0 and "ok: 3 records" in ok.stdout


def test_verify_names_the_tampered_record(world: World) -> None:
    for _ in range(3):
        rf(world, "run", "--", "true")
    path = log_file(world)
    content = path.read_text().splitlines()
    content[1] = content[1].replace('"exit_code":0', '"exit_code":1')
    path.write_text("\n".join(content) + "\n")
    r = rf(world, "audit", "verify")
    assert r.returncode == 1
    assert "TAMPERED: record 2 (audit.jsonl line 2) was edited" in r.stdout
    data = json.loads(rf(world, "audit", "verify", "--json").stdout)
    assert data["ok"] is False and data["line"] == 3


def test_audit_usage(world: World) -> None:
    r = rf(world, "audit", "rewrite")
    assert r.returncode == 125 and "usage: ringfence audit" in r.stderr


def test_unwritable_log_fails_closed(world: World) -> None:
    """When the decision cannot be recorded the command does not run: exit 125, one line."""
    state = Path(world.env["XDG_STATE_HOME"]) / "ringfence"
    state.mkdir(parents=True)
    (state / "audit").write_text("a file where the log directory should be")
    r = rf(world, "run", "--", "sh", "-c", "touch ran")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "cannot write the audit log" in r.stderr
    assert not (world.workspace / "ran").exists()


def test_since_out_of_range_is_one_line(world: World) -> None:
    """`audit show --since 0001-01-01` was a traceback (year 0 is out of range in UTC)."""
    r = rf(world, "audit", "show", "--since", "0001-01-01")
    assert r.returncode == 125 and "--since" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_show_survives_a_record_it_cannot_encode(world: World) -> None:
    """A record with a lone surrogate (written by an older ringfence for a library command
    `"echo \\ud800x"`) made `audit show` crash on it, hiding every record after it until
    filtered out with --since; it is now shown escaped."""
    from ringfence.audit.log import Writer

    Writer(str(log_file(world).parent)).append(
        {"kind": "decision", "time": "2026-01-01T00:00:00.000Z", "decision": "run",
         "rule": "policy", "command": ["echo", "\ud800x"]})
    rf(world, "run", "--", "true")
    shown = rf(world, "audit", "show")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "\\ud800x" in shown.stdout and "true" in shown.stdout.splitlines()[-1]
