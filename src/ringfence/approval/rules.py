"""``[[rules]]`` in TOML: parsing, checking their examples, and writing an "always" answer.

A rule::

    [[rules]]
    prefix = ["git", "push"]          # or "git push"; a word may be a list of alternatives
    decision = "ask"                  # allow | ask | forbid
    justification = "pushing publishes the work"
    match = ["git push origin main"]  # examples that must match (checked when the rules load)
    not_match = ["git pull"]          # examples that must not match
    grants = ["network"]              # allow only: escalations it pre-approves: a kind
                                      # (network, writable, no-sandbox) or exactly one root
                                      # or host ("writable:/srv/cache", "network:example.org")
    name = "push"                     # optional; how messages name the rule
    exact = true                      # optional: exactly these words, no more (what an
                                      # "always" answer writes)

Where rules may live: the user's config and ``--policy`` files (trusted: any decision); the
project's ``.ringfence.toml`` (attacker-controlled: only ``ask`` and ``forbid``, no ``grants``, so
a project can make approvals stricter, never looser). The strictest matching rule wins.
"""

from __future__ import annotations

from ..errors import PolicyError
from .model import DECISIONS, GRANTS, Rule

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_KEYS = ("prefix", "decision", "justification", "match", "not_match", "grants", "name",
         "exact")


