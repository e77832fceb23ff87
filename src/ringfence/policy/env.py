"""The command's environment: the caller's, minus what looks secret, plus the sandbox's own.

Pure. A name is removed when one of its ``_``-separated words is a secret word (``KEY``,
``TOKEN``, ``SECRET``, ``PASSWORD``, ``CREDENTIALS`` …) or ends in one (``APIKEY``,
``GHTOKEN``), when it starts with a big cloud's credential prefix (``AWS_``, ``AZURE_``,
``GOOGLE_``, ``CLOUDSDK_`` …), or when it names a way out of the sandbox (``SSH_AUTH_SOCK``,
``DBUS_SESSION_BUS_ADDRESS``, ``DOCKER_HOST`` …), or when its value is a URL with a password in it
(``DATABASE_URL=postgres://u:pw@db/x``). ``allow`` keeps a name anyway; ``deny`` removes more
names. ``GIT_AUTHOR_NAME`` and the like stay: words are matched whole.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SECRET_WORDS = frozenset({
    "KEY", "KEYS", "APIKEY", "SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD",
    "PASS", "PASSPHRASE", "PWD_HASH", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "COOKIE",
    "PRIVATE", "PAT", "SIGNATURE", "OTP",
    # a session key unlocks a vault (BW_SESSION); MYSQL_PWD is mysql's password; a JWT or a
    # webhook URL is a bearer secret; a DSN carries a password (SENTRY_DSN, DATABASE_DSN)
    "SESSION", "PWD", "JWT", "DSN", "WEBHOOK",
})
SECRET_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIALS")
CLOUD_PREFIXES = (
    "AWS_", "AZURE_", "ARM_CLIENT", "ARM_TENANT", "ARM_SUBSCRIPTION", "GOOGLE_", "GCLOUD_",
    "CLOUDSDK_", "GCP_", "DIGITALOCEAN_", "HCLOUD_", "LINODE_", "OCI_", "ALIBABA_CLOUD_",
    "VAULT_", "OP_", "HEROKU_", "NETLIFY_", "VERCEL_", "FLY_", "CLOUDFLARE_",
)
# Variables that point at a way out of the sandbox (agents, buses, daemons, displays).
ESCAPE_NAMES = frozenset({
    "SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_SYSTEM_BUS_ADDRESS", "DOCKER_HOST", "CONTAINER_HOST", "XAUTHORITY", "DISPLAY",
    "WAYLAND_DISPLAY", "KUBECONFIG", "KRB5CCNAME", "PULSE_SERVER", "TMUX", "STY",
})
# Never removed by the word rules (they contain a secret word but carry none).
HARMLESS = frozenset({"PWD", "OLDPWD", "PASS_MAX_DAYS", "KEYTIMEOUT", "GPG_TTY",
                      "XDG_SESSION_ID", "XDG_SESSION_TYPE", "XDG_SESSION_CLASS",
                      "XDG_SESSION_DESKTOP", "DESKTOP_SESSION"})


def secret_value(value: str) -> bool:
    """Whether ``value`` is a URL with a password in it (``postgres://u:pw@host/db``,
    ``redis://:pw@host``, a proxy URL with credentials): removed whatever the name."""
    rest = value
    while True:  # every URL in it (a list of servers, a URL after some text)
        scheme_end = rest.find("://")
        if scheme_end < 0:
            return False
        rest = rest[scheme_end + 3:]
        authority = rest
        for end in "/?#, ;":
            authority = authority.split(end, 1)[0]
        userinfo, at, _ = authority.rpartition("@")
        if at and ":" in userinfo:
            return True


def looks_secret(name: str) -> bool:
    """Whether the default rules remove ``name`` (case-insensitive)."""
    upper = name.upper()
    if upper in HARMLESS:
        return False
    if upper in ESCAPE_NAMES or upper.startswith(CLOUD_PREFIXES):
        return True
    for word in upper.replace("-", "_").split("_"):
        if word in SECRET_WORDS or (len(word) > 3 and word.endswith(SECRET_SUFFIXES)):
            return True
    return False


def _matches(name: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == name:
            return True
        if "*" in pattern or "?" in pattern:
            import fnmatch

            if fnmatch.fnmatchcase(name, pattern):
                return True
    return False


def scrub(
    environ: Mapping[str, str],
    *,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    set_vars: Iterable[tuple[str, str]] = (),
) -> tuple[dict[str, str], list[str]]:
    """The environment to give the command and the sorted names that were removed."""
    allow, deny = tuple(allow), tuple(deny)
    env: dict[str, str] = {}
    removed: list[str] = []
    for name, value in environ.items():
        if _matches(name, deny) or ((looks_secret(name) or secret_value(value))
                                    and not _matches(name, allow)):
            removed.append(name)
        else:
            env[name] = value
    env.update(set_vars)
    removed.sort()
    return env, removed
