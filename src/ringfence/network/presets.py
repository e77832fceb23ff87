"""Presets: the hosts a package manager uses, read from its own configuration (host side, I/O).

- ``pip``: the index URLs pip is configured with (its config files and ``PIP_INDEX_URL`` /
  ``PIP_EXTRA_INDEX_URL``, read through pip's own ``Configuration``); when no ``index-url`` is
  configured, pip's default index and the host it serves files from, both taken from pip itself.
- ``npm``: ``npm config get registry`` (which includes npm's default and ``npm_config_registry``).

No registry host name is written in ringfence: a company mirror works unchanged, and a preset
whose package manager is missing is an error naming it (fail closed, never "allow everything").
"""

from __future__ import annotations

import os
import sys

from ..errors import UnavailableError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# Run by the Python that has pip: prints one host or URL per line.
_PIP_SCRIPT = """
import os
from pip._internal.configuration import Configuration
from pip._internal.models.index import PyPI
c = Configuration(isolated=False)
c.load()
urls, index = [], None
for key, value in c.items():
    name = key.rpartition(".")[2]
    if name == "index-url":
        index = value
    if name in ("index-url", "extra-index-url", "find-links"):
        urls += value.split()
for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
    urls += os.environ.get(var, "").split()
    if var == "PIP_INDEX_URL" and os.environ.get(var):
        index = os.environ[var]
if index is None:
    urls += [PyPI.url, "https://" + PyPI.file_storage_domain + "/"]
print("\\n".join(urls))
"""


def _host_of(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # file:// indexes and local paths need no network
    return parts.hostname


def _run(argv: list[str], env: Mapping[str, str], avoid: tuple[str, ...] = ()) -> str | None:
    import subprocess

    if avoid:  # what the program runs in turn (npm's `#!/usr/bin/env node`) is looked up
        # on PATH too: not in a writable root either
        env = dict(env, PATH=os.pathsep.join(
            d for d in env.get("PATH", os.defpath).split(os.pathsep)
            if d and os.path.isabs(d) and _outside(d, avoid)))

    try:
        # from "/": npm reads a project's .npmrc from the directory it runs in (and the
        # nearest package.json above it), which a sandboxed command can write, so the
        # workspace could add its own host to the allowlist; only the user's and the
        # system's configuration count
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=dict(env),
                              stdin=subprocess.DEVNULL, check=False, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _outside(program: str, avoid: Iterable[str]) -> bool:
    """Whether ``program`` lies outside every directory in ``avoid`` (the writable roots): one
    inside could have been changed by a sandboxed command (a virtualenv's ``python3`` and its
    ``.pth`` files, ``node_modules/.bin/npm``), and ringfence runs it on the host."""
    from ..plan import _inside

    return not any(_inside(path, root) for root in avoid
                   for path in (os.path.abspath(program), os.path.realpath(program)))


def _which(name: str, environ: Mapping[str, str], avoid: tuple[str, ...]) -> str | None:
    """The first ``name`` on PATH outside ``avoid``: its directory too (a virtualenv's
    ``bin/python3`` is a link to a Python outside it, but runs the virtualenv's packages)."""
    import shutil

    for directory in environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which(name, path=directory) if directory else None
        if found and _outside(found, avoid) and _outside(
                os.path.dirname(os.path.dirname(os.path.abspath(found))), avoid):
            return found
    return None


def pip_hosts(environ: Mapping[str, str], avoid: Iterable[str] = ()) -> list[str]:
    avoid = tuple(avoid)
    candidates = []
    if _outside(os.path.dirname(os.path.dirname(os.path.abspath(sys.executable))), avoid):
        candidates.append(sys.executable)
    found = _which("python3", environ, avoid)
    if found:
        candidates.append(found)
    for python in dict.fromkeys(candidates):
        out = _run([python, "-I", "-c", _PIP_SCRIPT], environ, avoid)
        if out is not None:
            return [h for h in (_host_of(u) for u in out.splitlines()) if h]
    raise UnavailableError("network preset pip: no Python with pip found (outside the writable "
                           "roots, whose programs a command could have changed) to read its "
                           "configuration; install pip, or list the index host under allow")


def npm_hosts(environ: Mapping[str, str], avoid: Iterable[str] = ()) -> list[str]:
    npm = _which("npm", environ, tuple(avoid))
    out = _run([npm, "config", "get", "registry"], environ, tuple(avoid)) if npm else None
    host = _host_of(out.strip()) if out else None
    if not host:
        raise UnavailableError("network preset npm: cannot read npm's registry (is npm "
                               "installed outside the writable roots?); install npm, or list "
                               "the registry host under allow")
    return [host]


def expand(presets: Iterable[str], environ: Mapping[str, str] | None = None,
           avoid: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    """(preset, host) pairs for the named presets, read from this host's configuration by
    programs outside ``avoid`` (the writable roots)."""
    env = dict(os.environ if environ is None else environ)
    avoid = tuple(avoid)
    out: list[tuple[str, str]] = []
    for name in presets:
        hosts = pip_hosts(env, avoid) if name == "pip" else npm_hosts(env, avoid)
        out += [(name, h) for h in dict.fromkeys(hosts)]
    return tuple(out)