def split_words(text: str) -> list[str]:
    """Split an example the way a shell would for plain words and quotes (no expansions)."""
    words: list[str] = []
    cur: list[str] = []
    have = False
    i = 0
    quote = ""
    while i < len(text):
        ch = text[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                cur.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`':
                i += 1
                cur.append(text[i])
            else:
                cur.append(ch)
        elif ch in "'\"":
            quote = ch
            have = True
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            cur.append(text[i])
            have = True
        elif ch.isspace():
            if cur or have:
                words.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(ch)
        i += 1
    if quote:
        raise ValueError("unterminated quote")
    if cur or have:
        words.append("".join(cur))
    return words


def _words(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            return tuple(split_words(value))
        except ValueError as exc:
            raise PolicyError(f"{what}: {value!r}: {exc}") from None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{what}: expected a string or a list of strings")


def parse_rules(items: Any, source: str, *, trusted: bool) -> tuple[Rule, ...]:
    """Rules from a parsed ``rules`` array; examples checked. Errors name the file and rule."""
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PolicyError(f"{source}: rules must be an array of tables ([[rules]])")
    out = []
    for n, item in enumerate(items, start=1):
        out.append(parse_rule(item, source, n, trusted=trusted))
    return tuple(out)


def parse_rule(item: dict[str, Any], source: str, n: int, *, trusted: bool) -> Rule:
    name = item.get("name")
    label = f"rule {name!r}" if isinstance(name, str) and name else f"rule #{n}"
    where = f"{source}: {label}"
    for key in item:
        if key not in _KEYS:
            raise PolicyError(f"{where}: unknown key {key!r}; a rule accepts {', '.join(_KEYS)}")
    if "prefix" not in item:
        raise PolicyError(f"{where}: needs a prefix, e.g. prefix = [\"git\", \"push\"]")
    raw = item["prefix"]
    prefix: list[str | tuple[str, ...]] = []
    if isinstance(raw, str):
        prefix = list(_words(raw, f"{where}: prefix"))
    elif isinstance(raw, list):
        for word in raw:
            if isinstance(word, str):
                prefix.append(word)
            elif isinstance(word, list) and word and all(isinstance(w, str) for w in word):
                prefix.append(tuple(word))
            else:
                raise PolicyError(f"{where}: prefix words must be strings or lists of strings")
    else:
        raise PolicyError(f"{where}: prefix must be a string or a list")
    # ("" is a word a command may be given, `git push origin ""`; not a program's name)
    if not prefix or prefix[0] in ("", ()) or any(p == () for p in prefix):
        raise PolicyError(f"{where}: prefix must name at least a program")
    decision = item.get("decision")
    if decision not in DECISIONS:
        raise PolicyError(f"{where}: decision {decision!r}: use one of {', '.join(DECISIONS)}")
    justification = item.get("justification", "")
    if not isinstance(justification, str):
        raise PolicyError(f"{where}: justification must be a string")
    grants = item.get("grants", [])
    if not isinstance(grants, list) or not all(_grant_ok(g) for g in grants):
        raise PolicyError(f"{where}: grants must be a list of {', '.join(GRANTS)}, "
                          "writable:/ABSOLUTE/DIR or network:HOST")
    if grants and decision != "allow":
        raise PolicyError(f"{where}: grants only make sense with decision = \"allow\"")
    if not trusted and (decision == "allow" or grants):
        from ..policy.load import user_config_path

        raise PolicyError(
            f"{where}: a project's rules may only ask or forbid (this one allows); put allow "
            f"rules in {user_config_path()}, or trust this workspace there"
        )
    exact = item.get("exact", False)
    if not isinstance(exact, bool):
        raise PolicyError(f"{where}: exact must be true or false")
    examples: dict[str, tuple[tuple[str, ...], ...]] = {}
    for key in ("match", "not_match"):
        value = item.get(key, [])
        if not isinstance(value, list):
            raise PolicyError(f"{where}: {key} must be a list of examples")
        examples[key] = tuple(_words(v, f"{where}: {key} example") for v in value)
    rule = Rule(
        prefix=tuple(prefix), decision=decision, justification=justification,
        match=tuple(" ".join(e) for e in examples["match"]),
        not_match=tuple(" ".join(e) for e in examples["not_match"]),
        grants=tuple(grants), source=source, name=f"{label} in {source}", exact=exact,
    )
    what = "exact words" if exact else "prefix"
    for example in examples["match"]:
        if not rule.matches(example):
            raise PolicyError(f"{where}: match example {' '.join(example)!r} does not match "
                              f"{what} {_show(rule)}; fix the example or the {what}")
    for example in examples["not_match"]:
        if rule.matches(example):
            raise PolicyError(f"{where}: not_match example {' '.join(example)!r} matches "
                              f"{what} {_show(rule)}; fix the example or the {what}")
    return rule


def _grant_ok(grant: object) -> bool:
    """A kind, or one root (``writable:/srv/cache``) or host (``network:example.org``)."""
    import os

    if not isinstance(grant, str):
        return False
    kind, sep, value = grant.partition(":")
    if not sep:
        return grant in GRANTS
    if kind == "writable":
        return os.path.isabs(value) and os.path.normpath(value) == value
    return kind == "network" and bool(value) and not any(c.isspace() for c in value)


def _show(rule: Rule) -> str:
    return " ".join("|".join(w) if isinstance(w, tuple) else w for w in rule.prefix)


def _toml_str(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid TOML basic string


def rule_text(prefix: tuple[str, ...], grants: tuple[str, ...], when: str) -> str:
    """The TOML an "always" answer appends to the user's config: an exact rule (this command,
    not every command that starts with it)."""
    words = ", ".join(_toml_str(w) for w in prefix)
    lines = ["", f"# added by ringfence {when}: answered \"always\" at the prompt", "[[rules]]",
             f"prefix = [{words}]", "exact = true", 'decision = "allow"',
             f"justification = {_toml_str('approved at the prompt ' + when)}",
             f"match = [[{words}]]"]
    if grants:
        lines.append(f"grants = [{', '.join(_toml_str(g) for g in grants)}]")
    return "\n".join(lines) + "\n"


def append_user_rule(prefix: tuple[str, ...], grants: tuple[str, ...]) -> str:
    """Append an exact allow rule for the words ``prefix`` to the user's config (never a
    project's). Returns its path."""
    import os
    import time

    from ..policy.load import user_config_path

    for word in prefix:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            raise PolicyError("the command is not valid UTF-8, so it cannot be written to "
                              "a rule; answer once or session instead") from None
    path = user_config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M:%S %z")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, rule_text(prefix, grants, when).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
