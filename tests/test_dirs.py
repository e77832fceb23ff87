"""On Linux ``_dirs`` computes by hand what platformdirs would give; they must agree."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import platformdirs
import pytest

from ringfence import _dirs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

PAIRS: list[tuple[str, Callable[[], str], Callable[..., str]]] = [
    ("XDG_CONFIG_HOME", _dirs.config_dir, platformdirs.user_config_dir),
    ("XDG_STATE_HOME", _dirs.state_dir, platformdirs.user_state_dir),
    ("XDG_CACHE_HOME", _dirs.cache_dir, platformdirs.user_cache_dir),
]
IDS = ["config", "state", "cache"]


@pytest.fixture(autouse=True)
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, _, _ in PAIRS:
        monkeypatch.delenv(var, raising=False)
    return home


def _theirs(fn: Callable[..., str]) -> str:
    return fn("ringfence", appauthor=False)


@pytest.mark.parametrize(("var", "ours", "theirs"), PAIRS, ids=IDS)
def test_unset(var: str, ours: Callable[[], str], theirs: Callable[..., str],
               fake_home: Path) -> None:
    assert ours() == _theirs(theirs)
    assert ours().startswith(str(fake_home) + "/")
    assert ours().endswith("/ringfence")


@pytest.mark.parametrize(("var", "ours", "theirs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("value", ["/xdg/somewhere", "/xdg/with space/ü", "/xdg/trailing/"])
def test_set_absolute(var: str, ours: Callable[[], str], theirs: Callable[..., str],
                      value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(var, value)
    assert ours() == _theirs(theirs)
    assert ours().startswith(value.rstrip("/") + "/")


@pytest.mark.parametrize(("var", "ours", "theirs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("value", ["", "   ", "relative/dir"])
def test_set_but_unusable_falls_back_to_home(var: str, ours: Callable[[], str],
                                             theirs: Callable[..., str], value: str,
                                             fake_home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(var, value)
    assert ours() == _theirs(theirs)
    assert ours().startswith(str(fake_home) + "/")


def test_defaults_are_the_xdg_ones(fake_home: Path) -> None:
    assert _dirs.config_dir() == str(fake_home / ".config" / "ringfence")
    assert _dirs.state_dir() == str(fake_home / ".local" / "state" / "ringfence")
    assert _dirs.cache_dir() == str(fake_home / ".cache" / "ringfence")


def test_the_three_are_independent(monkeypatch: pytest.MonkeyPatch, fake_home: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/st")
    assert _dirs.state_dir() == "/st/ringfence"
    assert _dirs.config_dir() == str(fake_home / ".config" / "ringfence")
    assert _dirs.cache_dir() == str(fake_home / ".cache" / "ringfence")
