"""The network allowlist as frozen values, and the decisions made from it. Pure: no I/O.

A connection is decided twice:

1. ``decide(rules, host, port)`` by name, before anything is resolved: the port must be listed
   (80 and 443 unless the policy lists others); the deny list wins over the allow list; an IP
   literal is refused unless it is listed itself; otherwise the host must match an allow entry
   or a host a preset named. ``example.org`` matches only itself; ``*.example.org`` matches
   every name below it (``a.example.org``, ``a.b.example.org``) but not ``example.org``.
2. ``check_address(rules, address, own)`` after resolution, for the address the proxy is about
   to connect to: loopback, unspecified and the host's own addresses are refused unless
   ``allow_local``; private ranges, carrier-grade NAT, link-local (the cloud metadata service at
   169.254.169.254), unique-local and (deprecated) site-local IPv6 unless ``allow_private``;
   multicast, broadcast and reserved addresses always. The proxy connects to exactly the
   address it checked.

``check_pattern`` validates one entry when the policy loads: no ``*`` alone, no ``*.com``
(a wildcard needs at least two labels after ``*.``), no wildcard over any other public suffix
(``*.co.uk``, ``*.github.io``: the Public Suffix List, see ``network.suffixes``), no scheme,
path, port or user, and a ``*`` only as the whole first label. An empty allow list allows
nothing.
"""

from __future__ import annotations

from ..policy.model import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, ClassVar

DEFAULT_PORTS = (80, 443)
PRESETS = ("pip", "npm")
"""Named host sets read from a package manager's own configuration (see ``network.presets``)."""

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class NetworkRules(Frozen):
    """What the allowlist proxy lets through.

    - ``allow`` / ``deny``: host patterns (``example.org``, ``*.example.org``) or IP literals.
    - ``ports``: destination ports allowed (default 80 and 443).
    - ``presets``: preset names (``pip``, ``npm``) whose hosts are allowed too.
    - ``preset_hosts``: (preset, host) pairs read from the package managers' configuration;
      filled in on the host before the command starts (``HostFacts``), never by the command.
    - ``allow_local``: let allowed names reach loopback and this host's own addresses.
    - ``allow_private``: let allowed names reach private, link-local and CGNAT ranges.
    """

    __slots__ = ("allow", "deny", "ports", "presets", "preset_hosts", "allow_local",
                 "allow_private")
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    ports: tuple[int, ...]
    presets: tuple[str, ...]
    preset_hosts: tuple[tuple[str, str], ...]
    allow_local: bool
    allow_private: bool
    _defaults: ClassVar[Mapping[str, Any]] = {
        "allow": (), "deny": (), "ports": DEFAULT_PORTS, "presets": (), "preset_hosts": (),
        "allow_local": False, "allow_private": False,
    }

    def __init__(self, **values: Any) -> None:
        for key in ("allow", "deny"):
            if key in values:
                values[key] = tuple(check_pattern(p, key) for p in _strs(values[key]))
        if "presets" in values:
            values["presets"] = tuple(check_preset(p) for p in _strs(values["presets"]))
        if "ports" in values:
            values["ports"] = tuple(check_port(p) for p in values["ports"])
        if "preset_hosts" in values:
            values["preset_hosts"] = tuple(
                (str(name), check_pattern(host, f"preset {name}"))
                for name, host in values["preset_hosts"])
        super().__init__(**values)


class Decision(Frozen):
    """``allowed``; ``rule``: the entry that decided (``deny *.x.org``, ``allow x.org``,
    ``preset pip``, ``ports``, ``default``, ``address``); ``reason``: a sentence for people."""

    __slots__ = ("allowed", "rule", "reason")
    allowed: bool
    rule: str
    reason: str


