"""``[network] unix_sockets = false`` / ``--no-unix-sockets``: the command may not create unix
sockets. Checked like every key; a project may turn them off, never back on."""

from __future__ import annotations

import sys

import pytest

from ringfence.errors import PolicyError
from ringfence.plan import plan_linux
from ringfence.policy.model import Policy
from ringfence.runner import unenforceable
from tests.policy.test_load import Env
from tests.test_plan import facts, policy


def test_on_by_default_and_off_by_any_layer(env: Env) -> None:
    assert env.resolve().unix_sockets is True
    env.write_project("[network]\nunix_sockets = false\n")  # a project may narrow
    assert env.resolve().unix_sockets is False


def test_command_line_turns_them_off(env: Env) -> None:
    assert env.resolve(unix_sockets=False).unix_sockets is False


def test_a_project_may_not_turn_them_back_on(env: Env) -> None:
    env.write_user("[network]\nunix_sockets = false\n")
    env.write_project("[network]\nunix_sockets = true\n")
    with pytest.raises(PolicyError, match="unix_sockets = true widens the policy"):
        env.resolve()


def test_wrong_type_is_one_line_error(env: Env) -> None:
    path = env.write_user('[network]\nunix_sockets = "no"\n')
    with pytest.raises(PolicyError) as info:
        env.resolve()
    assert str(path) in str(info.value) and "unix_sockets" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_ssh_agent_needs_them() -> None:
    with pytest.raises(PolicyError, match="drop one of the two"):
        Policy(workspace="/w", network="on", ssh_agent=True, unix_sockets=False)


@pytest.mark.parametrize("network", ["off", "allowlist", "on"])
def test_the_plan_refuses_unix_sockets_with_seccomp(network: str) -> None:
    off = plan_linux(policy(network=network, unix_sockets=False), ["true"], facts())
    assert off.seccomp == (network == "off", True)
    assert "no unix sockets (socketpair only)" in off.layers
    on = plan_linux(policy(network=network), ["true"], facts())
    assert on.seccomp == (network == "off", False)


def test_refused_where_it_is_not_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    pol = Policy(workspace="/w", network="on", unix_sockets=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "not enforced on macOS with the network on" in (unenforceable(pol) or "")
    assert unenforceable(pol.replace(network="off")) is None  # Seatbelt refuses them there
    monkeypatch.setattr(sys, "platform", "win32")
    assert "not enforced on Windows" in (unenforceable(pol) or "")


def test_the_windows_run_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Windows entry point (which does not go through ``make_plan``) refuses it too,
    before it looks at the host: fail closed, not a sandbox that lets host sockets through."""
    from ringfence.errors import UnavailableError
    from ringfence.windows.run import run_windows

    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(UnavailableError, match="not enforced on Windows"):
        run_windows(Policy(workspace="/w", unix_sockets=False), ["cmd"])
