"""The allowlist's pure core: pattern validation, decisions by name, the address check."""

from __future__ import annotations

import pytest

from ringfence.errors import PolicyError
from ringfence.network.rules import (
    NetworkRules,
    address_class,
    allow_hint,
    check_address,
    check_pattern,
    decide,
)


@pytest.mark.parametrize("entry", [
    "*", "*.", "**", "*.com", "*.org.", "https://example.org", "example.org/path",
    "example.org:443", "user@example.org", "ex*mple.org", "*.*.example.org", "a..b",
    "-bad.example.org", "", "exa mple.org", "example.org?q", "[::1]:443",
])
def test_rejected_patterns(entry: str) -> None:
    with pytest.raises(PolicyError):
        check_pattern(entry)


@pytest.mark.parametrize(("entry", "normal"), [
    ("Example.ORG", "example.org"), ("example.org.", "example.org"),
    ("*.Example.org", "*.example.org"), ("10.0.0.1", "10.0.0.1"), ("[::1]", "::1"),
    ("bücher.example", "xn--bcher-kva.example"), ("_srv.example.org", "_srv.example.org"),
])
def test_normalised_patterns(entry: str, normal: str) -> None:
    assert check_pattern(entry) == normal


def test_empty_allow_list_allows_nothing() -> None:
    """The CVE a peer had: an empty allow list read as 'everything'."""
    rules = NetworkRules()
    for host in ("example.org", "a.b.c", "127.0.0.1", "localhost"):
        assert not decide(rules, host, 443).allowed


def test_wildcard_matches_below_not_itself() -> None:
    rules = NetworkRules(allow=["*.example.org"])
    assert decide(rules, "a.example.org", 443).allowed
    assert decide(rules, "a.b.example.org", 443).allowed
    assert not decide(rules, "example.org", 443).allowed
    assert not decide(rules, "badexample.org", 443).allowed
    assert not decide(rules, "example.org.evil.test", 443).allowed


def test_exact_entry_matches_only_itself() -> None:
    rules = NetworkRules(allow=["example.org"])
    assert decide(rules, "EXAMPLE.org.", 443).allowed
    assert not decide(rules, "www.example.org", 443).allowed


def test_deny_wins_over_allow() -> None:
    rules = NetworkRules(allow=["*.example.org"], deny=["bad.example.org"])
    d = decide(rules, "bad.example.org", 443)
    assert not d.allowed and d.rule == "deny bad.example.org"
    assert decide(rules, "good.example.org", 443).allowed
    assert allow_hint("bad.example.org", 443, d).startswith("remove bad.example.org")


def test_ports_default_and_listed() -> None:
    rules = NetworkRules(allow=["example.org"])
    assert decide(rules, "example.org", 80).allowed
    d = decide(rules, "example.org", 22)
    assert not d.allowed and d.rule == "ports"
    assert decide(rules.replace(ports=(22,)), "example.org", 22).allowed


def test_ip_literals_refused_unless_listed() -> None:
    rules = NetworkRules(allow=["example.org"])
    d = decide(rules, "93.184.216.34", 443)
    assert not d.allowed and d.rule == "ip-literal"
    listed = NetworkRules(allow=["93.184.216.34", "2001:db8::1"])
    assert decide(listed, "93.184.216.34", 443).allowed
    assert decide(listed, "[2001:db8::1]", 443).allowed
    assert decide(listed, "2001:db8:0::1", 443).allowed
    # an address is never matched by a name wildcard or a preset
    assert not decide(NetworkRules(preset_hosts=[("pip", "1.2.3.4")]), "1.2.3.4", 443).allowed


def test_preset_hosts() -> None:
    rules = NetworkRules(presets=["pip"], preset_hosts=[("pip", "index.example.com")])
    d = decide(rules, "index.example.com", 443)
    assert d.allowed and d.rule == "preset pip"


def test_invalid_request_hosts() -> None:
    rules = NetworkRules(allow=["example.org"])
    for host in ("", "exa mple.org", "example.org/x", "a" * 300, "fe80::1%eth0"):
        assert not decide(rules, host, 443).allowed


@pytest.mark.parametrize("host", ["127.1", "0x7f.0x1", "2130706433", "0177.0.0.1"])
def test_numeric_forms_are_not_names(host: str) -> None:
    """Attack: a numeric form the resolver reads as an address (inet_aton) passes as a name."""
    with pytest.raises(PolicyError):
        check_pattern(host)
    assert decide(NetworkRules(allow=["example.org"]), host, 443).rule == "invalid"


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "local"), ("127.8.9.10", "local"), ("::1", "local"), ("0.0.0.0", "local"),
    ("::ffff:127.0.0.1", "local"), ("169.254.169.254", "private"), ("fe80::1", "private"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "private"), ("fd00::1", "private"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "private"), ("224.0.0.1", "never"), ("255.255.255.255", "never"),
    ("240.0.0.1", "never"), ("93.184.216.34", "public"), ("2606:4700::1", "public"),
])
def test_address_classes(address: str, kind: str) -> None:
    assert address_class(address) == kind


