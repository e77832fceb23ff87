"""Attack: read the user's secrets from the environment the command inherits.

A token in ``GITHUB_TOKEN``, a vault's session key in ``BW_SESSION``, a database password in
``DATABASE_URL``: ringfence removes what looks secret (by name, and URLs with a password by
value) before the command starts. Each test prints the command's whole environment from inside
the sandbox and looks for the fake secrets; the control lets each name through with
``--env-allow`` and finds them."""

from __future__ import annotations

from tests.conftest import World

SECRETS = {
    "GITHUB_TOKEN": "FAKE-GH-TOKEN",
    "OPENAI_API_KEY": "FAKE-OPENAI",
    "AWS_SECRET_ACCESS_KEY": "FAKE-AWS",
    # found in a red-team pass
    "BW_SESSION": "FAKE-BW-SESSION",
    "MYSQL_PWD": "FAKE-MYSQL-PWD",
    "DATABASE_URL": "postgres://app:FAKE-DB-PASSWORD@db.internal/app",
    "REDIS_URL": "redis://:FAKE-REDIS-PASSWORD@cache:6379/0",
    "SENTRY_DSN": "https://FAKE-SENTRY@o1.ingest.example.invalid/1",
    "SLACK_WEBHOOK_URL": "https://hooks.example.invalid/services/FAKE-WEBHOOK",
    "CI_JOB_JWT": "FAKE-JWT",
}


def test_secret_variables_do_not_reach_the_command(world: World) -> None:
    result = world.sandbox("env", env=SECRETS)
    assert result.returncode == 0, result.stderr
    leaked = [name for name, value in SECRETS.items() if value in result.stdout]
    assert not leaked, f"these reached the command: {leaked}"
    assert "PATH=" in result.stdout  # the rest of the environment is there
    allowed = [opt for name in SECRETS for opt in ("--env-allow", name)]
    control = world.sandbox("env", *allowed, env=SECRETS)
    for value in SECRETS.values():
        assert value in control.stdout
