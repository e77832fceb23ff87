"""The environment that points the command's tools at the proxy (``network.environment``)."""

from __future__ import annotations

import random
import shlex

from ringfence.network.environment import proxy_env, quote


def test_quote_is_what_shlex_writes() -> None:
    """``quote`` (no ``re``, on the allowlist's start-up path) writes every word exactly as
    ``shlex.quote`` does: plain words bare, everything else single-quoted."""
    alphabet = "aZ09_@%+=:,./- '\"$`\\!*?[]{}~#&|;<>()\t\né\u00a0"
    words = ["", "'", "''", "a b", "-I", "/usr/bin/python3", "%h", "ProxyCommand=x 'y'"]
    rng = random.Random(5)
    words += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
              for _ in range(5000)]
    for word in words:
        assert quote(word) == shlex.quote(word), repr(word)


def test_ssh_proxy_command_survives_a_path_with_spaces_and_quotes() -> None:
    """git's ``GIT_SSH_COMMAND`` is read by a shell: an interpreter path with a space and a
    quote stays one word, and the ProxyCommand one argument."""
    env = proxy_env(3128, "/opt/my py/bin/python'3", "/x/connect.py")
    words = shlex.split(env["GIT_SSH_COMMAND"])
    assert words[:2] == ["ssh", "-o"] and len(words) == 3
    command = shlex.split(words[2].removeprefix("ProxyCommand="))
    assert command == ["/opt/my py/bin/python'3", "-I", "-S", "/x/connect.py", "127.0.0.1",
                       "3128", "%h", "%p"]