def _strs(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _error(message: str) -> Exception:
    from ..errors import PolicyError

    return PolicyError(message)


def check_preset(name: str) -> str:
    if name not in PRESETS:
        raise _error(f"network preset {name!r} is unknown; use one of {', '.join(PRESETS)}")
    return name


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _error(f"network port {port!r}: expected a whole number from 1 to 65535")
    return port


def ip_literal(host: str) -> str | None:
    """The normalised address if ``host`` is an IPv4 or IPv6 literal (brackets allowed)."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if len(text) > 64:  # the longest address with a zone (an interface name) is shorter
        return None
    # ipaddress costs ~4 ms to import, on the policy's load: only for what could be an address
    # (IPv4: digits and dots only; IPv6: has a colon), never for a host name
    if ":" not in text and not text.replace(".", "").isdigit():
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _check_name(name: str) -> str | None:
    """The host name in lower-case ASCII (IDNA for non-ASCII), or None if it is not one."""
    name = name.lower().removesuffix(".")
    if not name.isascii():
        try:
            ascii_name = name.encode("idna").decode("ascii")
            # IDNA 2003 (Python's codec) maps some letters away (ß to ss, final sigma, joiners)
            # where IDNA 2008, which clients use, keeps them: the two name different hosts, so
            # a name that does not survive the round trip is refused, not guessed at
            if ascii_name.encode("ascii").decode("idna") != name:
                return None
        except UnicodeError:
            return None
        name = ascii_name
    if not name or len(name) > 253:
        return None
    for label in name.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return None
        if not set(label) <= _LABEL_CHARS:
            return None
    if name.rpartition(".")[2][0].isdigit():
        return None  # no top-level domain starts with a digit: 127.1, 0x7f.1, 2130706433
    return name


def check_pattern(entry: str, where: str = "allow") -> str:
    """One allow/deny entry, normalised; PolicyError naming the entry and the fix otherwise."""
    if not isinstance(entry, str):
        raise _error(f"network.{where}: {entry!r} is not a string")
    raw = entry.strip()
    if "://" in raw:
        raise _error(f"network.{where}: {entry!r} has a scheme; write the host name only "
                     "(e.g. example.org)")
    if "/" in raw or "?" in raw or "#" in raw:
        raise _error(f"network.{where}: {entry!r} has a path; write the host name only")
    if "@" in raw:
        raise _error(f"network.{where}: {entry!r} has a user part; write the host name only")
    literal = ip_literal(raw)
    if literal is not None:
        return literal
    if ":" in raw:
        raise _error(f"network.{where}: {entry!r} has a port; list ports under "
                     "network.ports instead")
    if raw in ("*", "*.", "**"):
        raise _error(f"network.{where}: {entry!r} would match every host; list the hosts "
                     "the command needs")
    wildcard = raw.startswith("*.")
    rest = raw[2:] if wildcard else raw
    if "*" in rest:
        raise _error(f"network.{where}: {entry!r}: a * may only be the whole first label "
                     "(*.example.org)")
    name = _check_name(rest)
    if name is None:
        hint = ""
        if not raw.isascii():
            hint = ("; its letters (ß, ς, joiners) mean another host under IDNA 2003 than "
                    "under IDNA 2008, so write the xn-- form clients send")
        raise _error(f"network.{where}: {entry!r} is not a valid host name{hint}")
    if wildcard and name.count(".") < 1:
        raise _error(f"network.{where}: {entry!r} is too broad (a whole top-level domain); "
                     "name a domain below it, e.g. *.example.org")
    if wildcard and _public_suffix(name):
        raise _error(f"network.{where}: {entry!r} is too broad: {name} is a public suffix "
                     f"(anyone can register names below it); name a domain below it, e.g. "
                     f"*.example.{name}")
    return f"*.{name}" if wildcard else name


_SUFFIXES: dict[str, bool] = {}  # this process's answers (a policy is checked several times)


def _public_suffix(name: str) -> bool:
    if name not in _SUFFIXES:
        from .suffixes import is_public_suffix

        _SUFFIXES[name] = is_public_suffix(name)
    return _SUFFIXES[name]


def normalise_host(host: str) -> str | None:
    """A requested host as the rules see it: an address, a lower-case name, or None."""
    literal = ip_literal(host)
    if literal is not None:
        return literal
    return _check_name(host)


def shown(host: str) -> str:
    """``host`` as records and messages show it: normalised, or (not a host name) its first
    100 characters and how long it was. A command chooses what it sends; what ringfence keeps
    of it stays small."""
    name = normalise_host(host)
    if name is not None:
        return name
    if len(host) <= 100:
        return host
    return f"{host[:100]}... ({len(host)} characters)"


def matches(pattern: str, host: str) -> bool:
    """``example.org`` matches itself only; ``*.example.org`` matches names below it only."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def decide(rules: NetworkRules, host: str, port: int) -> Decision:
    """Whether a connection to ``host:port`` may be attempted (before resolution)."""
    name = normalise_host(host)
    if name is None:
        return Decision(allowed=False, rule="invalid", reason=f"{shown(host)!r} is not a host name")
    if port not in rules.ports:
        listed = ", ".join(str(p) for p in rules.ports) or "none"
        return Decision(allowed=False, rule="ports",
                        reason=f"port {port} is not allowed (allowed: {listed})")
    for pattern in rules.deny:
        if matches(pattern, name):
            return Decision(allowed=False, rule=f"deny {pattern}",
                            reason=f"{name} matches the deny entry {pattern}")
    for pattern in rules.allow:
        if matches(pattern, name):
            return Decision(allowed=True, rule=f"allow {pattern}",
                            reason=f"{name} matches the allow entry {pattern}")
    is_ip = ip_literal(name) is not None
    if not is_ip:
        for preset, pattern in rules.preset_hosts:
            if matches(pattern, name):
                return Decision(allowed=True, rule=f"preset {preset}",
                                reason=f"{name} is a host of the {preset} preset")
    if is_ip:
        return Decision(allowed=False, rule="ip-literal",
                        reason=f"{name} is an IP address; addresses are refused unless listed")
    return Decision(allowed=False, rule="default", reason=f"{name} is not in the allow list")


def address_class(address: str, own: Iterable[str] = ()) -> str:
    """``public``, ``local`` (loopback, unspecified, this host's, with or without a zone),
    ``private`` (RFC 1918, CGNAT, link-local, unique-local, site-local ``fec0::/10``) or
    ``never`` (multicast, broadcast, reserved)."""
    import ipaddress

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
        elif ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64: the IPv4 address inside
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # an address with a zone (fe80::1%eth0) is the same address for "is it this host's?"
    if ip.is_loopback or ip.is_unspecified or _unscoped(str(ip)) in {_unscoped(a) for a in own}:
        return "local"
    if ip.is_multicast or ip.is_reserved or str(ip) == "255.255.255.255":
        return "never"
    if ip.is_link_local or ip.is_private or (
            isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")
    ) or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):  # fec0::/10, deprecated
        return "private"
    return "public"