def test_own_addresses_are_local() -> None:
    assert address_class("93.184.216.34", own=["93.184.216.34"]) == "local"


def test_address_check_and_opt_ins() -> None:
    rules = NetworkRules(allow=["example.org"])
    d = check_address(rules, "127.0.0.1")
    assert not d.allowed and "allow_local" in d.reason
    assert check_address(rules.replace(allow_local=True), "127.0.0.1").allowed
    d = check_address(rules, "169.254.169.254")
    assert not d.allowed and "allow_private" in d.reason
    assert check_address(rules.replace(allow_private=True), "169.254.169.254").allowed
    assert not check_address(rules.replace(allow_private=True), "127.0.0.1").allowed
    assert not check_address(rules.replace(allow_local=True, allow_private=True),
                             "224.0.0.1").allowed
    assert check_address(rules, "93.184.216.34").allowed


def test_bad_values() -> None:
    with pytest.raises(PolicyError):
        NetworkRules(ports=[0])
    with pytest.raises(PolicyError):
        NetworkRules(ports=[True])
    with pytest.raises(PolicyError):
        NetworkRules(presets=["everything"])


def test_names_idna_2003_and_2008_spell_differently_are_refused() -> None:
    """``straße.example.org`` becomes ``strasse.example.org`` under IDNA 2003 (Python's codec)
    but ``xn--strae-oqa.example.org`` under IDNA 2008, which curl and browsers send: a deny
    entry would miss the host clients reach, and an allow entry would allow another one. Such
    entries are refused (write the xn-- form); names both agree on are kept."""
    for entry in ("straße.example.org", "faß.de", "*.straße.example.org"):
        with pytest.raises(PolicyError):
            check_pattern(entry)
    assert check_pattern("münchen.de") == "xn--mnchen-3ya.de"
    assert check_pattern("xn--strae-oqa.example.org") == "xn--strae-oqa.example.org"


def test_site_local_ipv6_is_private() -> None:
    """The deprecated site-local range fec0::/10 (outside Python's ``is_private``) was public."""
    assert address_class("fec0::1") == "private"
    assert address_class("feff::1") == "private"


def test_own_address_with_a_zone_is_local() -> None:
    """``fe80::1%eth0`` is this host's ``fe80::1``: local, not merely private."""
    assert address_class("fe80::fc:ff:fe00:1%eth0", own=["fe80::fc:ff:fe00:1"]) == "local"
    assert address_class("fd00::2%eth0", own=["fd00::2"]) == "local"
    assert address_class("fd00::2", own=["fd00::2%eth0"]) == "local"
    assert address_class("fd00::3%eth0", own=["fd00::2"]) == "private"


def test_what_records_show_of_a_host_is_bounded() -> None:
    """A command chooses the host it sends (up to the 32 KiB head): what records and reasons
    keep of it is the normalised name, or its first 100 characters and its length."""
    from ringfence.network.rules import decide, shown

    assert shown("WEB.Test.") == "web.test"
    long = "x" * 30000
    assert shown(long) == "x" * 100 + "... (30000 characters)"
    assert len(decide(NetworkRules(allow=["web.test"]), long, 443).reason) < 200
    scoped = "fe80::1%" + "e" * 30000  # an "address" whose zone is 30,000 characters
    assert len(shown(scoped)) < 200 and len(decide(NetworkRules(), scoped, 443).reason) < 200


@pytest.mark.parametrize(("host", "literal"), [
    ("10.0.0.1", "10.0.0.1"), ("[::1]", "::1"), ("::ffff:7f00:1", "::ffff:7f00:1"),
    ("FE80::1%eth0", "fe80::1%eth0"), ("example.org", None), ("123", None),
    ("1.2.3", None), ("0x7f.0.0.1", None), ("a1.example", None), ("1e100.net", None),
])
def test_ip_literal_without_ipaddress_for_names(host: str, literal: str | None) -> None:
    """Only what could be an address reaches ``ipaddress`` (~4 ms to import on the policy's
    load); names never do, and what is and is not a literal is unchanged."""
    from ringfence.network.rules import ip_literal

    assert ip_literal(host) == literal
