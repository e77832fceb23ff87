"""The proxy's small event loop: readiness, deadlines, threads, cancellation, cross-thread calls."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from ringfence.network import _loop


def run_loop() -> tuple[_loop.Loop, threading.Thread]:
    loop = _loop.Loop()
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return loop, thread


def in_loop(loop: _loop.Loop, gen_factory: Any) -> _loop.Task:
    box: list[_loop.Task] = []
    ready = threading.Event()

    def spawn() -> None:
        box.append(loop.spawn(gen_factory()))
        ready.set()

    loop.call_soon_threadsafe(spawn)
    assert ready.wait(5)
    return box[0]


def wait_done(task: _loop.Task, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not task.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert task.done


@pytest.mark.parametrize("poller", ["default", "selectors"])
def test_recv_deadline_thread_and_cancel(poller: str, monkeypatch: Any) -> None:
    """Readiness, deadlines, threads and cancelling, with the loop's own poller (epoll on
    Linux) and with ``selectors``, which it waits with where there is no epoll (macOS,
    Windows; run here on Linux too)."""
    if poller == "selectors":
        monkeypatch.setattr(_loop, "_poller", _loop._Selector)
    loop, thread = run_loop()
    if poller == "selectors":
        assert isinstance(loop.sel, _loop._Selector)
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        def reader() -> Any:
            data = yield from _loop.recv(a, 10)
            return data

        task = in_loop(loop, reader)
        b.sendall(b"hello")
        wait_done(task)
        assert task.result == b"hello"

        def slow() -> Any:
            yield ("deadline", 0.1)
            yield from _loop.recv(a, 10)  # nothing comes

        task = in_loop(loop, slow)
        wait_done(task)
        assert isinstance(task.error, TimeoutError)

        def threaded() -> Any:
            return (yield ("thread", lambda: 6 * 7))

        task = in_loop(loop, threaded)
        wait_done(task)
        assert task.result == 42

        def forever() -> Any:
            yield from _loop.recv(a, 10)

        task = in_loop(loop, forever)
        loop.call_soon_threadsafe(task.cancel)
        wait_done(task)
        assert isinstance(task.error, _loop.Cancelled)
        assert a.fileno() not in loop.handlers  # no stale interest left behind
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        a.close()
        b.close()


def test_a_job_whose_task_moved_on_is_dropped() -> None:
    """A lookup queued behind busy workers whose connection then timed out or was cancelled
    used to run anyway (a DNS query nobody waits for, a worker held). Now a worker that takes
    a job whose task has moved on drops it without calling it."""
    loop, thread = run_loop()
    gate = threading.Event()
    ran: list[str] = []

    def job(name: str) -> Any:
        def fn() -> str:
            ran.append(name)
            if name.startswith("hold"):
                gate.wait(10)
            return name
        return fn

    def waiter(name: str, deadline: float | None) -> Any:
        def gen() -> _loop.Gen:
            yield ("deadline", deadline)
            try:
                return (yield ("thread", job(name), "group"))
            except TimeoutError:
                return "timed out"
        return gen

    try:
        holders = [in_loop(loop, waiter(f"hold{i}", None)) for i in range(_loop.MAX_RUNNING)]
        deadline = time.monotonic() + 5
        while len(ran) < _loop.MAX_RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        late = in_loop(loop, waiter("late", 0.2))  # queued: every worker of its group is busy
        cancelled = in_loop(loop, waiter("cancelled", None))
        wait_done(late)
        assert late.result == "timed out"
        loop.call_soon_threadsafe(cancelled.cancel)
        wait_done(cancelled)
        gate.set()
        for task in holders:
            wait_done(task)
        time.sleep(0.2)
        assert sorted(ran) == sorted(f"hold{i}" for i in range(_loop.MAX_RUNNING))
    finally:
        gate.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_jobs_past_the_bound_wait_and_are_dropped_when_their_task_moves_on(
        monkeypatch: Any) -> None:
    """Past MAX_PENDING jobs of a group, a job used to fail at once (``Busy``: a 502 for a
    burst of connections). It now waits aside and runs when one of its group's is done; one
    whose task moves on (timed out) while it waits is taken out and never runs, and the
    group's count of jobs is right again afterwards."""
    monkeypatch.setattr(_loop, "MAX_PENDING", 2)
    loop, thread = run_loop()
    gate = threading.Event()
    ran: list[str] = []

    def waiter(name: str, deadline: float | None) -> Any:
        def fn() -> str:
            ran.append(name)
            if name.startswith("hold"):
                gate.wait(10)
            return name

        def gen() -> _loop.Gen:
            yield ("deadline", deadline)
            try:
                return (yield ("thread", fn, "group"))
            except TimeoutError:
                return "timed out"
        return gen

    try:
        holders = [in_loop(loop, waiter(f"hold{i}", None)) for i in range(2)]
        deadline = time.monotonic() + 5
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        late = in_loop(loop, waiter("late", 0.2))  # parked: two of its group already
        parked = in_loop(loop, waiter("parked", None))
        wait_done(late)
        assert late.result == "timed out" and not parked.done
        assert len(loop.parked["group"]) == 1
        gate.set()
        for task in [*holders, parked]:
            wait_done(task)
        assert parked.result == "parked" and "late" not in ran
        deadline = time.monotonic() + 5  # a worker counts its job done after handing it back
        while loop.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loop.pending == {} and loop.parked == {} and loop.jobs == {}
    finally:
        gate.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_epoll_reports_what_epoll_selector_reports() -> None:
    """The loop's own epoll wrapper (no ``selectors`` at start-up) reports what
    ``selectors.EpollSelector`` reports: readiness masked by what was asked, a peer's hang-up
    as readable and writable, nothing for a descriptor not registered; unregistering one that
    is already closed is no error."""
    import selectors
    import sys

    if sys.platform != "linux":
        return
    ours, ref = _loop._Epoll(), selectors.EpollSelector()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        (a, b), (c, d), (e, _f) = pairs
        b.sendall(b"x")  # a: readable and writable
        d.close()  # c: its peer hung up
        for sock, mask in ((a, 3), (c, 1), (e, 2)):
            ours.register(sock.fileno(), mask)
            ref.register(sock.fileno(), mask)
        for sock, mask in ((a, 1), (c, 3)):
            ours.modify(sock.fileno(), mask)
            ref.modify(sock.fileno(), mask)

        def same() -> None:
            got = sorted(ours.select(0))
            want = sorted((key.fd, events) for key, events in ref.select(0))
            assert got == want and got, (got, want)

        same()
        ours.unregister(a.fileno())
        ref.unregister(a.fileno())
        same()
        assert not ours.registered(a.fileno()) and ours.registered(c.fileno())
        fd = e.fileno()
        e.close()
        ours.unregister(fd)  # closed: as selectors, no error
        ref.unregister(fd)
        same()
        start = time.monotonic()
        ours.unregister(c.fileno())
        assert ours.select(0.0101) == []  # rounded up to whole milliseconds, not down
        assert time.monotonic() - start >= 0.0101
    finally:
        ours.close()
        ref.close()
        for x, y in pairs:
            x.close()
            y.close()