def _unscoped(address: str) -> str:
    """An address without its zone, in the normal form (``FE80::1%eth0`` -> ``fe80::1``)."""
    import ipaddress

    base = address.partition("%")[0]
    try:
        return str(ipaddress.ip_address(base))
    except ValueError:
        return base


def check_address(rules: NetworkRules, address: str, own: Iterable[str] = ()) -> Decision:
    """Whether the proxy may connect to the resolved ``address``."""
    kind = address_class(address, own)
    if kind == "public":
        return Decision(allowed=True, rule="address", reason=f"{address} is a public address")
    if kind == "local" and rules.allow_local:
        return Decision(allowed=True, rule="allow_local",
                        reason=f"{address} is local; network.allow_local is on")
    if kind == "private" and rules.allow_private:
        return Decision(allowed=True, rule="allow_private",
                        reason=f"{address} is private; network.allow_private is on")
    fix = {"local": "network.allow_local = true", "private": "network.allow_private = true"}
    why = {"local": "a loopback or this host's own address",
           "private": "a private or link-local address",
           "never": "a multicast, broadcast or reserved address"}[kind]
    reason = f"{address} is {why}"
    if kind in fix:
        reason += f" (allowed only with {fix[kind]})"
    return Decision(allowed=False, rule="address", reason=reason)


def allow_hint(host: str, port: int, decision: Decision) -> str:
    """The option that would allow this connection (for the proxy's 403 body and logs)."""
    if decision.rule == "ports":
        return f"--allow-port {port} (network.ports)"
    if decision.rule.startswith("deny "):
        return f"remove {decision.rule[5:]} from network.deny"
    if decision.rule == "address":
        if "allow_local" in decision.reason:
            return "network.allow_local = true"
        if "allow_private" in decision.reason:
            return "network.allow_private = true"
        return "nothing: this address is never reachable"
    return f"--allow-domain {host} (network.allow)"
