"""A small event loop for the proxy: epoll (or ``selectors``), timers and generator tasks.

``asyncio`` would do, but importing it costs 30-100 ms, and the allowlist mode starts a proxy
for every ``ringfence run``. Even ``selectors`` and ``socket`` (which import ``enum`` and
``collections``) cost ~8 ms there: on Linux the loop waits with ``select.epoll`` itself, as
``selectors.EpollSelector`` would, and its sockets are ``_socket``'s (``selectors`` elsewhere,
imported when a loop is made). A task is a generator that yields what it waits for:

- ``("read", fd)`` / ``("write", fd)``: until the descriptor is ready;
- ``("thread", fn, group)``: ``fn()`` runs in a worker thread; its result (or exception) comes
  back. Jobs wait in one queue per ``group`` (a run), served in turn, and a group runs at most
  ``MAX_RUNNING`` at once, so one group's slow jobs do not hold up another's; a group has at
  most ``MAX_PENDING`` jobs queued or running, and its further jobs wait aside (parked, in
  order) until one of those is done: the task just waits longer (its deadline still counts).
  A job whose task moves on (timed out, cancelled) before a worker takes it is dropped;
- ``("wait", event)``: until ``event.set()`` (an ``Event`` of this module, set in the loop);
- ``("deadline", seconds_or_None)``: from now on, ``TimeoutError`` is thrown into the task
  when the deadline passes (returns at once).

``Cancelled`` is thrown into a task that is cancelled. Callbacks (``add_reader`` …) are for code
that is easier as a state machine (the splice relay). Only ``call_soon_threadsafe`` may be
called from other threads.
"""

from __future__ import annotations

import _socket
import _thread
import os
import sys
import time
from _heapq import heappop, heappush

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections import deque
    from collections.abc import Callable, Generator
    from typing import Any

    Gen = Generator[Any, Any, Any]
else:
    from _collections import deque  # the same type; `collections` costs ~1-2 ms to import

MAX_WORKERS = 16  # threads for blocking work (name lookups), started as needed
MAX_PENDING = 32  # jobs one group (a run) may have queued or running at once; more wait aside
MAX_RUNNING = MAX_WORKERS // 2  # workers one group may hold while another group's jobs wait
EVENT_READ = 1  # EVENT_READ
EVENT_WRITE = 2  # EVENT_WRITE


class Cancelled(BaseException):
    """Thrown into a task by ``Task.cancel()``."""


_ANY = "any"  # the group of jobs that name none


class Event:
    __slots__ = ("is_set", "waiters")

    def __init__(self) -> None:
        self.is_set = False
        self.waiters: list[Task] = []

    def set(self) -> None:
        if self.is_set:
            return
        self.is_set = True
        waiters, self.waiters = self.waiters, []
        for task in waiters:
            task.loop._resume(task, None, None)


class Task:
    __slots__ = ("loop", "gen", "done", "result", "error", "callbacks", "deadline", "timer",
                 "waiting_fd", "waiting_event", "token", "job")

    def __init__(self, loop: Loop, gen: Gen) -> None:
        self.loop = loop
        self.gen = gen
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.callbacks: list[Callable[[Task], None]] = []
        self.deadline: list[Any] | None = None  # the timer entry
        self.waiting_fd: tuple[int, int] | None = None  # (fd, EVENT_READ|EVENT_WRITE)
        self.waiting_event: Event | None = None
        self.token = 0  # bumps on every resume: stale wake-ups are ignored
        self.job: tuple[object, Callable[[], bool]] | None = None  # (group, job) it waits for

    def cancel(self) -> None:
        if not self.done:
            self.loop._resume(self, None, Cancelled())

    def add_done_callback(self, fn: Callable[[Task], None]) -> None:
        if self.done:
            fn(self)
        else:
            self.callbacks.append(fn)


