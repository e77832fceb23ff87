"""The policy tests' fake user: a home, a config and a state directory of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.test_load import Env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path)
    monkeypatch.setenv("HOME", str(e.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(e.config))
    monkeypatch.setenv("XDG_STATE_HOME", str(e.state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return e
