"""What the allowlist proxy keeps of a run's connections: bounded, whatever the command does.

The proxy lives in ringfence's own process, which is never sandboxed, and a command can open
connections as fast as the loop accepts them. So a run keeps:

- the first ``MAX_KEPT`` connections as one ``Connection`` record each;
- past that, one record per (host, port, decision, rule) with ``count`` connections and their
  bytes and seconds summed, for at most ``MAX_FOLDED`` such keys;
- past that, one record per decision (host ``*``, rule ``more``) counting everything else.

With the proxy bounding each record's strings (the host normalised or cut to ~100 characters),
``Result.network``, ``--json``, the MCP denials and the audit log's run record stay bounded:
at most ``MAX_KEPT + MAX_FOLDED + 2`` records of at most a few hundred bytes each.

A session's commands share one proxy listener and so one log, and each command has the same
bound of its own: ``mark()`` when a command starts opens a window, a log of its own that
receives every record added from then on, and ``since(mark)`` when it ends returns that
window's records and closes it (``release(mark)`` closes one unread). So one command's flood
cannot use up the records of the commands after it (commands running at once each see the
others' connections of that time, in their own windows; so what is kept is the bound times
the commands running, plus one for the log itself, which keeps it for the whole session).
Appended in the proxy's thread, read from others: a lock keeps each read consistent.
"""

from __future__ import annotations

import _thread  # not `threading`: it imports functools and collections (~3 ms a run)

from ..policy.model import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any, ClassVar

    Key = tuple[str, int, bool, str]

MAX_KEPT = 1000
"""Connections of one run kept as a record each."""
MAX_FOLDED = 1000
"""Distinct (host, port, decision, rule) keys counted past ``MAX_KEPT``."""
MORE = "more"
"""The rule of the records that count connections past ``MAX_FOLDED`` keys."""


class Connection(Frozen):
    """One connection through the proxy, as it appears in ``Result.network`` and ``--json``;
    ``count`` > 1: that many connections with this host, port, decision and rule, folded into
    one record (``sent``, ``received`` and ``duration`` are their sums)."""

    __slots__ = ("protocol", "host", "port", "allowed", "rule", "reason", "address", "sent",
                 "received", "duration", "count")
    protocol: str
    host: str
    port: int
    allowed: bool
    rule: str
    reason: str
    address: str
    sent: int
    received: int
    duration: float
    count: int
    _defaults: ClassVar[Mapping[str, Any]] = {"count": 1}


class ConnectionLog:
    """One run's (or session's) connection records, bounded (see the module)."""

    __slots__ = ("kept", "folded", "lock", "windows")

    def __init__(self) -> None:
        self.kept: list[Connection] = []
        self.folded: dict[Key, Connection] = {}
        self.lock = _thread.allocate_lock()
        self.windows: list[ConnectionLog] = []  # open marks: each command's own log

    def add(self, conn: Connection) -> None:
        with self.lock:
            for window in self.windows:
                window.add(conn)
            if len(self.kept) < MAX_KEPT:
                self.kept.append(conn)
                return
            key: Key = (conn.host, conn.port, conn.allowed, conn.rule)
            if key not in self.folded and len(self.folded) >= MAX_FOLDED:
                key = ("*", 0, conn.allowed, MORE)
            old = self.folded.get(key)
            if old is None:
                if key[3] == MORE:
                    conn = conn.replace(
                        host="*", port=0, rule=MORE, address="",
                        reason=f"connections to other hosts, counted only: a run keeps "
                               f"{MAX_KEPT} records, then {MAX_FOLDED} hosts' counts")
                self.folded[key] = conn
            else:
                self.folded[key] = old.replace(
                    count=old.count + conn.count, sent=old.sent + conn.sent,
                    received=old.received + conn.received,
                    duration=round(old.duration + conn.duration, 6))

    def entries(self) -> list[Connection]:
        """Every record: the kept ones in order, then the folded ones."""
        with self.lock:
            return self.kept + list(self.folded.values())

    def mark(self) -> ConnectionLog:
        """Open a window: the records added from now on, with a bound of their own (a
        command of a session calls it when it starts)."""
        window = ConnectionLog()
        with self.lock:
            self.windows.append(window)
        return window

    def since(self, mark: ConnectionLog) -> list[Connection]:
        """The records added after ``mark()`` returned ``mark``, up to now; closes it."""
        self.release(mark)
        return mark.entries()

    def release(self, mark: ConnectionLog) -> None:
        """Close a window (its command is over): it receives nothing more."""
        with self.lock:
            if mark in self.windows:
                self.windows.remove(mark)

    def __len__(self) -> int:
        with self.lock:
            return len(self.kept) + len(self.folded)

    def __getitem__(self, index: int) -> Connection:
        return self.entries()[index]

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.entries())
