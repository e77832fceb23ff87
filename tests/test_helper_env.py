"""The helpers' environment (``ringfence._helper_env``): the loader's variables are kept from
the programs ringfence starts outside the sandbox and handed to the command inside."""

from __future__ import annotations

import sys

import pytest

from ringfence._helper_env import helper_env, is_loader_variable, loader_variables


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG",
                                  "LD_DEBUG_OUTPUT", "GCONV_PATH", "GLIBC_TUNABLES",
                                  "MALLOC_TRACE", "LOCPATH", "NLSPATH", "HOSTALIASES"])
def test_loader_variables(name: str) -> None:
    assert is_loader_variable(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OLD_PRELOAD"])
def test_ordinary_variables(name: str) -> None:
    assert not is_loader_variable(name)


def test_split() -> None:
    env = {"PATH": "/bin", "LD_PRELOAD": "/w/evil.so", "HOME": "/h"}
    assert helper_env(env) == {"PATH": "/bin", "HOME": "/h"}
    assert loader_variables(env) == [("LD_PRELOAD", "/w/evil.so")]


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux plan")
def test_bubblewrap_sets_them_inside(tmp_path: object) -> None:
    """The plan hands a policy's LD_PRELOAD to the command through bubblewrap's --setenv (so
    bubblewrap itself can be started without it), in front of the command."""
    import os

    import ringfence
    from ringfence.backends import linux
    from ringfence.runner import make_plan

    ws = os.path.realpath(str(tmp_path))
    policy = ringfence.Policy(workspace=ws, env_set=(("LD_PRELOAD", "/w/evil.so"),),
                              limits=ringfence.Limits(max_processes=0))
    plan = make_plan(policy, ["/bin/true"])
    if plan.mode != "bwrap":
        pytest.skip(f"this host plans the {plan.mode} mode")
    argv = list(plan.argv)
    at = argv.index("--setenv")
    assert argv[at:at + 3] == ["--setenv", "LD_PRELOAD", "/w/evil.so"]
    assert at < argv.index("--")
    assert plan.env["LD_PRELOAD"] == "/w/evil.so"
    assert "LD_PRELOAD" not in linux.helper_environ(plan)
