"""The run's audit record is written on another thread while the sandbox's placeholders are
taken down (backends.linux.close_beside): both are done when it returns, and the record's
error reaches the caller after the teardown."""

from __future__ import annotations

import sys
import threading

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the Linux backend")


class _Prep:
    def __init__(self) -> None:
        self.closed_on: list[int] = []

    def close(self) -> None:
        self.closed_on.append(threading.get_ident())


def test_both_done_and_on_two_threads() -> None:
    from ringfence.backends.linux import close_beside

    prep = _Prep()
    worked_on: list[int] = []
    close_beside(prep, lambda: worked_on.append(threading.get_ident()))  # type: ignore[arg-type]
    assert prep.closed_on == [threading.get_ident()]
    assert len(worked_on) == 1 and worked_on[0] != threading.get_ident()


def test_the_records_error_is_raised_after_the_teardown() -> None:
    from ringfence.backends.linux import close_beside
    from ringfence.errors import UnavailableError

    prep = _Prep()

    def fails() -> None:
        raise UnavailableError("cannot write the audit log")

    with pytest.raises(UnavailableError, match="audit log"):
        close_beside(prep, fails)  # type: ignore[arg-type]
    assert len(prep.closed_on) == 1


def test_without_work_it_only_closes() -> None:
    from ringfence.backends.linux import close_beside

    prep = _Prep()
    close_beside(prep, None)  # type: ignore[arg-type]
    assert prep.closed_on == [threading.get_ident()]
