"""The audit log: append-only JSON Lines, each record chained to the one before by its hash.

Layout, in ``<state dir>/audit/`` (the state directory is deny-read in every sandbox, and outside
every writable root, so a sandboxed command can neither read nor change it):

- ``audit.jsonl``: the current file; ``audit.NNNNNN.jsonl``: older files, rotated by size. The
  chain runs across files: the first record of a file carries the hash of the last record of the
  file before it.
- ``head``: the sequence number and hash of the newest record, so ``verify`` can tell when records
  were cut off the end.
- ``lock``: writers hold an exclusive ``flock`` on it while they read the tail and append, so two
  ringfence processes never interleave records or fork the chain.

A record is one line: a JSON object whose first key is ``seq`` (1, 2, 3, ... across files) and
whose last key is ``prev``, the SHA-256 (hex) of the previous record's line (64 zeros for the
first). A record's own hash is the SHA-256 of its line's bytes, without the newline. Each record
is written with one ``write`` on an ``O_APPEND`` descriptor and ``fsync``-ed before the command
starts or its result is returned. A torn last line (a crash mid-write) is closed with a newline by
the next writer, which chains from the last whole record and puts the torn line's hash in that
record (``torn``); ``verify`` reports a torn line as a warning when it is the log's last line or
the record after it names it, and as tampering otherwise (a line inserted to look torn) — except
before the first record that carries ``v`` (the format that vouches): an older ringfence closed
a crash's torn line with a bare newline, so there it stays a warning that says it cannot be
told from an inserted line.

What this detects: an edited, removed, reordered or cut-off record, by anyone who does not also
rewrite every record after it and the head. It is evidence against tampering by the sandboxed
command (which cannot reach the file at all) and against careless edits, not a signature.

The writer avoids ``json`` and ``hashlib`` (both slow to import): records are encoded by a small
encoder here and hashed with the ``_sha256`` extension.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

    from ..approval.model import Decision
    from ..policy.model import Policy

GENESIS = "0" * 64
MAX_BYTES = 16 << 20
"""The current file is rotated when it reaches this size."""

ACTIVE = "audit.jsonl"
FORMAT = 2
"""``v`` in every record: 2 = its writer vouches for a torn line it closes (``torn``). Records
without ``v`` were written by an older ringfence, which closed a torn line with a bare
newline."""
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_datasync = getattr(os, "fdatasync", os.fsync)
_TAIL = '"prev":"'


def audit_dir() -> str:
    from .._dirs import state_dir

    return os.path.join(state_dir(), "audit")


def _no_windows() -> Exception:
    from ..errors import UnavailableError

    return UnavailableError("the audit log is not written on Windows yet; ringfence runs "
                            "commands on Linux only for now")


def sha256_hex(data: bytes) -> str:
    from .._dirs import sha256_hex as digest

    return digest(data)


# --- encoding ------------------------------------------------------------------------------

def _enc_str(text: str) -> str:
    """A JSON string literal, everything outside printable ASCII escaped. Plain text (most
    paths and arguments) is quoted as it is; the rest goes to ``_json``'s escaper, a compiled
    module (~0.3 ms to load) that the command line's run path then never loads."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    from _json import encode_basestring_ascii

    return str(encode_basestring_ascii(text))


