"""``[[rules]]`` in TOML: loading, checked examples, where rules may live, "always" rules."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ringfence.approval.gate import check
from ringfence.approval.rules import append_user_rule, parse_rules, rule_text, split_words
from ringfence.errors import PolicyError
from ringfence.policy.load import Options, resolve


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    ws = tmp_path / "home" / "proj"
    ws.mkdir(parents=True)
    return tmp_path


def user_config(env: Path) -> Path:
    path = env / "config" / "ringfence" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def load(text: str, trusted: bool = True) -> tuple[object, ...]:
    return parse_rules(tomllib.loads(text).get("rules", []), "rules.toml", trusted=trusted)


GOOD = """
[[rules]]
name = "push"
prefix = ["git", ["push", "fetch"]]
decision = "ask"
justification = "talks to the remote"
match = ["git push origin main", ["git", "fetch"]]
not_match = ["git pull", "git"]

[[rules]]
prefix = "npm install"
decision = "allow"
grants = ["network"]
match = ["npm install left-pad"]
"""


def test_good_rules_load() -> None:
    rules = load(GOOD)
    assert len(rules) == 2
    push = rules[0]
    assert push.prefix == ("git", ("push", "fetch"))  # type: ignore[attr-defined]
    assert push.matches(["git", "fetch", "--all"])  # type: ignore[attr-defined]
    assert rules[1].grants == ("network",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "message"), [
    ('[[rules]]\nname = "x"\nprefix = ["git"]\ndecision = "ask"\nmatch = ["gti status"]\n',
     "rule 'x': match example 'gti status' does not match prefix git"),
    ('[[rules]]\nprefix = ["git", "push"]\ndecision = "ask"\nnot_match = ["git push -f"]\n',
     "rule #1: not_match example 'git push -f' matches prefix git push"),
    ('[[rules]]\nprefix = ["git"]\ndecision = "maybe"\n', "decision 'maybe'"),
    ('[[rules]]\ndecision = "ask"\n', "needs a prefix"),
    ('[[rules]]\nprefix = []\ndecision = "ask"\n', "at least a program"),
    ('[[rules]]\nprefix = ["git"]\ndecision = "ask"\ncolour = 1\n', "unknown key 'colour'"),
    ('[[rules]]\nprefix = ["x"]\ndecision = "ask"\ngrants = ["network"]\n', "grants only"),
    ('[[rules]]\nprefix = ["x"]\ndecision = "allow"\ngrants = ["root"]\n', "grants must be"),
    ('[[rules]]\nprefix = ["x"]\ndecision = "allow"\ngrants = ["writable:rel"]\n',
     "grants must be"),
    ('[[rules]]\nprefix = ["x"]\ndecision = "allow"\ngrants = ["network:"]\n',
     "grants must be"),
    ('[[rules]]\nprefix = ["x"]\ndecision = "allow"\ngrants = ["disk:/x"]\n',
     "grants must be"),
    ('[[rules]]\nprefix = ["", "x"]\ndecision = "ask"\n', "at least a program"),
    ('[[rules]]\nprefix = ["x"]\ndecision = "ask"\nmatch = "x"\n', "match must be a list"),
    ('[[rules]]\nprefix = [1]\ndecision = "ask"\n', "prefix words must be strings"),
    ('[[rules]]\nprefix = "\'open"\ndecision = "ask"\n', "unterminated quote"),
])
def test_bad_rules_name_the_rule(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=r"^rules\.toml: ") as info:
        load(text)
    assert message in str(info.value)


def test_project_rules_may_only_ask_or_forbid() -> None:
    load('[[rules]]\nprefix = ["curl"]\ndecision = "forbid"\n', trusted=False)
    with pytest.raises(PolicyError, match="a project's rules may only ask or forbid"):
        load('[[rules]]\nprefix = ["curl"]\ndecision = "allow"\n', trusted=False)


def test_split_words() -> None:
    assert split_words("""a 'b c' "d \\" e" f\\ g ''""") == ["a", "b c", 'd " e', "f g", ""]


# --- layering through resolve ------------------------------------------------------------------

def test_rules_from_every_layer(env: Path) -> None:
    user_config(env).write_text('[[rules]]\nprefix = ["make"]\ndecision = "allow"\n'
                                '[approvals]\nmode = "untrusted"\n')
    ws = env / "home" / "proj"
    (ws / ".ringfence.toml").write_text('[[rules]]\nprefix = ["make", "deploy"]\n'
                                        'decision = "forbid"\njustification = "not here"\n')
    pol = env / "p.toml"
    pol.write_text('[[rules]]\nprefix = ["npm"]\ndecision = "ask"\n')
    policy = resolve(Options(workspace=str(ws), policy_file=str(pol)), cwd=str(ws))
    assert policy.approval_mode == "untrusted"
    assert [r.decision for r in policy.rules] == ["allow", "forbid", "ask"]
    assert check(policy, ["make"]).verdict == "run"
    assert check(policy, ["make", "deploy"]).verdict == "forbid"  # strictest wins
    assert check(policy, ["npm", "ci"]).verdict == "ask"


