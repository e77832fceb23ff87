"""``[limits] cpu_percent``: a hard CPU cap on the whole tree (1-100). Checked like every key;
a project may only lower it."""

from __future__ import annotations

import pytest

from ringfence.errors import PolicyError
from ringfence.policy.model import Limits
from tests.policy.test_load import Env


def test_accepted_and_layered(env: Env) -> None:
    env.write_user("[limits]\ncpu_percent = 50\n")
    assert env.resolve().limits.cpu_percent == 50
    env.write_project("[limits]\ncpu_percent = 25\n")  # narrower: fine
    assert env.resolve().limits.cpu_percent == 25
    assert Limits().cpu_percent is None
    assert Limits(cpu_percent=80).narrowed_by(Limits(cpu_percent=20)).cpu_percent == 20


@pytest.mark.parametrize("value", ["0", "101", "-5", '"50"', "true", "2.5", "[50]"])
def test_wrong_values_are_one_line_errors(env: Env, value: str) -> None:
    path = env.write_user(f"[limits]\ncpu_percent = {value}\n")
    with pytest.raises(PolicyError) as info:
        env.resolve()
    message = str(info.value)
    assert str(path) in message and "cpu_percent" in message and "1 to 100" in message
    assert "\n" not in message


def test_none_means_no_cap(env: Env) -> None:
    env.write_user('[limits]\ncpu_percent = "none"\n')
    assert env.resolve().limits.cpu_percent is None


@pytest.mark.parametrize("project", ["cpu_percent = 90", 'cpu_percent = "none"'])
def test_a_project_may_not_raise_or_remove_the_cap(env: Env, project: str) -> None:
    env.write_user("[limits]\ncpu_percent = 50\n")
    env.write_project(f"[limits]\n{project}\n")
    with pytest.raises(PolicyError, match=r"limits\.cpu_percent"):
        env.resolve()


def test_misspelt_key_is_refused(env: Env) -> None:
    env.write_user("[limits]\ncpu_precent = 50\n")
    with pytest.raises(PolicyError, match="cpu_precent"):
        env.resolve()
