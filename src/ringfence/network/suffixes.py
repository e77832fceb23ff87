"""Is a domain a public suffix? (``co.uk``, ``github.io``: names below it belong to anyone.)

A wildcard allow entry ``*.D`` over a public suffix D would let the command reach every site
anyone registers below D, so the policy refuses it when it loads (like ``*.com``). The answer
comes from the Public Suffix List as shipped by the ``publicsuffixlist`` package, ICANN and
private sections both (``github.io``, ``herokuapp.com``, ``s3.amazonaws.com`` are in the latter).

Only policies with wildcard entries get here, but they get here on every ``ringfence run``:
importing the package and parsing the whole list costs ~100 ms. So the list is parsed only
for the lines that can match (the rules ending in D's top-level label, and the few written in
Unicode), and each answer is remembered in ringfence's state directory (no sandbox can read or
write it), keyed by this Python's prefix and the list file's size and modification time: an
upgraded list is consulted afresh.
"""

from __future__ import annotations

import os
import sys

_CACHE_NAME = "public-suffix-cache.marshal"


def is_public_suffix(domain: str) -> bool:
    """``domain``: a normalised host name (lower-case ASCII, IDNA); unknown top-level labels
    count as public suffixes, as the list's own algorithm says."""
    cached = _cache_read()
    if cached is not None and domain in cached[1]:
        return bool(cached[1][domain])
    from publicsuffixlist import PSLFILE, PublicSuffixList

    tld = domain.rpartition(".")[2]
    with open(PSLFILE, encoding="utf-8") as fh:
        lines = [line for line in fh
                 if not line.startswith("//")
                 and (line.rstrip().rpartition(".")[2].lower() == tld or not line.isascii())]
    verdict = bool(PublicSuffixList(lines).is_public(domain))
    _cache_write(PSLFILE, domain, verdict,
                 cached[1] if cached is not None and cached[0] == _key(PSLFILE) else {})
    return verdict


def _cache_path() -> str:
    from .._dirs import state_dir

    return os.path.join(state_dir(), _CACHE_NAME)


def _key(path: str) -> tuple[str, str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (sys.prefix, path, st.st_size, st.st_mtime_ns)


def _cache_read() -> tuple[object, dict[str, bool]] | None:
    """(key, verdicts) if the cache matches the list file it was made from."""
    import marshal

    try:
        with open(_cache_path(), "rb") as fh:
            data = marshal.load(fh)
        key, verdicts = data
        if (not isinstance(key, tuple) or len(key) != 4 or key[0] != sys.prefix
                or not isinstance(verdicts, dict) or _key(key[1]) != key):
            return None
        return key, verdicts
    except (OSError, EOFError, ValueError, TypeError):
        return None


def _cache_write(path: str, domain: str, verdict: bool, verdicts: dict[str, bool]) -> None:
    import marshal

    key = _key(path)
    if key is None:
        return
    cpath = _cache_path()
    tmp = f"{cpath}.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(cpath), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as fh:
            marshal.dump((key, {**verdicts, domain: verdict}), fh)
        os.replace(tmp, cpath)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # a cache is an optimisation; never fail a run for it
