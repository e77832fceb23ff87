"""``Policy`` and ``Limits``: frozen records with defaults, validation and narrowing."""

from __future__ import annotations

import json

import pytest

from ringfence.errors import PolicyError
from ringfence.policy.model import DEFAULT_PROTECTED, PROFILES, Limits, Policy


def test_policy_defaults() -> None:
    p = Policy(workspace="/src/app")
    assert p.profile == "workspace-write"
    assert p.workspace == "/src/app"
    assert p.writable == ()
    assert p.deny_read == ()
    assert p.protected == DEFAULT_PROTECTED
    assert p.network == "off"
    assert p.env_allow == () and p.env_deny == () and p.env_set == ()
    assert p.limits == Limits()
    assert p.gpu is False
    assert p.fallback == "refuse"
    assert p.bwrap == "bundled"


def test_limits_defaults() -> None:
    lim = Limits()
    assert lim.timeout is None
    assert lim.memory is None
    assert lim.max_processes == 4096
    assert lim.cpu_seconds is None
    assert lim.file_size == 16 << 30
    assert lim.output == 64 << 20
    assert lim.tmp_size == 2 << 30


@pytest.mark.parametrize("obj", [Policy(workspace="/w"), Limits()])
def test_assignment_raises(obj: Policy | Limits) -> None:
    name = obj.__slots__[0]
    with pytest.raises(AttributeError, match="frozen"):
        setattr(obj, name, None)
    with pytest.raises(AttributeError, match="frozen"):
        delattr(obj, name)
    with pytest.raises(AttributeError):
        obj.brand_new = 1  # type: ignore[union-attr]


def test_replace_returns_a_new_record() -> None:
    p = Policy(workspace="/w")
    q = p.replace(network="on", limits=Limits(timeout=5))
    assert p.network == "off" and p.limits.timeout is None
    assert q.network == "on" and q.limits.timeout == 5
    assert q.workspace == "/w"
    assert q is not p


def test_replace_validates() -> None:
    with pytest.raises(PolicyError, match="profile"):
        Policy(workspace="/w").replace(profile="yolo")
    with pytest.raises(TypeError, match="nope"):
        Limits().replace(nope=1)


def test_equality_and_hash() -> None:
    a = Policy(workspace="/w", writable=["/x"], env_set={"A": "1"})
    b = Policy(workspace="/w", writable=("/x",), env_set=[("A", "1")])
    assert a == b
    assert hash(a) == hash(b)
    assert a != a.replace(gpu=True)
    assert Limits(timeout=3) == Limits(timeout=3)
    assert Limits(timeout=3) != Limits(timeout=4)
    # not equal to another type with the same values
    assert Limits() != object()
    assert len({Limits(), Limits()}) == 1


def test_lists_become_tuples() -> None:
    p = Policy(workspace="/w", writable=["/a", "/b"], deny_read="/secret", env_allow=["X"],
               env_deny=("Y",), protected=[".envrc"], env_set={"K": 1})
    assert p.writable == ("/a", "/b")
    assert p.deny_read == ("/secret",)  # a lone string is one path, not its characters
    assert p.env_allow == ("X",)
    assert p.env_deny == ("Y",)
    assert p.protected == (".envrc",)
    assert p.env_set == (("K", "1"),)


def test_to_dict_is_json_ready() -> None:
    p = Policy(workspace="/w", writable=["/x"], env_set={"A": "1"}, limits=Limits(timeout=9))
    d = p.to_dict()
    # env_set_unsandboxed only where it differs from env_set; trusted only where there is one
    assert list(d) == [s for s in Policy.__slots__ if s not in ("env_set_unsandboxed",
                                                                 "trusted")]
    assert d["writable"] == ["/x"]
    assert d["limits"] == {
        "timeout": 9, "memory": None, "max_processes": 4096, "cpu_seconds": None,
        "file_size": 16 << 30, "output": 64 << 20, "tmp_size": 2 << 30, "cpu_percent": None,
    }
    assert json.loads(json.dumps(d))["env_set"] == [["A", "1"]]
    assert d["protected"] == list(DEFAULT_PROTECTED)


def test_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'colour'"):
        Policy(workspace="/w", colour="red")
    with pytest.raises(TypeError, match="'nope'"):
        Limits(nope=1)


def test_missing_required_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="workspace"):
        Policy()


@pytest.mark.parametrize("profile", ["", "Read-Only", "yolo", "workspace_write"])
def test_bad_profile(profile: str) -> None:
    with pytest.raises(PolicyError, match="profile"):
        Policy(workspace="/w", profile=profile)


@pytest.mark.parametrize("network", ["", "allow", "ON", "true"])
def test_bad_network(network: str) -> None:
    with pytest.raises(PolicyError, match="network"):
        Policy(workspace="/w", network=network)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_is_accepted(profile: str) -> None:
    assert Policy(workspace="/w", profile=profile).profile == profile


def test_writable_roots() -> None:
    p = Policy(workspace="/w", writable=["/a", "/w", "/b", "/a"])
    assert p.writable_roots() == ("/w", "/a", "/b")
    assert p.replace(profile="full-access").writable_roots() == ("/w", "/a", "/b")
    assert p.replace(profile="read-only").writable_roots() == ()
    assert Policy(workspace="/w").writable_roots() == ("/w",)


def test_narrowed_by_takes_the_stricter_value() -> None:
    a = Limits(timeout=60, memory=None, max_processes=100, cpu_seconds=5, output=None)
    b = Limits(timeout=30, memory=1 << 30, max_processes=None, cpu_seconds=10, output=None)
    n = a.narrowed_by(b)
    assert n.timeout == 30
    assert n.memory == 1 << 30
    assert n.max_processes == 100
    assert n.cpu_seconds == 5
    assert n.output is None
    assert n.file_size == 16 << 30 and n.tmp_size == 2 << 30
    assert n == b.narrowed_by(a)  # symmetric
    assert a.narrowed_by(a) == a
    # the originals are untouched
    assert a.timeout == 60 and b.max_processes is None


def test_narrowed_by_none_everywhere_is_unlimited() -> None:
    none = Limits(**dict.fromkeys(Limits.__slots__))
    assert none.narrowed_by(none) == none
    assert none.narrowed_by(Limits()) == Limits()
    assert Limits().narrowed_by(none) == Limits()
