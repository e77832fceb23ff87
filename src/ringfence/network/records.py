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

A session's commands share one log: ``mark()`` when a command starts, ``since(mark)`` when it
ends gives the records made meanwhile (the folded ones with the counts added meanwhile).
Appended in the proxy's thread, read from others: a lock keeps each read consistent.
"""

from __future__ import annotations

import threading

from ..policy.model import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any, ClassVar

    Key = tuple[str, int, bool, str]
    Mark = tuple[int, dict[Key, tuple[int, int, int, float]]]

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

    __slots__ = ("kept", "folded", "lock")

    def __init__(self) -> None:
        self.kept: list[Connection] = []
        self.folded: dict[Key, Connection] = {}
        self.lock = threading.Lock()

    def add(self, conn: Connection) -> None:
        with self.lock:
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

    def mark(self) -> Mark:
        with self.lock:
            return len(self.kept), {k: (c.count, c.sent, c.received, c.duration)
                                    for k, c in self.folded.items()}

    def since(self, mark: Mark) -> list[Connection]:
        """The records made after ``mark()`` returned ``mark``."""
        start, counts = mark
        with self.lock:
            out = self.kept[start:]
            for key, conn in self.folded.items():
                count, sent, received, duration = counts.get(key, (0, 0, 0, 0.0))
                if conn.count > count:
                    out.append(conn.replace(
                        count=conn.count - count, sent=conn.sent - sent,
                        received=conn.received - received,
                        duration=round(max(0.0, conn.duration - duration), 6)))
            return out

    def __len__(self) -> int:
        with self.lock:
            return len(self.kept) + len(self.folded)

    def __getitem__(self, index: int) -> Connection:
        return self.entries()[index]

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.entries())
