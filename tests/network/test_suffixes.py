"""Wildcards over a public suffix (``*.co.uk``, ``*.github.io``) are refused when the policy
loads, like ``*.com``: anyone can register a name below a public suffix, so such an entry lets
the command reach sites nobody vetted. The answers come from the Public Suffix List."""

from __future__ import annotations

import marshal
import subprocess
import sys

import pytest

from ringfence.errors import PolicyError
from ringfence.network import suffixes
from ringfence.network.rules import NetworkRules, check_pattern
from ringfence.policy.load import load_policy
from tests.conftest import World

TOO_BROAD = [
    ("*.co.uk", "co.uk"),  # ICANN, two labels
    ("*.com.cn", "com.cn"),
    ("*.github.io", "github.io"),  # the list's private section
    ("*.s3.amazonaws.com", "s3.amazonaws.com"),  # private, three labels
    ("*.abc.ck", "abc.ck"),  # the list's wildcard rule *.ck
    ("*.個人.hk", "xn--gmqw5a.hk"),  # a rule written in Unicode, under an ASCII TLD
    ("*.公司.cn", "xn--55qx5d.cn"),
    ("*.CO.UK.", "co.uk"),  # case and a trailing dot change nothing
]

FINE = [
    "*.example.co.uk", "*.foo.github.io", "*.www.ck",  # !www.ck: the list's exception rule
    "*.amazonaws.com", "*.example.org", "*.wild.test", "*.пример.рф",
    "co.uk", "github.io",  # a single exact name is not a wildcard: only that host
]


@pytest.mark.parametrize(("entry", "suffix"), TOO_BROAD)
@pytest.mark.parametrize("where", ["allow", "deny"])
def test_wildcard_over_a_public_suffix_is_refused(entry: str, suffix: str, where: str) -> None:
    with pytest.raises(PolicyError) as info:
        check_pattern(entry, where)
    assert str(info.value) == (
        f"network.{where}: {entry!r} is too broad: {suffix} is a public suffix (anyone can "
        f"register names below it); name a domain below it, e.g. *.example.{suffix}")


@pytest.mark.parametrize("entry", FINE)
def test_names_below_a_public_suffix_are_accepted(entry: str) -> None:
    assert check_pattern(entry)
    assert NetworkRules(allow=[entry]).allow


def test_top_level_wildcards_keep_their_own_message() -> None:
    with pytest.raises(PolicyError, match="a whole top-level domain"):
        check_pattern("*.uk")


def test_policy_file_naming_the_entry(world: World) -> None:
    path = world.base / "broad.toml"
    path.write_text('[network]\nmode = "allowlist"\nallow = ["*.example.org", "*.github.io"]\n')
    with pytest.raises(PolicyError, match=r"broad\.toml: network\.allow: '\*\.github\.io' is "
                                          r"too broad: github\.io is a public suffix"):
        load_policy(str(path), workspace=str(world.workspace))


def test_command_line_error_is_one_line(world: World) -> None:
    proc = world.run("run", "--allow-domain", "*.co.uk", "--", "true")
    assert proc.returncode == 125
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "ringfence: network.allow: '*.co.uk' is too broad: co.uk is a public suffix (anyone "
        "can register names below it); name a domain below it, e.g. *.example.co.uk"]


def test_answers_are_remembered_and_a_changed_list_is_read_again(in_world: World) -> None:
    assert suffixes.is_public_suffix("co.uk") is True
    cache = suffixes._cache_path()
    with open(cache, "rb") as fh:
        key, verdicts = marshal.load(fh)
    assert verdicts == {"co.uk": True}
    # the remembered answer is the one given (proof the list is not read again) ...
    with open(cache, "wb") as fh:
        marshal.dump((key, {"co.uk": False}), fh)
    assert suffixes.is_public_suffix("co.uk") is False
    # ... until the list file is not the one it came from (an upgrade): then it is read again
    stale = (key[0], key[1], key[2] + 1, key[3])
    with open(cache, "wb") as fh:
        marshal.dump((stale, {"co.uk": False}), fh)
    assert suffixes.is_public_suffix("co.uk") is True
    with open(cache, "rb") as fh:
        assert marshal.load(fh) == (key, {"co.uk": True})


def test_garbage_cache_is_ignored(in_world: World) -> None:
    cache = suffixes._cache_path()
    assert suffixes.is_public_suffix("example.org") is False
    with open(cache, "wb") as fh:
        fh.write(b"not marshal")
    assert suffixes.is_public_suffix("github.io") is True


@pytest.mark.skipif(sys.platform != "linux", reason="runs the Linux sandbox")
def test_run_imports_the_list_only_for_wildcards(world: World) -> None:
    """Start-up stays lean: the library is imported only when a wildcard entry is checked and
    its answer is not remembered yet."""
    def imported(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ringfence", "run",
                               *args, "--", "true"], cwd=world.workspace, env=world.env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return "IMPORTED" if " publicsuffixlist\n" in proc.stderr else "LEAN"

    assert imported() == "LEAN"
    assert imported("--allow-domain", "x.example.org") == "LEAN"
    assert imported("--allow-domain", "*.example.org") == "IMPORTED"  # first time
    assert imported("--allow-domain", "*.example.org") == "LEAN"  # remembered
