"""``ringfence.run()`` / ``ringfence run`` on Windows: the dispatch from the runner, the refusal
when ``ringfence windows setup`` has not run, and full-access (no sandbox user, still the job).
The Windows-only execution is in tests/windows_host."""

from __future__ import annotations

import sys

import pytest

import ringfence
from ringfence.errors import UnavailableError
from ringfence.policy.model import Limits, Policy
from ringfence.windows import run as wrun
from ringfence.windows.plan import JOB_LIMIT
from tests.windows.world import WS, facts_for, skeleton


def _policy(**changes: object) -> Policy:
    values: dict[str, object] = {"workspace": WS, "limits": Limits(memory=1 << 30,
                                                                   max_processes=50,
                                                                   cpu_percent=25)}
    values.update(changes)
    return Policy(**values)


def test_not_set_up_is_refused_naming_the_command() -> None:
    pol = _policy()
    facts = facts_for(skeleton(), pol, sids={}, install_id="")
    with pytest.raises(UnavailableError, match="run ringfence windows setup once"):
        wrun.prepare(pol, ["pytest"], facts)
    plan = wrun.prepare(pol, ["pytest"], facts_for(skeleton(), pol))  # set up: planned
    assert plan.token is not None and plan.user == "ringfence-offline"


def test_full_access_needs_no_setup_and_keeps_the_job_limits() -> None:
    pol = _policy(profile="full-access")
    plan = wrun.prepare(pol, ["pytest"], facts_for(skeleton(), pol, sids={}, install_id=""))
    assert plan.token is None and plan.acls == () and plan.firewall == ()
    job = plan.job
    for name in ("KILL_ON_JOB_CLOSE", "PROCESS_MEMORY", "ACTIVE_PROCESS"):
        assert job.limit_flags & JOB_LIMIT[name], name
    assert (job.process_memory, job.active_processes, job.cpu_rate) == (1 << 30, 50, 2500)
    assert "job object" in plan.layers


def test_a_string_command_runs_through_cmd() -> None:
    assert wrun.windows_command("dir /b") == ("cmd.exe", "/d", "/s", "/c", "dir /b")
    assert wrun.windows_command(["a", "b"]) == ("a", "b")


def test_allowlist_is_refused_on_windows() -> None:
    """Fail closed: the proxy is not wired to the sandbox users, and the online user would
    have the whole network."""
    pol = _policy(network="allowlist")
    with pytest.raises(UnavailableError, match="allowlist is not available on Windows"):
        wrun.prepare(pol, ["pytest"], facts_for(skeleton(), pol))


def test_the_library_dispatches_to_the_windows_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """ringfence.run() on win32 goes to ringfence.windows.run (not the 'no backend' error) and
    fails closed there when setup has not run. (sys.platform is faked; the facts are the
    modelled host's.)"""
    pol = _policy()
    monkeypatch.setattr(wrun, "_facts", lambda p: facts_for(skeleton(), p, sids={},
                                                            install_id=""))
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(UnavailableError, match="ringfence windows setup"):
        ringfence.run(["pytest"], pol, audit=False)
