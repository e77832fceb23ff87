"""The run's audit record is written, then synced on another thread while the sandbox's
placeholders are taken down (backends.linux.close_beside): both are done when it returns, and
an error of either reaches the caller after the teardown."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the Linux backend")


class _Prep:
    def __init__(self) -> None:
        self.closed_on: list[int] = []

    def close(self) -> None:
        self.closed_on.append(threading.get_ident())


def _outcome() -> object:
    from ringfence.backends import Outcome

    return Outcome()


def test_written_here_synced_beside_the_teardown() -> None:
    from ringfence.backends.linux import close_beside

    prep, here = _Prep(), threading.get_ident()
    written_on: list[int] = []
    synced_on: list[int] = []

    def record(outcome: object) -> Callable[[], None]:
        written_on.append(threading.get_ident())
        return lambda: synced_on.append(threading.get_ident())

    close_beside(prep, _outcome(), record)  # type: ignore[arg-type]
    assert prep.closed_on == [here] and written_on == [here]
    assert len(synced_on) == 1 and synced_on[0] != here


@pytest.mark.parametrize("fails", ["write", "sync"])
def test_the_records_error_is_raised_after_the_teardown(fails: str) -> None:
    from ringfence.backends.linux import close_beside
    from ringfence.errors import UnavailableError

    prep = _Prep()

    def broken() -> None:
        raise UnavailableError("cannot write the audit log")

    def record(outcome: object) -> Callable[[], None]:
        if fails == "write":
            broken()
        return broken

    with pytest.raises(UnavailableError, match="audit log"):
        close_beside(prep, _outcome(), record)  # type: ignore[arg-type]
    assert len(prep.closed_on) == 1


def test_without_an_outcome_it_only_closes() -> None:
    from ringfence.backends.linux import close_beside

    prep = _Prep()
    called: list[object] = []
    close_beside(prep, None, called.append)  # type: ignore[arg-type]
    close_beside(prep, _outcome(), None)  # type: ignore[arg-type]
    assert len(prep.closed_on) == 2 and called == []
