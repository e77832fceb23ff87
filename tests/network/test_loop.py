"""The proxy's small event loop: readiness, deadlines, threads, cancellation, cross-thread calls."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

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


def test_recv_deadline_thread_and_cancel() -> None:
    loop, thread = run_loop()
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