if sys.platform == "linux":
    from select import EPOLLIN, EPOLLOUT, epoll

    class _Epoll:
        """What the loop uses of ``selectors.EpollSelector``, on descriptors: the same calls, the
        same events reported (an error or hang-up counts as both readable and writable, masked by
        what was asked), the same rounding of the timeout."""

        __slots__ = ("epoll", "masks")

        def __init__(self) -> None:
            self.epoll = epoll()
            self.masks: dict[int, int] = {}  # fd -> EVENT_READ | EVENT_WRITE

        @staticmethod
        def _events(mask: int) -> int:
            return (EPOLLIN if mask & EVENT_READ else 0) | (EPOLLOUT if mask & EVENT_WRITE else 0)

        def registered(self, fd: int) -> bool:
            return fd in self.masks

        def register(self, fd: int, mask: int) -> None:
            if fd in self.masks:
                raise KeyError(f"{fd!r} (FD {fd}) is already registered")
            self.masks[fd] = mask
            try:
                self.epoll.register(fd, self._events(mask))
            except BaseException:
                del self.masks[fd]
                raise

        def modify(self, fd: int, mask: int) -> None:
            if mask != self.masks[fd]:
                try:
                    self.epoll.modify(fd, self._events(mask))
                except BaseException:
                    del self.masks[fd]
                    raise
                self.masks[fd] = mask

        def unregister(self, fd: int) -> None:
            del self.masks[fd]
            try:
                self.epoll.unregister(fd)
            except OSError:  # closed already (selectors ignores it too)
                pass

        def select(self, timeout: float | None) -> list[tuple[int, int]]:
            if timeout is None:
                wait = -1.0
            elif timeout <= 0:
                wait = 0.0
            else:  # epoll_wait counts milliseconds: round up, to wait at least ``timeout``
                wait = -(-timeout * 1e3 // 1) * 1e-3
            try:
                found = self.epoll.poll(wait, max(len(self.masks), 1))
            except InterruptedError:
                return []
            ready = []
            for fd, event in found:
                mask = self.masks.get(fd)
                if mask is not None:
                    ready.append((fd, ((EVENT_WRITE if event & ~EPOLLIN else 0)
                                       | (EVENT_READ if event & ~EPOLLOUT else 0)) & mask))
            return ready

        def close(self) -> None:
            self.epoll.close()
            self.masks.clear()


class _Selector:
    """The same calls over ``selectors.DefaultSelector`` (macOS, Windows)."""

    __slots__ = ("sel",)

    def __init__(self) -> None:
        import selectors

        self.sel = selectors.DefaultSelector()

    def registered(self, fd: int) -> bool:
        try:
            self.sel.get_key(fd)
        except KeyError:
            return False
        return True

    def register(self, fd: int, mask: int) -> None:
        self.sel.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self.sel.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self.sel.unregister(fd)

    def select(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(key.fd, mask) for key, mask in self.sel.select(timeout)]

    def close(self) -> None:
        self.sel.close()


if TYPE_CHECKING:
    if sys.platform == "linux":
        _Poller = _Epoll | _Selector
    else:
        _Poller = _Selector


def _poller() -> _Poller:
    if sys.platform == "linux":
        return _Epoll()
    return _Selector()


def _socketpair() -> tuple[_socket.socket, _socket.socket]:
    if sys.platform == "win32":  # no socketpair in _socket: socket's emulates it
        import socket

        return socket.socketpair()
    return _socket.socketpair()


class _Thread:
    """A daemon thread of ``_thread``'s, with ``threading.Thread``'s ``is_alive`` and ``join``."""

    __slots__ = ("name", "running")

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self.name = name
        self.running = _thread.allocate_lock()  # held while the thread runs
        self.running.acquire()

        def run() -> None:
            try:
                target()
            finally:
                self.running.release()

        try:
            _thread.start_new_thread(run, ())
        except BaseException:
            self.running.release()
            raise

    def is_alive(self) -> bool:
        return self.running.locked()

    def join(self, timeout: float | None = None) -> None:
        if self.running.acquire(True, -1 if timeout is None else timeout):
            self.running.release()


def start_thread(target: Callable[[], None], name: str) -> threading.Thread | _Thread:
    """A daemon thread: ``threading``'s when that is imported already, else ``_thread``'s.
    ``threading`` is never imported for it: it costs ~3 ms a run (with ``functools`` and
    ``collections``), and when the proxy's thread would be the first to import it, that thread
    would be the process's ``threading.main_thread()`` from then on."""
    if "threading" in sys.modules:
        import threading

        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread
    return _Thread(target, name)


class _Condition:
    """``threading.Condition`` over ``lock``, as far as the worker pool uses it (``wait``,
    ``notify``, ``notify_all``; called with ``lock`` held), without ``threading``."""

    __slots__ = ("lock", "waiters")

    def __init__(self, lock: _thread.LockType) -> None:
        self.lock = lock
        self.waiters: deque[_thread.LockType] = deque()

    def wait(self) -> None:
        waiter = _thread.allocate_lock()
        waiter.acquire()
        self.waiters.append(waiter)
        self.lock.release()
        try:
            waiter.acquire()  # until a notify releases it
        finally:
            self.lock.acquire()

    def notify(self) -> None:
        if self.waiters:
            self.waiters.popleft().release()

    def notify_all(self) -> None:
        while self.waiters:
            self.waiters.popleft().release()


def _start_thread(target: Callable[[], None], name: str) -> None:
    start_thread(target, name)


class Loop:
    def __init__(self) -> None:
        self.sel = _poller()
        self.ready: deque[tuple[Task, Any, BaseException | None, int]] = deque()
        self.timers: list[list[Any]] = []  # [when, seq, callback, cancelled]
        self.seq = 0
        self.calls: deque[Callable[[], None]] = deque()
        self.lock = _thread.allocate_lock()
        self.wake_r, self.wake_w = _socketpair()  # call_soon_threadsafe wakes the loop
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.handlers: dict[int, list[Callable[[], None] | None]] = {}
        self.sel.register(self.wake_r.fileno(), EVENT_READ)
        self.running = False
        self.tasks: set[Task] = set()
        # blocking work ("thread" requests: name lookups) runs on at most MAX_WORKERS threads:
        # a client cannot make the proxy start threads without bound (and fail when the user's
        # process limit is reached, which the sandbox's own threads count against)
        self.jobs: dict[object, deque[Callable[[], bool]]] = {}  # per group, served in turn
        self.pending: dict[object, int] = {}  # per group: jobs queued or running
        self.parked: dict[object, deque[Callable[[], bool]]] = {}  # per group: past MAX_PENDING
        self.busy: dict[object, int] = {}  # per group: jobs running
        self.jobs_ready = _Condition(self.lock)
        self.workers = 0
        self.idle = 0
        self.errors = 0  # callbacks that raised (the loop goes on; see run)
        self.closed = False
        self.big_pipes = 0  # relay pipes enlarged past the default (proxy._Pump), at most 16

    # -- descriptors ----------------------------------------------------------------------

    def _update(self, fd: int) -> None:
        reader, writer = self.handlers.get(fd, [None, None])
        mask = (EVENT_READ if reader else 0) | (EVENT_WRITE if writer else 0)
        registered = self.sel.registered(fd)
        if mask == 0:
            self.handlers.pop(fd, None)
            if registered:
                self.sel.unregister(fd)
        elif registered:
            self.sel.modify(fd, mask)
        else:
            self.sel.register(fd, mask)

    def add_reader(self, fd: int, cb: Callable[[], None]) -> None:
        self.handlers.setdefault(fd, [None, None])[0] = cb
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if fd in self.handlers:
            self.handlers[fd][0] = None
            self._update(fd)

    def add_writer(self, fd: int, cb: Callable[[], None]) -> None:
        self.handlers.setdefault(fd, [None, None])[1] = cb
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if fd in self.handlers:
            self.handlers[fd][1] = None
            self._update(fd)

    # -- time ------------------------------------------------------------------------------

    def call_later(self, delay: float, cb: Callable[[], None]) -> list[Any]:
        self.seq += 1
        entry = [time.monotonic() + delay, self.seq, cb, False]
        heappush(self.timers, entry)
        return entry

    @staticmethod
    def cancel_timer(entry: list[Any] | None) -> None:
        if entry is not None:
            entry[3] = True

    def call_soon_threadsafe(self, cb: Callable[[], None]) -> None:
        with self.lock:
            self.calls.append(cb)
        try:
            self.wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already awake

    # -- tasks -----------------------------------------------------------------------------

    def spawn(self, gen: Gen) -> Task:
        task = Task(self, gen)
        self.tasks.add(task)
        self._resume(task, None, None)
        return task

    def _resume(self, task: Task, value: Any, exc: BaseException | None) -> None:
        """Schedule ``task`` to continue with ``value`` (or ``exc`` thrown in)."""
        if task.done:
            return
        self._unwait(task)
        task.token += 1
        self.ready.append((task, value, exc, task.token))

    def _unwait(self, task: Task) -> None:
        if task.waiting_fd is not None:
            fd, kind = task.waiting_fd
            (self.remove_reader if kind == EVENT_READ else self.remove_writer)(fd)
            task.waiting_fd = None
        if task.waiting_event is not None:
            if task in task.waiting_event.waiters:
                task.waiting_event.waiters.remove(task)
            task.waiting_event = None
        if task.job is not None:  # it moved on before its job ran: take the job out
            group, job = task.job
            task.job = None
            with self.lock:
                for jobs, queued in ((self.jobs, True), (self.parked, False)):
                    queue = jobs.get(group)
                    if queue is not None and job in queue:
                        queue.remove(job)
                        if not queue:
                            del jobs[group]
                        if queued:
                            self._done(group)
                        break

    def _step(self, task: Task, value: Any, exc: BaseException | None) -> None:
        while True:
            try:
                request = task.gen.throw(exc) if exc is not None else task.gen.send(value)
            except StopIteration as stop:
                self._finish(task, stop.value, None)
                return
            except BaseException as error:  # the task's own problem; it ends here
                self._finish(task, None, error)
                return
            value, exc = None, None
            kind, arg = request[0], request[1]
            if kind == "deadline":
                self.cancel_timer(task.deadline)
                task.deadline = None
                if arg is not None:
                    def expire(t: Task = task) -> None:
                        self._resume(t, None, TimeoutError("timed out"))

                    task.deadline = self.call_later(arg, expire)
                continue
            if kind in ("read", "write"):
                mask = EVENT_READ if kind == "read" else EVENT_WRITE
                token = task.token

                def ready(t: Task = task, tok: int = token) -> None:
                    if t.token == tok:
                        self._resume(t, None, None)

                task.waiting_fd = (arg, mask)
                (self.add_reader if kind == "read" else self.add_writer)(arg, ready)
                return
            if kind == "wait":
                if arg.is_set:
                    continue
                task.waiting_event = arg
                arg.waiters.append(task)
                return
            if kind == "thread":
                token = task.token

                def work(t: Task = task, fn: Callable[[], Any] = arg, tok: int = token) -> bool:
                    if t.done or t.token != tok:  # its task moved on while it waited: drop it
                        return False
                    try:
                        out, err = fn(), None
                    except BaseException as e:
                        out, err = None, e

                    def back() -> None:
                        if t.token == tok:
                            self._resume(t, out, err)

                    self.call_soon_threadsafe(back)
                    return True

                group = request[2] if len(request) > 2 else _ANY
                try:
                    self._submit(work, group)
                except RuntimeError as error:  # no thread could be started
                    exc = error
                    continue
                task.job = (group, work)
                return
            exc = RuntimeError(f"unknown request {kind!r}")

    def _submit(self, job: Callable[[], bool], group: object) -> None:
        with self.lock:
            pending = self.pending.get(group, 0)
            if pending >= MAX_PENDING:  # it waits aside until one of its group's is done
                self.parked.setdefault(group, deque()).append(job)
                return
            self.pending[group] = pending + 1
            self.jobs.setdefault(group, deque()).append(job)
            # another thread only if the idle ones are fewer than the jobs that may run now
            runnable = sum(min(len(queue), MAX_RUNNING - self.busy.get(g, 0))
                           for g, queue in self.jobs.items())
            start = self.workers < MAX_WORKERS and self.idle < runnable
            if start:
                self.workers += 1
            self.jobs_ready.notify()
        if start:
            try:
                _start_thread(self._worker, "ringfence-proxy-lookup")
            except RuntimeError:
                with self.lock:
                    self.workers -= 1
                    if self.workers == 0:  # nobody will ever run it
                        queue = self.jobs.get(group)
                        if queue is not None and job in queue:
                            queue.remove(job)
                            if not queue:
                                del self.jobs[group]
                            self._done(group)
                        raise

    def _worker(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
                while (group := self._next_group()) is None and not self.closed:
                    self.jobs_ready.wait()
                self.idle -= 1
                if group is None:  # closed: the pool ends with its loop
                    self.workers -= 1
                    return
                queue = self.jobs.pop(group)
                job = queue.popleft()
                if queue:
                    self.jobs[group] = queue  # to the back of the line
                self.busy[group] = self.busy.get(group, 0) + 1
            try:
                job()
            finally:
                with self.lock:
                    running = self.busy.get(group, 1) - 1
                    if running > 0:
                        self.busy[group] = running
                    else:
                        self.busy.pop(group, None)
                    self._done(group)

    def _next_group(self) -> object | None:
        """The group whose turn it is: served longest ago, below MAX_RUNNING (lock held)."""
        for group in self.jobs:
            if self.busy.get(group, 0) < MAX_RUNNING:
                return group
        return None

    def _done(self, group: object) -> None:
        """One job of ``group`` is over (the lock is held): its first parked job, if any,
        takes the place."""
        left = self.pending.get(group, 1) - 1
        parked = self.parked.get(group)
        if parked:
            job = parked.popleft()
            if not parked:
                del self.parked[group]
            self.jobs.setdefault(group, deque()).append(job)
            left += 1
            self.jobs_ready.notify()
        if left > 0:
            self.pending[group] = left
        else:
            self.pending.pop(group, None)

    def _finish(self, task: Task, result: Any, error: BaseException | None) -> None:
        task.done = True
        task.result, task.error = result, error
        self._unwait(task)
        self.cancel_timer(task.deadline)
        self.tasks.discard(task)
        for cb in task.callbacks:
            cb(task)
        task.callbacks = []

    # -- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop``. A callback that raises is a bug in one connection's handling:
        counted, and the loop goes on serving everyone else."""
        self.running = True
        while self.running:
            try:
                self._run_once()
            except Exception:  # never let one connection end the proxy
                self.errors += 1

    def _run_once(self) -> None:
        timeout: float | None = None
        if self.ready:
            timeout = 0
        elif self.timers:
            timeout = max(0.0, self.timers[0][0] - time.monotonic())
        for fd, mask in self.sel.select(timeout):
            if fd == self.wake_r.fileno():
                try:
                    while self.wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
                continue
            handlers = self.handlers.get(fd)
            if handlers is None:
                continue
            if mask & EVENT_READ and handlers[0] is not None:
                handlers[0]()
            handlers = self.handlers.get(fd)
            if mask & EVENT_WRITE and handlers is not None and handlers[1]:
                handlers[1]()
        with self.lock:
            calls, self.calls = self.calls, deque()
        for cb in calls:
            cb()
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            entry = heappop(self.timers)
            if not entry[3]:
                entry[2]()
        for _ in range(len(self.ready)):
            task, value, exc, token = self.ready.popleft()
            if not task.done and token == task.token:
                self._step(task, value, exc)

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.jobs.clear()
            self.parked.clear()
            self.pending.clear()
            self.busy.clear()
            self.jobs_ready.notify_all()
        self.sel.close()
        self.wake_r.close()
        self.wake_w.close()


# ---------------------------------------------------------------------------------------------
# Socket helpers for tasks (``yield from``).

def recv(sock: Any, n: int) -> Gen:
    while True:
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            yield ("read", sock.fileno())


def sendall(sock: Any, data: bytes) -> Gen:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError):
            yield ("write", sock.fileno())
            continue
        view = view[sent:]


def accept(sock: Any) -> Gen:
    """``(connection, address)``, as ``socket.accept`` makes them (a ``_socket.socket``)."""
    while True:
        try:
            fd, address = sock._accept()
        except (BlockingIOError, InterruptedError):
            yield ("read", sock.fileno())
            continue
        return _socket.socket(sock.family, sock.type, sock.proto, fileno=fd), address


def connect(sock: Any, address: tuple[str, int]) -> Gen:
    import errno

    err = sock.connect_ex(address)
    if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
        yield ("write", sock.fileno())
        err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def sleep(seconds: float) -> Gen:
    event = Event()
    return (yield from _sleep(seconds, event))


def _sleep(seconds: float, event: Event) -> Gen:
    yield ("deadline", seconds)
    try:
        yield ("wait", event)
    except TimeoutError:
        return None
    return None