def encode(value: Any) -> str:
    """Compact JSON, keys in insertion order (deterministic for our records)."""
    enc_str = _enc_str
    if isinstance(value, str):
        return str(enc_str(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "null"
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{enc_str(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if hasattr(value, "to_dict"):
        return encode(value.to_dict())
    return str(enc_str(str(value)))


def iso_time(t: float) -> str:
    import time

    ms = int((t % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def _whole(line: bytes) -> bool:
    """A complete record line: starts with ``{"seq":`` and ends with ``"prev":"<64 hex>"}``."""
    if not line.startswith(b'{"seq":') or len(line) < 83 or not line.endswith(b'"}'):
        return False
    tail = line[-75:]
    if not tail.startswith(b',"prev":"'):
        return False
    hexpart = tail[9:73]
    return all(c in b"0123456789abcdef" for c in hexpart)


def _seq_of(line: bytes) -> int:
    digits = line[7:line.index(b",", 7)]
    return int(digits)


# --- files ---------------------------------------------------------------------------------

def files(directory: str) -> list[str]:
    """The log's files, oldest first (rotated ones, then the current one)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    rotated = sorted(n for n in names if n.startswith("audit.") and n.endswith(".jsonl")
                     and n != ACTIVE and n[6:-6].isdigit())
    out = [os.path.join(directory, n) for n in rotated]
    if ACTIVE in names:
        out.append(os.path.join(directory, ACTIVE))
    return out


def _last_whole(fd: int, size: int) -> bytes | None:
    """The last complete record line in the open file, or None."""
    if sys.platform == "win32":
        raise _no_windows()
    chunk = 4096  # records are a few hundred bytes: one small read almost always does
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # maybe cut
        for line in reversed(lines):
            if _whole(line):
                return line
        if start == 0:
            return None
        chunk *= 4


def _tail_line(fd: int, size: int) -> bytes:
    """The file's last line (after its last newline)."""
    if sys.platform == "win32":
        raise _no_windows()
    chunk = 4096
    while True:
        start = max(0, size - chunk)
        data = os.pread(fd, size - start, start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return data[cut + 1:]
        if start == 0:
            return data
        chunk *= 4


def _unwritable(directory: str, exc: OSError) -> Exception:
    from ..errors import UnavailableError

    return UnavailableError(
        f"cannot write the audit log in {directory}: {exc.strerror or exc}; every command is "
        "recorded there before it runs, so fix that directory (permissions, free space, a "
        "symlink in its place) and try again")


class Writer:
    """Appends records. One instance per process is enough; it opens files per append."""

    def __init__(self, directory: str | None = None, max_bytes: int = MAX_BYTES) -> None:
        self.directory = directory or audit_dir()
        self.max_bytes = max_bytes
        self._pending: list[int] = []  # records written with ``defer=True``, not yet synced

    def append(self, record: dict[str, Any], *, defer: bool = False) -> int:
        """Write ``record`` (without seq/prev: they are added) durably. Returns its seq.

        ``defer=True`` writes it now and leaves making it durable to ``sync()``, which the
        caller must call before relying on it (the command line and the library call it while
        the sandbox is being built, before the command is released)."""
        if sys.platform == "win32":
            raise _no_windows()
        import fcntl

        if not defer:
            self.sync()  # what was deferred is durable before anything after it
        directory = self.directory
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            lock = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | _CLOEXEC,
                           0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                return self._append_locked(record, defer)
            finally:
                os.close(lock)  # releases the flock
        except OSError as exc:
            # fail closed: a command whose decision cannot be recorded does not run
            raise _unwritable(directory, exc) from None

    def sync(self) -> None:
        """Make the records written with ``defer=True`` durable. Fails closed."""
        pending, self._pending = self._pending, []
        failed: OSError | None = None
        for fd in pending:
            try:
                _datasync(fd)
            except OSError as exc:
                failed = failed or exc
            finally:
                os.close(fd)
        if failed is not None:
            raise _unwritable(self.directory, failed) from None

    def _append_locked(self, record: dict[str, Any], defer: bool = False) -> int:
        if sys.platform == "win32":
            raise _no_windows()
        path = os.path.join(self.directory, ACTIVE)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | _CLOEXEC | _NOFOLLOW
        fd = os.open(path, flags, 0o600)
        try:
            size = os.fstat(fd).st_size
            torn = None
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # a torn line left by a crash: close it, and say so in the (chained) record
                # that follows, so `verify` can tell it from a line inserted later
                torn = sha256_hex(_tail_line(fd, size))
                os.write(fd, b"\n")
                size += 1
            if size >= self.max_bytes:
                last = _last_whole(fd, size)
                os.close(fd)
                fd = -1
                self._rotate(path)
                fd = os.open(path, flags, 0o600)
                size = 0
                prev_line = last
            else:
                prev_line = _last_whole(fd, size) if size else None
            if prev_line is None and size == 0:
                prev_line = self._last_of_previous_file()
            if prev_line is None:
                seq, prev = 1, GENESIS
            else:
                seq, prev = _seq_of(prev_line) + 1, sha256_hex(prev_line)
            head = _read_head(self.directory)
            if head is not None and head[0] >= seq:
                # records were cut off the end: chain on from the head, so the gap stays
                # visible to `verify` instead of being papered over by new records
                seq, prev = head[0] + 1, head[1]
            if torn is not None:
                record = {**record, "torn": torn}
            body = encode(record)[1:-1]
            line = f'{{"seq":{seq},"v":{FORMAT}' + (f",{body}" if body else "") + \
                f',"prev":"{prev}"}}'
            data = line.encode("ascii")
            os.write(fd, data + b"\n")
            if defer:
                self._pending.append(os.dup(fd))
            else:
                _datasync(fd)  # durable before the command starts or its result is returned
            self._write_head(seq, sha256_hex(data))
            return seq
        finally:
            if fd >= 0:
                os.close(fd)

    def _rotate(self, path: str) -> None:
        existing = [os.path.basename(p) for p in files(self.directory)]
        numbers = [int(n[6:-6]) for n in existing if n != ACTIVE]
        nxt = max(numbers, default=0) + 1
        os.rename(path, os.path.join(self.directory, f"audit.{nxt:06d}.jsonl"))

    def _last_of_previous_file(self) -> bytes | None:
        older = [p for p in files(self.directory) if not p.endswith(ACTIVE)]
        if not older:
            return None
        fd = os.open(older[-1], os.O_RDONLY | _CLOEXEC)
        try:
            return _last_whole(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def _write_head(self, seq: int, digest: str) -> None:
        # fixed size, written in place with one pwrite (written under the lock)
        if sys.platform == "win32":
            raise _no_windows()
        path = os.path.join(self.directory, "head")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | _CLOEXEC | _NOFOLLOW, 0o600)
        try:
            os.pwrite(fd, f"{seq:020d} {digest}\n".encode(), 0)
        finally:
            os.close(fd)


# --- the records: one per decision, one per run (pure) ---------------------------------
# Words in a failed command's stderr that suggest the sandbox said no (a hint, never policy).
_DENIAL_WORDS = ("permission denied", "read-only file system", "operation not permitted",
                 "network is unreachable", "temporary failure in name resolution")
_SIGSYS = 31


_HASHES: dict[int, tuple[Policy, str]] = {}


def policy_hash(policy: Policy) -> str:
    """SHA-256 of the policy's canonical JSON (computed once per policy object)."""
    hit = _HASHES.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    digest = sha256_hex(encode(policy.to_dict()).encode("ascii"))
    _HASHES[id(policy)] = (policy, digest)
    return digest


def _command(command: Sequence[str] | str) -> Any:
    return command if isinstance(command, str) else list(command)


def _uid() -> int | None:
    if sys.platform == "win32":
        return None
    return os.getuid()


def decision_record(policy: Policy, command: Sequence[str] | str, decision: Decision, *,
                    answer: str, approved_by: str, cwd: str | None) -> dict[str, Any]:
    import os
    import time

    return {
        "time": iso_time(time.time()),
        "kind": "decision",
        "user": _uid(),
        "pid": os.getpid(),
        "workspace": policy.workspace,
        "cwd": cwd or policy.workspace,
        "command": _command(command),
        "policy": policy_hash(policy),
        "profile": policy.profile,
        "approval_mode": policy.approval_mode,
        "decision": decision.verdict,
        "reason": decision.reason,
        "rule": decision.rule,
        "escalation": list(decision.escalation.kinds()),
        "justification": decision.escalation.justification,
        "grants": list(decision.grants),
        "answer": answer or None,
        "approved_by": approved_by or None,
    }


def denials(exit_code: int, stderr: bytes | None) -> list[str]:
    """Signs that the sandbox refused something (a heuristic, as in Codex)."""
    out = []
    if exit_code == 128 + _SIGSYS:
        out.append("a blocked system call (SIGSYS from seccomp)")
    if exit_code != 0 and stderr:
        text = stderr[-65536:].decode(errors="replace").lower()
        out += [w for w in _DENIAL_WORDS if w in text]
    return out


def _connection(conn: Any) -> dict[str, Any]:
    return {"host": str(conn.host), "port": int(conn.port), "allowed": bool(conn.allowed),
            "rule": str(conn.rule), "reason": str(conn.reason), "address": str(conn.address),
            "sent": int(conn.sent), "received": int(conn.received),
            "duration": round(float(conn.duration), 6), "count": int(getattr(conn, "count", 1))}


def run_record(policy: Policy, command: Sequence[str] | str, *, decision_seq: int, mode: str,
               layers: Sequence[str], weaker: Sequence[str], exit_code: int, duration: float,
               limits_hit: Sequence[str], stderr: bytes | None,
               setup_failed: bool, network: Sequence[Any] = (),
               git_warnings: Sequence[str] = ()) -> dict[str, Any]:
    import time

    record = {
        "time": iso_time(time.time()),
        "kind": "run",
        "decision_seq": decision_seq,
        "workspace": policy.workspace,
        "command": _command(command),
        "policy": policy_hash(policy),
        "profile": policy.profile,
        "sandbox": mode,
        "layers": list(layers),
        "weaker": list(weaker),
        "network": policy.network,
        # every connection the allowlist proxy decided (host, port, allowed, rule, bytes)
        "network_decisions": [_connection(c) for c in network],
        "exit_code": exit_code,
        "setup_failed": setup_failed,
        "duration": round(duration, 6),
        "limits_hit": list(limits_hit),
        "denials": denials(exit_code, stderr),
    }
    if git_warnings:  # what the command left in a git index, and what ringfence undid
        record["git_warnings"] = list(git_warnings)
    return record


# --- reading and verifying -----------------------------------------------------------------

def read_records(directory: str | None = None) -> Iterator[tuple[str, int, bytes]]:
    """(file, line number, line bytes) for every line of every file, oldest first."""
    for path in files(directory or audit_dir()):
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                yield path, number, raw.rstrip(b"\n")


class Report:
    """What ``verify`` found. ``ok`` unless ``problem`` is set; ``warnings`` are torn lines."""

    def __init__(self) -> None:
        self.records = 0
        self.problem: str | None = None
        self.where: tuple[str, int] | None = None
        self.warnings: list[str] = []

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "problem": self.problem,
                "file": self.where[0] if self.where else None,
                "line": self.where[1] if self.where else None, "warnings": self.warnings}


def verify(directory: str | None = None) -> Report:
    """Check the whole chain; name the first record edited, removed or reordered."""
    import json

    directory = directory or audit_dir()
    report = Report()
    prev_hash = GENESIS
    expected = 1
    seen: dict[int, str] = {}
    prev_where: tuple[str, int] | None = None
    torn: tuple[str, int, str, str] | None = None  # a torn line no record has vouched for yet
    vouching = False  # a record of the format that vouches for torn lines was seen
    for path, number, line in read_records(directory):
        name = f"{os.path.basename(path)} line {number}"
        if not line:
            continue
        if not _whole(line):
            if _torn(line):
                if torn is not None:
                    if vouching:
                        return _unvouched(report, torn)
                    report.warnings.append(_older(torn))
                torn = (path, number, name, sha256_hex(line))
                continue
            return _fail(report, path, number,
                         f"{name} is not a ringfence record (edited or inserted)")
        try:
            rec = json.loads(line)
            seq = int(rec["seq"])
            prev = str(rec["prev"])
        except (ValueError, KeyError, TypeError):
            return _fail(report, path, number, f"{name} is not valid JSON (edited)")
        if torn is not None:
            # a crash's torn line is closed by the next writer, whose record names its hash;
            # one no record names was put there afterwards (or, before any record of the
            # vouching format, closed by an older ringfence, which did not say so)
            if rec.get("torn") == torn[3]:
                report.warnings.append(f"{torn[2]}: a torn record (a crash while writing), "
                                       "closed by the record after it; the chain continues "
                                       "from the record before it")
            elif vouching:
                return _unvouched(report, torn)
            else:
                report.warnings.append(_older(torn))
            torn = None
        if "v" in rec:
            vouching = True
        if seq > expected:
            missing = f"record {expected}" if seq == expected + 1 else \
                f"records {expected}-{seq - 1}"
            return _fail(report, path, number,
                         f"{missing} missing before {name} (removed, or records reordered)")
        if seq < expected:
            return _fail(report, path, number,
                         f"record {seq} at {name} is out of order (records reordered or copied)")
        if prev != prev_hash:
            before = f"record {seq - 1}" + (
                f" ({os.path.basename(prev_where[0])} line {prev_where[1]})" if prev_where else "")
            return _fail(report, path, number,
                         f"{before} was edited: record {seq} at {name} holds a different hash "
                         "for it")
        prev_hash = sha256_hex(line)
        seen[seq] = prev_hash
        prev_where = (path, number)
        expected = seq + 1
        report.records += 1
    if torn is not None:  # the last line: a crash while writing, nobody has written since
        report.warnings.append(f"{torn[2]}: a torn record (a crash while writing); the chain "
                               "continues from the record before it")
    head = _read_head(directory)
    if head is not None:
        head_seq, head_hash = head
        if head_seq >= expected:
            what = f"record {head_seq}" if head_seq == expected else \
                f"records {expected}-{head_seq}"
            where = prev_where or (os.path.join(directory, ACTIVE), 0)
            return _fail(report, where[0], where[1],
                         f"{what} missing at the end (the log was cut off); the last record "
                         f"left is {expected - 1}")
        if seen.get(head_seq) not in (None, head_hash):
            return _fail(report, prev_where[0] if prev_where else directory, 0,
                         f"record {head_seq} was edited (its hash differs from the head's)")
    elif report.records:
        report.warnings.append("the head file is missing; records cut off the end would go "
                               "unnoticed")
    return report


def _torn(line: bytes) -> bool:
    """The start of a record cut short: a prefix of ``{"seq":...`` that is not valid JSON."""
    import json

    if not (line.startswith(b'{"seq":') or b'{"seq":'.startswith(line)):
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def _older(torn: tuple[str, int, str, str]) -> str:
    return (f"{torn[2]}: a torn record (a crash while writing) in the part of the log an older "
            "ringfence wrote, which closed such lines without saying so: it cannot be told "
            "from a line inserted there later; the chain continues from the record before it")


def _unvouched(report: Report, torn: tuple[str, int, str, str]) -> Report:
    return _fail(report, torn[0], torn[1],
                 f"{torn[2]} looks like a torn record, but no record after it says a writer "
                 "closed it there (a line inserted later; or two crashes in a row)")


def _fail(report: Report, path: str, number: int, message: str) -> Report:
    report.problem = message
    report.where = (path, number)
    return report


def _read_head(directory: str) -> tuple[int, str] | None:
    try:
        # bytes.decode("ascii") has no codec to import (open(encoding="ascii") costs ~0.2 ms)
        with open(os.path.join(directory, "head"), "rb") as fh:
            seq, digest = fh.read().decode("ascii").split()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return None
        return int(seq), digest
    except (OSError, ValueError):
        return None
