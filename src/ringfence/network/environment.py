"""The environment that points a sandboxed command's tools at the proxy. Pure.

Inside the sandbox the proxy answers on 127.0.0.1:PORT for HTTP (CONNECT and absolute-form
requests) and SOCKS5 alike. Tools that ignore these variables simply cannot connect: the
sandbox's network namespace has nothing but its own loopback.
"""

from __future__ import annotations

# what a POSIX shell takes as one word without quotes (shlex.quote's set, which needs `re`:
# ~4 ms to import, on every run in the allowlist mode)
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-")


def quote(word: str) -> str:
    """``word`` as one word for a POSIX shell (as ``shlex.quote`` writes it)."""
    if word and all(c in _PLAIN for c in word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def proxy_env(port: int, python: str, connect: str) -> dict[str, str]:
    """``connect``: the path of ``network/connect.py`` (the ssh ProxyCommand)."""
    http = f"http://127.0.0.1:{port}"
    tunnel = " ".join(quote(a) for a in (python, "-I", "-S", connect, "127.0.0.1",
                                         str(port))) + " %h %p"
    socks = f"socks5h://127.0.0.1:{port}"  # socks5h: the proxy resolves names, not the client
    local = "localhost,127.0.0.1,::1"  # the sandbox's own loopback (its own servers)
    env = {
        # the conventional variables, both cases (curl reads lower-case http_proxy only)
        "http_proxy": http, "HTTP_PROXY": http, "https_proxy": http, "HTTPS_PROXY": http,
        "all_proxy": socks, "ALL_PROXY": socks, "no_proxy": local, "NO_PROXY": local,
        # what package managers read besides (or instead of) those
        "PIP_PROXY": http,
        "npm_config_proxy": http, "npm_config_https_proxy": http, "npm_config_noproxy": local,
        "YARN_HTTP_PROXY": http, "YARN_HTTPS_PROXY": http,
        "CARGO_HTTP_PROXY": http,
        # git over https reads http_proxy; git over ssh tunnels through the proxy with CONNECT
        "GIT_SSH_COMMAND": "ssh -o " + quote("ProxyCommand=" + tunnel),
    }
    return env
