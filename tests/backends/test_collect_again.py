"""The command line starts its command without cyclic garbage collection (ringfence.__main__)
and turns it back on once the command has started."""

from __future__ import annotations

import gc

from ringfence.backends import collect_again


def test_collection_comes_back_on_without_walking_the_start_up() -> None:
    gc.disable()
    before = gc.get_freeze_count()
    try:
        collect_again()
        assert gc.isenabled()
        assert gc.get_freeze_count() > before  # the start-up's objects, set aside
    finally:
        gc.unfreeze()
        gc.enable()


def test_collection_left_alone_when_it_was_on() -> None:
    assert gc.isenabled()
    before = gc.get_freeze_count()
    collect_again()
    assert gc.isenabled() and gc.get_freeze_count() == before