def test_project_cannot_allow(env: Path) -> None:
    ws = env / "home" / "proj"
    (ws / ".ringfence.toml").write_text('[[rules]]\nprefix = ["sudo"]\ndecision = "allow"\n')
    with pytest.raises(PolicyError, match=r"\.ringfence\.toml: rule #1: a project's rules"):
        resolve(Options(workspace=str(ws)), cwd=str(ws))


def test_trusted_project_may_allow(env: Path) -> None:
    ws = env / "home" / "proj"
    user_config(env).write_text(f'[trust]\nworkspaces = ["{ws}"]\n')
    (ws / ".ringfence.toml").write_text('[[rules]]\nprefix = ["sudo"]\ndecision = "allow"\n')
    policy = resolve(Options(workspace=str(ws)), cwd=str(ws))
    assert check(policy, ["sudo", "x"]).verdict == "run"


def test_project_approval_mode_only_stricter(env: Path) -> None:
    ws = env / "home" / "proj"
    (ws / ".ringfence.toml").write_text('[approvals]\nmode = "untrusted"\n')
    assert resolve(Options(workspace=str(ws)), cwd=str(ws)).approval_mode == "untrusted"
    (ws / ".ringfence.toml").write_text('[approvals]\nmode = "never"\n')
    with pytest.raises(PolicyError, match=r"approvals\.mode = 'never' would ask less"):
        resolve(Options(workspace=str(ws)), cwd=str(ws))


def test_bad_mode_key(env: Path) -> None:
    user_config(env).write_text('[approvals]\nmode = "sometimes"\n')
    with pytest.raises(PolicyError, match=r"approvals\.mode.*not one of untrusted"):
        resolve(Options(workspace=str(env / "home" / "proj")), cwd=str(env))


def test_command_line_allow_and_mode(env: Path) -> None:
    ws = env / "home" / "proj"
    policy = resolve(Options(workspace=str(ws), allow=("sudo apt",), approval_mode="never"),
                     cwd=str(ws))
    assert policy.approval_mode == "never"
    assert check(policy, ["sudo", "apt", "update"]).verdict == "run"
    assert check(policy, ["sudo", "rm"]).verdict == "forbid"


# --- "always" writes to the user's config, never the project's ---------------------------------

def test_always_rule_round_trips(env: Path) -> None:
    text = rule_text(("sudo", "apt", 'we"ird\n'), ("network",), "today")
    rules = parse_rules(tomllib.loads(text)["rules"], "x", trusted=True)
    assert rules[0].prefix == ("sudo", "apt", 'we"ird\n') and rules[0].exact
    assert rules[0].grants == ("network",)


def test_exact_grants_and_empty_words_round_trip() -> None:
    """What "always" writes now: grants naming one root or host, and words that are empty
    (`git push --force origin ""`), which the loader refused, breaking the user's config."""
    words = ("git", "push", "--force", "origin", "")
    grants = ("writable:/srv/cache", "network:web.test", "no-sandbox")
    rules = parse_rules(tomllib.loads(rule_text(words, grants, "today"))["rules"], "x",
                        trusted=True)
    assert rules[0].prefix == words and rules[0].grants == grants
    assert rules[0].matches(list(words)) and not rules[0].matches(list(words[:-1]))


def test_append_user_rule_writes_the_user_config(env: Path) -> None:
    ws = env / "home" / "proj"
    path = append_user_rule(("sudo", "apt"), ())
    assert Path(path) == user_config(env)
    assert not (ws / ".ringfence.toml").exists()
    policy = resolve(Options(workspace=str(ws)), cwd=str(ws))
    assert check(policy, ["sudo", "apt"]).verdict == "run"
    # exact: not a longer command, nor the program found elsewhere
    assert check(policy, ["sudo", "apt", "install", "x"]).verdict == "ask"
    assert check(policy, ["/tmp/x/sudo", "apt"]).verdict == "ask"
    append_user_rule(("git", "push", "-f"), ())  # appending twice keeps the file valid
    policy = resolve(Options(workspace=str(ws)), cwd=str(ws))
    assert len(policy.rules) == 2


def test_exact_key() -> None:
    """``exact = true``: the command is exactly the words (its examples are checked so); a
    value that is not a boolean is an error naming the rule."""
    rules = load('[[rules]]\nprefix = "git push"\ndecision = "allow"\nexact = true\n'
                 'match = ["git push"]\nnot_match = ["git push origin main"]\n')
    assert rules[0].exact  # type: ignore[attr-defined]
    with pytest.raises(PolicyError, match="rule #1: exact must be true or false"):
        load('[[rules]]\nprefix = "git push"\ndecision = "allow"\nexact = "yes"\n')
    with pytest.raises(PolicyError, match="does not match exact words"):
        load('[[rules]]\nprefix = "git push"\ndecision = "allow"\nexact = true\n'
             'match = ["git push origin"]\n')
