"""``ringfence audit show [--since WHEN] [--json]`` and ``ringfence audit verify [--json]``."""

from __future__ import annotations

import sys

from ..errors import PolicyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "usage: ringfence audit show [--since WHEN] [--json] | ringfence audit verify [--json]"


def _since(text: str) -> str:
    """``10m``, ``2h``, ``3d`` ago, or an ISO date/time → the ISO UTC time to compare with."""
    import time

    from .log import iso_time

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = text.strip().lower()
    if raw and raw[-1] in units and raw[:-1].replace(".", "", 1).isdigit():
        return iso_time(time.time() - float(raw[:-1]) * units[raw[-1]])
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PolicyError(f"--since {text!r}: use a duration like 10m, 2h, 3d or a date like "
                          "2026-01-31 or 2026-01-31T12:00") from None
    try:
        if when.tzinfo is None:
            when = when.astimezone()  # local time, as the user typed it
        return iso_time(when.astimezone(UTC).timestamp())
    except (ValueError, OverflowError, OSError):  # year 1 in local time is year 0 in UTC...
        raise PolicyError(f"--since {text!r}: the date is out of range; use a date like "
                          "2026-01-31") from None


def cmd_audit(argv: list[str]) -> int:
    from ..cli import _print_json, parse

    if not argv or argv[0] not in ("show", "verify"):
        raise PolicyError(USAGE)
    args = parse(argv[1:], {"--since"} if argv[0] == "show" else set(), {"--json"})
    if args.command:
        raise PolicyError(USAGE)
    from .log import audit_dir, verify

    if argv[0] == "verify":
        report = verify()
        if "--json" in args.flags:
            data = report.to_json()
            data["directory"] = audit_dir()
            _print_json(data)
        else:
            for warning in report.warnings:
                print(f"warning: {warning}")
            if report.ok:
                print(f"ok: {report.records} records, chain intact ({audit_dir()})")
            else:
                print(f"TAMPERED: {report.problem}")
        return 0 if report.ok else 1
    return _show(args.values.get("--since", [None])[-1], "--json" in args.flags)


def _show(since: str | None, as_json: bool) -> int:
    import json

    from ..approval.gate import command_text
    from ..approval.prompt import visible
    from .log import read_records

    cutoff = _since(since) if since else ""
    if hasattr(sys.stdout, "reconfigure"):
        # a record holding what the terminal's encoding cannot show (a lone surrogate from a
        # library caller) is shown escaped, never a crash that hides every record after it
        sys.stdout.reconfigure(errors="backslashreplace")
    for _path, _number, line in read_records():
        try:
            rec: dict[str, Any] = json.loads(line)
        except ValueError:
            continue  # torn lines: `verify` reports them
        if not isinstance(rec, dict) or str(rec.get("time", "")) < cutoff:
            continue
        if as_json:
            sys.stdout.write(line.decode("ascii", "replace") + "\n")
            continue
        cmd = rec.get("command")
        # argv quoted as a shell would read it: ["rm", "-rf", "a b"] is not "rm -rf a b"
        text = cmd if isinstance(cmd, str) else command_text([str(w) for w in cmd or []])
        if rec.get("kind") == "decision":
            who = rec.get("approved_by") or rec.get("answer") or ""
            what = f"{rec.get('decision')}" + (f" by {who}" if who else "")
            what += f" [{rec.get('rule')}]"
        else:
            what = f"exit {rec.get('exit_code')} in {rec.get('duration')}s ({rec.get('sandbox')})"
            if rec.get("limits_hit"):
                what += f" limits: {','.join(rec['limits_hit'])}"
        print(visible(f"{rec.get('seq'):>6} {rec.get('time')} {rec.get('kind'):8} {what}  "
                      f"{text}"))
    return 0
