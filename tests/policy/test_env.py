"""``looks_secret`` and ``scrub``: which variables a sandboxed command gets."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.policy.env import looks_secret, scrub, secret_value

SECRET = [
    "GITHUB_TOKEN", "OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE", "AWS_SESSION_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
    "GOOGLE_APPLICATION_CREDENTIALS", "DB_PASSWORD", "MY_APIKEY", "SSH_AUTH_SOCK",
    "DBUS_SESSION_BUS_ADDRESS", "ANTHROPIC_API_KEY", "NPM_TOKEN", "GH_TOKEN", "SLACK_SECRET",
    "PGPASSWORD", "DOCKER_HOST", "KUBECONFIG", "github_token", "my-api-key", "SECRET",
    "CLOUDSDK_CONFIG", "VAULT_ADDR",
    # found in a red-team pass: a vault's session key, mysql's password, bearer secrets
    "BW_SESSION", "MYSQL_PWD", "CI_JOB_JWT", "JWT", "SENTRY_DSN", "SLACK_WEBHOOK_URL",
    "SESSION_ID",
]
KEPT = [
    "PATH", "HOME", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "PWD", "OLDPWD", "SSL_CERT_FILE",
    "KEYBOARD_LAYOUT", "PYTHONPATH", "LANG", "LC_ALL", "TERM", "SHELL", "USER", "EDITOR",
    "VIRTUAL_ENV", "GPG_TTY", "KEYTIMEOUT", "PASS_MAX_DAYS", "XDG_CONFIG_HOME", "CC",
    "NODE_OPTIONS", "JAVA_HOME", "GOPATH", "TZ", "XDG_SESSION_TYPE", "XDG_SESSION_ID",
    "DESKTOP_SESSION",
]


@pytest.mark.parametrize("name", SECRET)
def test_secret_names_look_secret(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", KEPT)
def test_ordinary_names_do_not_look_secret(name: str) -> None:
    assert not looks_secret(name)


def test_scrub_removes_secrets_and_keeps_the_rest() -> None:
    environ = {name: f"value-of-{name}" for name in SECRET + KEPT}
    env, removed = scrub(environ)
    assert env == {name: f"value-of-{name}" for name in KEPT}
    assert removed == sorted(SECRET)


def test_scrub_does_not_modify_its_input() -> None:
    environ = {"GITHUB_TOKEN": "t", "PATH": "/bin"}
    scrub(environ, deny=["PATH"], set_vars=[("X", "1")])
    assert environ == {"GITHUB_TOKEN": "t", "PATH": "/bin"}


def test_allow_exact_name_keeps_it() -> None:
    env, removed = scrub({"GITHUB_TOKEN": "t", "NPM_TOKEN": "n"}, allow=["GITHUB_TOKEN"])
    assert env == {"GITHUB_TOKEN": "t"}
    assert removed == ["NPM_TOKEN"]


def test_allow_exact_name_is_case_sensitive_and_whole() -> None:
    env, removed = scrub({"GITHUB_TOKEN": "t"}, allow=["github_token", "GITHUB"])
    assert env == {}
    assert removed == ["GITHUB_TOKEN"]


def test_allow_glob() -> None:
    environ = {"AWS_REGION": "eu", "AWS_PROFILE": "p", "AWS_SECRET_ACCESS_KEY": "s",
               "OPENAI_API_KEY": "o"}
    env, removed = scrub(environ, allow=["AWS_RE*", "AWS_PROFIL?"])
    assert env == {"AWS_REGION": "eu", "AWS_PROFILE": "p"}
    assert removed == ["AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY"]


def test_deny_exact_and_glob_remove_ordinary_names() -> None:
    environ = {"PATH": "/bin", "MYCORP_URL": "u", "MYCORP_USER": "x", "LANG": "C"}
    env, removed = scrub(environ, deny=["LANG", "MYCORP_*"])
    assert env == {"PATH": "/bin"}
    assert removed == ["LANG", "MYCORP_URL", "MYCORP_USER"]


def test_deny_beats_allow() -> None:
    env, removed = scrub({"GITHUB_TOKEN": "t", "PATH": "/bin"}, allow=["GITHUB_TOKEN", "PATH"],
                         deny=["GITHUB_TOKEN", "PATH"])
    assert env == {}
    assert removed == ["GITHUB_TOKEN", "PATH"]


def test_set_adds_and_overrides() -> None:
    env, removed = scrub({"PATH": "/bin", "LANG": "C"},
                         set_vars=[("LANG", "C.UTF-8"), ("CI", "1")])
    assert env == {"PATH": "/bin", "LANG": "C.UTF-8", "CI": "1"}
    assert removed == []


def test_set_is_applied_after_the_rules() -> None:
    # The value chosen by the policy is not the host's secret, so it is given as set.
    env, removed = scrub({"GITHUB_TOKEN": "host-secret"}, set_vars=[("GITHUB_TOKEN", "dummy")])
    assert env == {"GITHUB_TOKEN": "dummy"}
    assert removed == ["GITHUB_TOKEN"]


def test_removed_is_sorted() -> None:
    _, removed = scrub({"Z_TOKEN": "1", "A_TOKEN": "2", "M_SECRET": "3"})
    assert removed == ["A_TOKEN", "M_SECRET", "Z_TOKEN"]


# ---------------------------------------------------------------------------------------------
# Properties.

_WORDS = st.sampled_from([
    "GIT", "AUTHOR", "NAME", "KEY", "TOKEN", "API", "APIKEY", "SECRET", "PASS", "PWD", "AWS",
    "AZURE", "GOOGLE", "PATH", "HOME", "SSH", "AUTH", "SOCK", "DBUS", "MONKEY", "GHTOKEN",
    "KEYBOARD", "LAYOUT", "CREDS", "X", "db", "token", "Key",
])
_NAMES = st.one_of(
    st.lists(_WORDS, min_size=1, max_size=4).map("_".join),
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=20),
)
_PATTERNS = st.lists(
    st.one_of(_NAMES, _NAMES.map(lambda n: n[: max(1, len(n) // 2)] + "*")), max_size=4
)


@given(environ=st.dictionaries(_NAMES, st.text(max_size=5), max_size=12), allow=_PATTERNS,
       deny=_PATTERNS)
def test_scrub_never_passes_a_secret_unless_allowed(
    environ: dict[str, str], allow: list[str], deny: list[str]
) -> None:
    import fnmatch

    env, removed = scrub(environ, allow=allow, deny=deny)
    assert set(env) | set(removed) == set(environ)
    assert not set(env) & set(removed)
    for name, value in env.items():
        assert environ[name] == value
        assert not any(fnmatch.fnmatchcase(name, p) for p in deny)
        if looks_secret(name):
            assert any(fnmatch.fnmatchcase(name, p) for p in allow)


@given(environ=st.dictionaries(_NAMES, st.text(max_size=5), max_size=12))
def test_scrub_without_options_keeps_exactly_the_harmless_names(environ: dict[str, str]) -> None:
    env, removed = scrub(environ)
    assert set(env) == {n for n in environ if not looks_secret(n)}
    assert removed == sorted(n for n in environ if looks_secret(n))


@given(name=_NAMES)
def test_looks_secret_ignores_case(name: str) -> None:
    assert looks_secret(name) == looks_secret(name.upper()) == looks_secret(name.lower())


@pytest.mark.parametrize("value", [
    "postgres://app:s3cret@db.internal/app", "redis://:s3cret@cache:6379/0",
    "http://me:pw@proxy.corp:3128", "amqp://guest:guest@localhost//",
    # found in review: a URL after others, or after some text
    "redis://a:6379,redis://u:pw@b:6379", "primary=https://x fallback=postgres://u:pw@db/x",
])
def test_a_url_with_a_password_is_removed_whatever_its_name(value: str) -> None:
    """Found in a red-team pass: ``DATABASE_URL``, ``REDIS_URL`` and the like carry a password
    under a name no word rule catches."""
    assert secret_value(value)
    env, removed = scrub({"DATABASE_URL": value, "PATH": "/bin"})
    assert env == {"PATH": "/bin"} and removed == ["DATABASE_URL"]
    assert scrub({"DATABASE_URL": value}, allow=["DATABASE_URL"])[0] == {"DATABASE_URL": value}


@pytest.mark.parametrize("value", [
    "https://github.com/o/r", "https://me@example.org/x", "/usr/bin", "file:///tmp/x",
    "http://host/a:b@c", "git@github.com:o/r.git",
])
def test_urls_without_a_password_stay(value: str) -> None:
    assert not secret_value(value)
