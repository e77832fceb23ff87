"""The hash-chained audit log: appending, verifying, and every kind of tampering it must name;
torn lines, a writer killed mid-record, many writers at once, rotation across files."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.audit import log
from ringfence.audit.log import GENESIS, Writer, verify


def fill(directory: Path, n: int, **kw: object) -> Writer:
    w = Writer(str(directory), **kw)  # type: ignore[arg-type]
    for i in range(n):
        w.append({"kind": "decision", "n": i, "command": ["echo", f"record {i}"]})
    return w


def lines(directory: Path, name: str = log.ACTIVE) -> list[str]:
    return (directory / name).read_text().splitlines()


def rewrite(directory: Path, new: list[str], name: str = log.ACTIVE) -> None:
    (directory / name).write_text("".join(x + "\n" for x in new))


def test_chain(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    records = [json.loads(x) for x in lines(tmp_path)]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == GENESIS
    for before, after in zip(lines(tmp_path), records[1:], strict=False):
        assert after["prev"] == hashlib.sha256(before.encode()).hexdigest()
    assert list(records[1]) == ["seq", "v", "kind", "n", "command", "prev"]
    assert records[1]["v"] == log.FORMAT
    report = verify(str(tmp_path))
    assert report.ok and report.records == 3 and not report.warnings
    assert (tmp_path / log.ACTIVE).stat().st_mode & 0o777 == 0o600


def test_encoding_is_json(tmp_path: Path) -> None:
    w = Writer(str(tmp_path))
    value = {"s": "quote\" back\\ nl\n ctl\x01 é \udcff", "i": -3, "f": 0.25, "b": True,
             "n": None, "l": [1, [2]], "t": ("a",), "inf": float("inf")}
    w.append(value)
    got = json.loads(lines(tmp_path)[0])
    assert got["s"] == value["s"] and got["l"] == [1, [2]] and got["t"] == ["a"]
    assert got["inf"] is None and got["b"] is True and got["f"] == 0.25


@given(st.text())
@settings(max_examples=500, deadline=None)
def test_string_encoding_matches_json(text: str) -> None:
    """The plain-text shortcut quotes exactly what json.dumps(ensure_ascii=True) would."""
    assert log._enc_str(text) == json.dumps(text)


def test_string_encoding_escapes_what_json_must() -> None:
    for text in ('a"b', "a\\b", "tab\t", "nul\x00", "del\x7f", "é", "\u2028", "😀", ""):
        assert log._enc_str(text) == json.dumps(text)


def test_edited_record_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    content = lines(tmp_path)
    content[2] = content[2].replace("record 2", "record X")
    rewrite(tmp_path, content)
    report = verify(str(tmp_path))
    assert not report.ok
    assert report.problem is not None and "record 3 (audit.jsonl line 3) was edited" in \
        report.problem


def test_edited_last_record_is_caught_by_the_head(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    content = lines(tmp_path)
    content[2] = content[2].replace("record 2", "record X")
    rewrite(tmp_path, content)
    report = verify(str(tmp_path))
    assert not report.ok and "record 3 was edited" in (report.problem or "")


def test_deleted_record_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    content = lines(tmp_path)
    del content[1]
    rewrite(tmp_path, content)
    report = verify(str(tmp_path))
    assert "record 2 missing before audit.jsonl line 2" in (report.problem or "")


def test_reordered_records_are_named(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    content = lines(tmp_path)
    content[1], content[2] = content[2], content[1]
    rewrite(tmp_path, content)
    report = verify(str(tmp_path))
    assert not report.ok
    assert "record 2 missing" in (report.problem or "") or "out of order" in (report.problem or "")
    assert report.where == (str(tmp_path / log.ACTIVE), 2)


def test_renumbered_reorder_is_still_caught(tmp_path: Path) -> None:
    """Swap two records and fix their seq numbers: the hashes still disagree."""
    fill(tmp_path, 4)
    recs = [json.loads(x) for x in lines(tmp_path)]
    recs[1]["seq"], recs[2]["seq"] = 3, 2
    content = [json.dumps(r, separators=(",", ":")) for r in (recs[0], recs[2], recs[1], recs[3])]
    rewrite(tmp_path, content)
    assert "was edited" in (verify(str(tmp_path)).problem or "")


def test_truncated_log_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    rewrite(tmp_path, lines(tmp_path)[:3])
    report = verify(str(tmp_path))
    assert "records 4-5 missing at the end" in (report.problem or "")


def test_cut_log_stays_detected_after_new_records(tmp_path: Path) -> None:
    """Cut records off the end, then let ringfence write more: the writer chains on from the
    head, so the gap is still named rather than covered by a fresh chain."""
    w = fill(tmp_path, 5)
    rewrite(tmp_path, lines(tmp_path)[:3])
    w.append({"kind": "after"})
    report = verify(str(tmp_path))
    assert "records 4-5 missing before audit.jsonl line 4" in (report.problem or "")
    (tmp_path / log.ACTIVE).write_text("")
    w.append({"kind": "after"})
    assert "missing before audit.jsonl line 1" in (verify(str(tmp_path)).problem or "")


def test_emptied_log_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 2)
    (tmp_path / log.ACTIVE).write_text("")
    assert "records 1-2 missing at the end" in (verify(str(tmp_path)).problem or "")


def test_inserted_line_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    content = lines(tmp_path)
    content.insert(1, '{"note": "nothing happened here"}')
    rewrite(tmp_path, content)
    assert "audit.jsonl line 2 is not a ringfence record" in (verify(str(tmp_path)).problem or "")


def test_torn_last_line_is_reported_and_writing_goes_on(tmp_path: Path) -> None:
    w = fill(tmp_path, 3)
    with open(tmp_path / log.ACTIVE, "ab") as fh:
        fh.write(b'{"seq":4,"time":"2026-')  # a crash mid-record
    report = verify(str(tmp_path))
    assert report.ok and report.records == 3
    assert any("torn record" in x for x in report.warnings)
    w.append({"kind": "run"})
    content = lines(tmp_path)
    assert content[3] == '{"seq":4,"time":"2026-' and json.loads(content[4])["seq"] == 4
    report = verify(str(tmp_path))
    assert report.ok and report.records == 4 and "line 4" in report.warnings[0]


def _killed_mid_record(directory: str) -> None:
    """In a child: the first write of the record writes half of it, then the process dies."""
    real_write = os.write

    def half_then_die(fd: int, data: bytes) -> int:
        if data.startswith(b'{"seq":'):
            real_write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(fd, data)

    os.write = half_then_die  # type: ignore[assignment]
    Writer(directory).append({"kind": "decision", "command": ["x" * 200]})


def test_writer_killed_mid_record(tmp_path: Path) -> None:
    fill(tmp_path, 2)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_killed_mid_record, args=(str(tmp_path),))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert not (tmp_path / log.ACTIVE).read_bytes().endswith(b"\n")
    fill(tmp_path, 1)  # the lock died with the writer; the next one goes on
    report = verify(str(tmp_path))
    assert report.ok and report.records == 3, report.to_json()
    assert len(report.warnings) == 1


def _many(directory: str, n: int) -> None:
    w = Writer(directory)
    for i in range(n):
        w.append({"kind": "run", "pid": os.getpid(), "i": i, "pad": "x" * (i * 37 % 500)})


def test_many_writers_never_fork_the_chain(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_many, args=(str(tmp_path), 40)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    report = verify(str(tmp_path))
    assert report.ok and report.records == 320 and not report.warnings, report.to_json()
    seqs = [json.loads(x)["seq"] for x in lines(tmp_path)]
    assert seqs == list(range(1, 321))


def test_rotation_keeps_the_chain(tmp_path: Path) -> None:
    fill(tmp_path, 40, max_bytes=1000)
    files = log.files(str(tmp_path))
    assert len(files) > 3 and files[-1].endswith(log.ACTIVE)
    assert Path(files[0]).name == "audit.000001.jsonl"
    first_of_second = json.loads(Path(files[1]).read_text().splitlines()[0])
    last_of_first = Path(files[0]).read_text().splitlines()[-1]
    assert first_of_second["prev"] == hashlib.sha256(last_of_first.encode()).hexdigest()
    report = verify(str(tmp_path))
    assert report.ok and report.records == 40


def test_removed_rotated_file_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 40, max_bytes=1000)
    os.unlink(log.files(str(tmp_path))[1])
    report = verify(str(tmp_path))
    assert not report.ok and "missing before audit.000003.jsonl line 1" in (report.problem or "")


def test_edit_in_a_rotated_file_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 40, max_bytes=1000)
    name = Path(log.files(str(tmp_path))[0]).name
    content = lines(tmp_path, name)
    content[0] = content[0].replace("record 0", "record Z")
    rewrite(tmp_path, content, name)
    problem = verify(str(tmp_path)).problem or ""
    assert "record 1 (audit.000001.jsonl line 1) was edited" in problem


def test_missing_head_is_a_warning(tmp_path: Path) -> None:
    fill(tmp_path, 2)
    os.unlink(tmp_path / "head")
    report = verify(str(tmp_path))
    assert report.ok and "head file is missing" in report.warnings[0]


def test_empty_log_verifies(tmp_path: Path) -> None:
    assert verify(str(tmp_path / "none")).ok


def test_log_is_not_followed_through_a_symlink(tmp_path: Path) -> None:
    """A symlink planted in place of the log (by anything that could write the state dir) is
    not followed: the append fails instead of writing elsewhere."""
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / log.ACTIVE)
    from ringfence.errors import UnavailableError

    with pytest.raises(UnavailableError, match="cannot write the audit log"):
        Writer(str(tmp_path)).append({"kind": "x"})
    assert (tmp_path / "elsewhere").read_text() == ""


def test_records_have_the_fields(tmp_path: Path) -> None:
    from ringfence.approval.gate import check
    from ringfence.policy.model import Policy

    policy = Policy(workspace=str(tmp_path))
    decision = check(policy, ["ls"])
    rec = log.decision_record(policy, ["ls"], decision, answer="", approved_by="safe-list",
                              cwd=None)
    for key in ("time", "workspace", "command", "policy", "profile", "approval_mode",
                "decision", "reason", "rule", "approved_by", "answer", "escalation"):
        assert key in rec
    run = log.run_record(policy, ["ls"], decision_seq=1, mode="bwrap", layers=["seccomp"],
                         weaker=[], exit_code=159, duration=0.5, limits_hit=["timeout"],
                         stderr=b"ls: Permission denied", setup_failed=False)
    assert run["denials"] == ["a blocked system call (SIGSYS from seccomp)", "permission denied"]
    for key in ("exit_code", "duration", "limits_hit", "sandbox", "layers", "network",
                "network_decisions", "policy", "profile"):
        assert key in run
    assert log.policy_hash(policy) == log.policy_hash(Policy(workspace=str(tmp_path)))
    assert log.policy_hash(policy) != log.policy_hash(policy.replace(network="on"))


def test_writer_imports_nothing_heavy(tmp_path: Path) -> None:
    """The writer is on every command's path: no json, hashlib or re at import or append."""
    code = ("import sys; from ringfence.audit.log import Writer; "
            "Writer(sys.argv[1]).append({'a': [1]}); Writer(sys.argv[1]).append({}); "
            "print(sorted(m for m in ('json', 'hashlib', 're') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inserted_torn_looking_line_is_named(tmp_path: Path) -> None:
    """Red team: a line inserted mid-file that looks like a torn record (the start of one,
    not valid JSON: `{"seq":2,"kind":"decision","command":"rm -rf / (approved by admin)" `)
    got a warning and "chain intact". A crash's torn line is now vouched for by the record
    the next writer chains after it; one nothing vouches for is named as tampering."""
    fill(tmp_path, 3)
    content = lines(tmp_path)
    content.insert(1, '{"seq":2,"kind":"decision","command":"rm -rf / (approved by admin)" ')
    _torn_looking_line_is_tampering(tmp_path, content, 2)


def _torn_looking_line_is_tampering(directory: Path, content: list[str], line: int) -> None:
    """With ``content`` as the log, ``verify`` fails at ``line``, naming a torn-looking line."""
    rewrite(directory, content)
    report = verify(str(directory))
    assert not report.ok and report.where is not None and report.where[1] == line
    assert "looks like a torn record" in (report.problem or "")


def test_torn_line_at_a_rotation_is_vouched_for(tmp_path: Path) -> None:
    """A crash's torn line at the end of a file that then rotates: the first record of the
    next file names it."""
    w = fill(tmp_path, 3, max_bytes=1000)
    with open(tmp_path / log.ACTIVE, "ab") as fh:
        fh.write(b'{"seq":4,"time":"2026-' + b"x" * 1000)
    w.append({"kind": "run"})
    report = verify(str(tmp_path))
    assert report.ok and report.records == 4 and len(report.warnings) == 1, report.to_json()


def _older_log(directory: Path, n: int) -> list[str]:
    """``n`` records as a ringfence before the ``v`` field wrote them (chained, no ``v``)."""
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        line = f'{{"seq":{i},"kind":"decision","n":{i},"prev":"{prev}"}}'
        out.append(line)
        prev = hashlib.sha256(line.encode()).hexdigest()
    rewrite(directory, out)
    (directory / "head").write_text(f"{n} {prev}\n")
    return out


def test_torn_line_an_older_ringfence_closed_is_a_warning(tmp_path: Path) -> None:
    """After upgrading: a crash's torn line that an older ringfence closed with a bare newline
    (it did not name the torn line in the record after it) made `audit verify` say TAMPERED,
    so every log with a past crash failed. Before the first record of the vouching format it
    is a warning that says it cannot be told from an inserted line; after it, tampering."""
    content = _older_log(tmp_path, 2)
    content.append('{"seq":3,"kind":"decision","comm')  # closed by the older writer's newline
    rewrite(tmp_path, content)
    Writer(str(tmp_path)).append({"kind": "run"})  # the first record of the new format
    report = verify(str(tmp_path))
    assert report.ok and report.records == 3, report.to_json()
    assert len(report.warnings) == 1 and "older ringfence" in report.warnings[0]
    assert "line 3" in report.warnings[0]
    # the same line inserted after that record, among records that vouch: tampering
    Writer(str(tmp_path)).append({"kind": "run"})
    content = lines(tmp_path)
    content.insert(4, '{"seq":5,"kind":"decision","command":"rm -rf / (approved by admin)" ')
    _torn_looking_line_is_tampering(tmp_path, content, 5)


def test_torn_line_among_older_records_is_a_warning(tmp_path: Path) -> None:
    """A torn line between two records an older ringfence wrote (no record after it can
    vouch): a warning, and the chain is checked on."""
    content = _older_log(tmp_path, 3)
    content.insert(2, '{"seq":3,"kind":"dec')
    rewrite(tmp_path, content)
    report = verify(str(tmp_path))
    assert report.ok and report.records == 3 and "older ringfence" in report.warnings[0]