def test_threads_without_threading_and_no_threading_import() -> None:
    """In a process that has not imported ``threading`` (the ``ringfence`` command), the
    proxy's threads are ``_thread``'s, with ``is_alive`` and ``join``, and neither they, the
    lookup pool nor a proxy warning import ``threading`` (or ``logging``, which imports it):
    the thread that imports ``threading`` first becomes the process's main thread for it."""
    import subprocess
    import sys

    code = """if True:
        import sys, time
        from ringfence.network import _loop, proxy
        assert "threading" not in sys.modules
        gate = __import__("_thread").allocate_lock()
        gate.acquire()
        t = _loop.start_thread(gate.acquire, "x")
        assert type(t).__name__ == "_Thread" and t.is_alive()
        t.join(0.05)
        assert t.is_alive()
        gate.release()
        t.join(5)
        assert not t.is_alive()
        loop = _loop.Loop()
        runner = _loop.start_thread(loop.run, "loop")
        done = []
        def job():
            done.append((yield ("thread", lambda: 6 * 7)))
            proxy._warn("ringfence proxy: a warning %s", done[0])
        loop.call_soon_threadsafe(lambda: loop.spawn(job()))
        deadline = time.monotonic() + 5
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
        assert done == [42], done
        leaked = {"threading", "logging"} & set(sys.modules)
        assert not leaked, leaked
        print("ok")
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    assert proc.stderr == "ringfence proxy: a warning 42\n"
