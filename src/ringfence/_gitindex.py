"""A strict reader, and a safe rewriter, of git's index file (``.git/index``), without git.

Why: a sandboxed command may write ``.git/index`` (``git add`` needs it). It can add a gitlink
(a mode-160000 entry) for a directory where it also made a repository with ``core.fsmonitor``
set; the host user's next plain ``git status`` recurses into that "submodule" and runs the
command's program on the host. So ringfence protects the gitlinks an index has at the start of
a run and, at its end, removes the ones the run added. Running the host's git on a repository a
command prepared is the very danger, hence this module. Format: git's
Documentation/gitformat-index (versions 2, 3, 4; SHA-1 and SHA-256 repositories).

What counts as a gitlink is what git counts: ``(mode & 0o170000) == 0o160000``. git takes an
entry's mode from the file as it is, so a mode such as ``0o360644``, which only something other
than git writes, is a gitlink to ``git status`` too (it recursed into one in our tests).

Strict: every entry must decode the way git's reader decodes it (names NUL-terminated where
the name length says, no NUL inside a reported name, v4 prefixes within the previous name,
no extended-flag bits git does not know), the entries must end exactly where the extensions
begin, and those exactly at the trailing hash. An index git would read differently with
``index.threads`` set (an end-of-entries or offset-table extension that does not match the
entries) is refused, as is a split index (``link``: its entries live in another file) and any
other required extension git would refuse. :func:`read` does not verify the trailing hash
(git refuses such an index, so what it reports is a superset); :func:`drop` does.

Bounds: an index larger than :data:`MAX_SIZE` (256 MiB, about two million entries) is not read;
a v4 one whose names take more than 32 bytes from previous names per byte of the file (plus
64 MiB) is refused (an index git writes takes about one; paths of a thousand bytes, 13).
Only ``os`` is imported at load time (the run path); the hash modules only by :func:`drop`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

MAX_SIZE = 256 << 20

# v4: at most this many bytes taken from previous names, per byte of the index, plus a slack
_COPY_FACTOR = 32
_COPY_SLACK = 64 << 20
# the mode 0o160000 as it sits, big-endian, in an entry written by git
_GITLINK_MODE = b"\x00\x00\xe0\x00"
_SIGNATURE = b"DIRC"


class Index:
    """What ringfence needs to know of an index: its format, its gitlinks, and the entries
    marked assume-unchanged or skip-worktree (``git status`` and ``git diff`` do not look at
    those files, so changes to them are hidden)."""

    __slots__ = ("version", "oid_len", "gitlinks", "hidden")

    def __init__(self, version: int, oid_len: int, gitlinks: tuple[str, ...],
                 hidden: tuple[str, ...]) -> None:
        self.version = version
        self.oid_len = oid_len
        self.gitlinks = gitlinks
        self.hidden = hidden

    def __repr__(self) -> str:
        return (f"Index(version={self.version}, oid_len={self.oid_len}, "
                f"gitlinks={self.gitlinks!r}, hidden={self.hidden!r})")


class _Parsed:
    """One decoded index: positions and names of what callers need. ``starts``, ``names``
    and ``keeps`` (the bytes of each name taken from the previous one, v4) are filled only
    when recorded."""

    __slots__ = ("version", "oid_len", "count", "gitlinks", "hidden", "end", "exts",
                 "starts", "names", "keeps", "split", "stripped")

    def __init__(self, version: int, oid_len: int, count: int, split: bool = False) -> None:
        self.split = split  # the part of a split index in .git/index: names may be stripped
        self.stripped: list[tuple[int, bool, bool]] = []  # (entry, gitlink, hidden), split only
        self.version = version
        self.oid_len = oid_len
        self.count = count
        self.gitlinks: list[tuple[int, bytes]] = []
        self.hidden: list[bytes] = []
        self.end = 0
        self.exts: list[tuple[bytes, int, int]] = []
        self.starts: list[int] | None = None
        self.names: list[bytes] | None = None
        self.keeps: list[int] | None = None


def _open(path: str) -> int | None:
    if sys.platform == "win32":  # no O_PATH; and binary mode, or reads translate CR LF
        import stat

        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_BINARY | os.O_NOINHERIT)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd
    from ._safeopen import open_regular

    return open_regular(path)


def _load(path: str) -> tuple[bytes, os.stat_result] | None:
    """The bytes of the regular file ``path`` and its status, or None (missing, not a regular
    file, unreadable, larger than MAX_SIZE). Never opens a FIFO or a device."""
    try:
        fd = _open(path)
    except (OSError, ValueError):
        return None
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if st.st_size > MAX_SIZE:
            return None
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, max(st.st_size + 1 - total, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_SIZE:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), st


def _entry(d: bytes, o: int, fx: int, prev: bytes, v4: bool, limit: int, empty: bool = False
           ) -> tuple[int, bytes, int, bool] | None:
    """Decode the entry at ``o`` as git does (``create_from_disk``): (where the next one
    starts, its name, the bytes of it taken from ``prev``, whether it is hidden), or None
    where git would read something else or refuse. ``fx``: where the flags are. IndexError
    where the entry runs past the end."""
    f = d[o + fx] << 8 | d[o + fx + 1]
    q = o + fx + 2
    x = 0
    if f & 0x4000:  # extended flags (git reads them whatever the version says)
        x = d[q] << 8 | d[q + 1]
        if x & ~0x6000:  # only skip-worktree and intent-to-add exist
            return None
        q += 2
    keep = 0
    if v4:  # bytes to strip from the end of the previous name: git's offset varint
        c = d[q]
        q += 1
        strip = c & 127
        while c & 128:
            if strip > len(prev):
                return None
            c = d[q]
            q += 1
            strip = ((strip + 1) << 7) | (c & 127)
        keep = len(prev) - strip
        if keep < 0:  # also: the first entry strips nothing, as git writes it
            return None
    nl = f & 0xFFF
    if nl == 0xFFF:  # 4095 bytes or more: up to the NUL
        e = d.find(0, q, limit)
        if e < 0 or keep + e - q < 0xFFF:
            return None
    else:  # git takes the byte after the name, as the length says, for its terminator
        e = q + nl - keep
        if (nl == 0 and not empty) or e < q or d[e]:
            return None
    name = prev[:keep] + d[q:e] if v4 else d[q:e]
    end = e + 1 if v4 else o + ((q - o + e - q + 8) & ~7)  # v2, v3: 1 to 8 NULs
    return end, name, keep, bool(f & 0x8000 or x & 0x4000)


def _entries(d: bytes, p: _Parsed) -> bool:
    """Decode the entries of ``d`` into ``p``; False where git would not read them as here.
    The usual entry (no flag set, a short name, not a gitlink) is decoded inline, the others
    by :func:`_entry`: this is ringfence's start-up path."""
    v4 = p.version == 4
    fx = 40 + p.oid_len  # where the flags are, from an entry's start
    fx2 = fx + 2
    step = fx + 10
    limit = len(d) - p.oid_len
    n = p.count
    # the smallest entry: v4, a name of one byte (prefix byte, suffix, NUL); else 8-aligned
    if n * (fx + 4 if v4 else (fx + 10) & ~7) > limit - 12:
        return False
    gitlinks = p.gitlinks
    hidden = p.hidden
    o = 12
    prev = b""
    # v4: each name is built from the previous one; a crafted index could make that copy
    # megabytes per entry. The bytes copied are bounded (an index git writes copies about
    # as many bytes as its names hold, a few times its size at most)
    budget = _COPY_FACTOR * len(d) + _COPY_SLACK
    for i in range(n):
        f = d[o + fx] << 8 | d[o + fx + 1]
        nl = f & 0xFFF
        if f < 0x4000 and 0 < nl < 0xFFF and not 0xE0 <= d[o + 26] < 0xF0:
            if not v4:
                if d[o + fx2 + nl]:
                    return False
                o += (step + nl) & ~7
                continue
            c = d[o + fx2]
            if c < 128:
                keep = len(prev) - c
                q = o + fx2 + 1
                e = q + nl - keep
                budget -= keep
                if keep < 0 or e < q or d[e] or budget < 0:
                    return False
                prev = prev[:keep] + d[q:e]
                o = e + 1
                continue
        r = _entry(d, o, fx, prev, v4, limit, p.split)
        if r is None:
            return False
        budget -= r[2]
        if budget < 0:
            return False
        gitlink = 0xE0 <= d[o + 26] < 0xF0  # (mode & 0o170000) == 0o160000
        if not r[1] and p.split:  # replaces a shared entry, whose name it takes
            p.stripped.append((i, gitlink, r[3]))
        elif gitlink:
            gitlinks.append((i, r[1]))
        if r[3] and r[1]:
            hidden.append(r[1])
        o, prev = r[0], r[1]
    if o > limit:
        return False
    p.end = o
    # a name git would cut short at a NUL (the usual entries are not reported)
    return not any(0 in name for _, name in gitlinks) and not any(0 in name for name in hidden)


def _record(d: bytes, p: _Parsed) -> bool:
    """Where each entry starts, its name, and (v4) the bytes of it taken from the previous
    one, all by :func:`_entry`; False if that ends anywhere but where :func:`_entries` did."""
    fx = 40 + p.oid_len
    v4 = p.version == 4
    limit = len(d) - p.oid_len
    starts: list[int] = []
    names: list[bytes] = []
    keeps: list[int] = []
    o = 12
    prev = b""
    for _ in range(p.count):
        r = _entry(d, o, fx, prev, v4, limit)
        if r is None:
            return False
        starts.append(o)
        names.append(r[1])
        keeps.append(r[2])
        o, prev = r[0], r[1]
    p.starts, p.names, p.keeps = starts, names, keeps
    return o == p.end


def _extensions(d: bytes, p: _Parsed) -> bool:
    """Walk the extensions; they must end exactly at the trailing hash."""
    limit = len(d) - p.oid_len
    o = p.end
    exts = p.exts
    while o < limit:
        if o + 8 > limit:
            return False
        q = o + 8 + int.from_bytes(d[o + 4:o + 8], "big")
        if q > limit:
            return False
        exts.append((d[o:o + 4], o, q))
        o = q
    return True


def _threaded_view_matches(d: bytes, p: _Parsed) -> bool:
    """Whether git with ``index.threads`` would see the entries we decoded: an end-of-index
    extension (where git looks for one: just before the hash) must point at our extensions,
    and an offset table must name our entries' starts (v4: at names that stand alone)."""
    # git's reader (read_eoie_extension, up to 2.5x at least) looks for a 24-byte one (an
    # offset and a SHA-1-sized hash) whatever the object format, while its writer gives it
    # 4 + the hash's size: in a SHA-256 repository those are two places. Either, if it holds
    # one, must be our last extension and point at it (the hash git checks there is over
    # extension headers only, and may run into the trailing hash, which git does not verify)
    places = {}
    for eoie_size in (24, 4 + p.oid_len):
        at = len(d) - p.oid_len - 8 - eoie_size
        places[at] = eoie_size
        if at >= 12 and d[at:at + 4] == b"EOIE" \
                and int.from_bytes(d[at + 4:at + 8], "big") == eoie_size:
            last = p.exts[-1] if p.exts else None
            if last is None or last[1] != at \
                    or int.from_bytes(d[at + 8:at + 12], "big") != p.end:
                return False
    for sig, start, end in p.exts:
        if sig == b"EOIE" and (start not in places or end - start != 8 + places[start]):
            return False
        if sig != b"IEOT":
            continue
        data = d[start + 8:end]
        if len(data) < 12 or int.from_bytes(data[:4], "big") != 1 or (len(data) - 4) % 8:
            return False
        if p.starts is None or p.keeps is None:
            return False
        entry = 0
        for k in range(4, len(data), 8):
            offset = int.from_bytes(data[k:k + 4], "big")
            nr = int.from_bytes(data[k + 4:k + 8], "big")
            if nr == 0 or entry + nr > p.count or p.starts[entry] != offset:
                return False
            if p.keeps[entry]:
                return False
            entry += nr
        if entry != p.count:
            return False
    return True


def _parse_as(d: bytes, oid_len: int, record: bool, split: bool = False) -> _Parsed | None:
    if len(d) < 12 + oid_len or d[:4] != _SIGNATURE:
        return None
    version = int.from_bytes(d[4:8], "big")
    if version not in (2, 3, 4):
        return None
    p = _Parsed(version, oid_len, int.from_bytes(d[8:12], "big"), split)
    try:
        if not _entries(d, p):
            return None
        if not _extensions(d, p):
            return None
        sigs = {sig for sig, _start, _end in p.exts}
        # git refuses an index with a required extension it does not know; a split index
        # has its entries in another file
        if any(not 65 <= sig[0] <= 90 and sig != b"sdir" and not (split and sig == b"link")
               for sig in sigs):
            return None
        if split and [sig for sig, _start, _end in p.exts].count(b"link") != 1:
            return None
        if (record or b"IEOT" in sigs) and not _record(d, p):
            return None
    except IndexError:  # an entry running past the end
        return None
    if not _threaded_view_matches(d, p):
        return None
    return p


def _parse(d: bytes, oid_len: int | None, record: bool = False) -> _Parsed | None:
    if oid_len is not None:
        return _parse_as(d, oid_len, record) if oid_len in (20, 32) else None
    # both ways: a crafted index could decode as either, and git reads it as the
    # repository's object format says; two readings are no answer
    sha1 = _parse_as(d, 20, record)
    sha256 = _parse_as(d, 32, record)
    if sha1 is not None and sha256 is not None:
        return None
    return sha1 or sha256


def _decode(names: list[bytes]) -> tuple[str, ...] | None:
    try:
        return tuple(os.fsdecode(name) for name in names)
    except UnicodeDecodeError:  # Windows: not UTF-8
        return None


def read(path: str, oid_len: int | None = None) -> Index | None:
    """The index at ``path``, or None: missing, not a regular file, unreadable, larger than
    MAX_SIZE, not an index this module understands (see the module's docstring), or
    inconsistent. ``oid_len``: 20 (SHA-1) or 32 (SHA-256), as ``extensions.objectformat``
    says; None decodes both ways and takes the one that fits (None if both do). Never raises
    for what the file holds."""
    loaded = _load(path)
    if loaded is None:
        return None
    p = _parse(loaded[0], oid_len)
    if p is None:
        return None
    gitlinks = _decode([name for _, name in p.gitlinks])
    hidden = _decode(p.hidden)
    if gitlinks is None or hidden is None:
        return None
    return Index(p.version, p.oid_len, gitlinks, hidden)


def _ewah(data: bytes, o: int) -> tuple[list[int], int] | None:
    """The set bits of the EWAH bitmap at ``o`` (git's ewah_io.c: bit count, word count, the
    64-bit words, the last run-length word's position), in order, and where it ends."""
    if o + 8 > len(data):
        return None
    bits = int.from_bytes(data[o:o + 4], "big")
    words = int.from_bytes(data[o + 4:o + 8], "big")
    end = o + 8 + 8 * words + 4
    if end > len(data):
        return None
    out: list[int] = []
    pos = 0
    w = o + 8
    stop = o + 8 + 8 * words
    while w < stop:
        rlw = int.from_bytes(data[w:w + 8], "big")
        run, literals = (rlw >> 1) & 0xFFFFFFFF, rlw >> 33
        if rlw & 1:
            if pos + 64 * run > bits + 64:
                return None
            out.extend(range(pos, pos + 64 * run))
        pos += 64 * run
        w += 8
        if w + 8 * literals > stop:
            return None
        for _ in range(literals):
            word = int.from_bytes(data[w:w + 8], "big")
            while word:
                low = word & -word
                out.append(pos + low.bit_length() - 1)
                word ^= low
            pos += 64
            w += 8
    if any(b >= bits for b in out[-1:]):
        return None
    return out, end


def read_split(path: str, oid_len: int) -> Index | None:
    """A split index (``git update-index --split-index``, ``core.splitIndex``): the part at
    ``path``, whose ``link`` extension names the shared index beside it
    (``sharedindex.<hash>``) and says which of its entries are deleted and which replaced (a
    replacing entry has no name of its own: it takes the shared entry's). The gitlinks and
    hidden entries of both parts, the replaced ones named; a shared entry deleted or
    replaced is still counted (more than git sees, never less). None as for :func:`read`,
    and where the parts do not fit together."""
    loaded = _load(path)
    if loaded is None:
        return None
    d = loaded[0]
    main = _parse_as(d, oid_len, False, split=True)
    if main is None:
        return None
    _sig, start, end = next(e for e in main.exts if e[0] == b"link")
    data = d[start + 8:end]
    if len(data) < oid_len:
        return None
    shared_path = os.path.join(os.path.dirname(path), "sharedindex." + data[:oid_len].hex())
    replaced: list[int] = []
    if len(data) > oid_len:
        deleted = _ewah(data, oid_len)
        if deleted is None:
            return None
        again = _ewah(data, deleted[1])
        if again is None or again[1] != len(data):
            return None
        replaced = again[0]
    if len(replaced) != len(main.stripped):
        return None
    shared_loaded = _load(shared_path)
    if shared_loaded is None:
        return None
    shared = _parse_as(shared_loaded[0], oid_len, True)
    if shared is None or shared.names is None or (replaced and replaced[-1] >= shared.count):
        return None
    gitlinks = [name for _, name in shared.gitlinks] + [name for _, name in main.gitlinks]
    hidden = [*shared.hidden, *main.hidden]
    for (_entry_at, gitlink, marked), at in zip(main.stripped, replaced, strict=True):
        if gitlink:
            gitlinks.append(shared.names[at])
        if marked:
            hidden.append(shared.names[at])
    named = _decode(list(dict.fromkeys(gitlinks)))
    hidden_named = _decode(list(dict.fromkeys(hidden)))
    if named is None or hidden_named is None:
        return None
    return Index(main.version, oid_len, named, hidden_named)


def _split_beside(path: str) -> bool:
    """Whether the index at ``path`` may be split: a shared index, which may hold gitlinks,
    next to it (git cannot read a split index without one)."""
    try:
        names = os.listdir(os.path.dirname(path) or ".")
    except OSError:
        return True
    return any(name.startswith("sharedindex.") for name in names)


def gitlinks(path: str, oid_len: int | None = None) -> tuple[str, ...] | None:
    """The paths of the gitlinks in the index at ``path``, in index order; None as for
    :func:`read`. Fast where the bytes of git's gitlink mode, 0o160000, occur nowhere in the
    file (and no shared index is beside it): then ``()`` without decoding the entries. Not
    seen that way: an entry whose mode git never writes but still takes for a gitlink
    (``0o360644``); :func:`read` sees those."""
    loaded = _load(path)
    if loaded is None:
        return None
    d = loaded[0]
    if _GITLINK_MODE not in d and not _split_beside(path):
        if len(d) < 32 or d[:4] != _SIGNATURE or int.from_bytes(d[4:8], "big") not in (2, 3, 4):
            return None
        return ()
    p = _parse(d, oid_len)
    if p is None:
        return None
    return _decode([name for _, name in p.gitlinks])


def _digest(data: bytes, oid_len: int) -> bytes:
    """SHA-1 or SHA-256 of ``data`` from CPython's own modules (hashlib would load OpenSSL)."""
    if oid_len == 20:
        import _sha1  # type: ignore[import-not-found,unused-ignore]

        out: bytes = _sha1.sha1(data).digest()
        return out
    try:
        import _sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python 3.12 and later
        import _sha2 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    out = _sha256.sha256(data).digest()
    return out


def _varint(value: int) -> bytes:
    """git's offset varint (``encode_varint``): big-endian groups of 7 bits, each group but
    the last one less than written."""
    out = [value & 127]
    value >>= 7
    while value:
        value -= 1
        out.append(128 | (value & 127))
        value >>= 7
    return bytes(reversed(out))


def _matching(p: _Parsed, wanted: set[str]) -> list[int]:
    found = []
    for i, name in p.gitlinks:
        try:
            if os.fsdecode(name) in wanted:
                found.append(i)
        except UnicodeDecodeError:
            continue
    return found


def _rewrite(d: bytes, wanted: set[str], oid_len: int | None) -> bytes | None:
    """The index ``d`` without the gitlinks named in ``wanted``, or None: nothing to remove,
    or an index that must stay as it is (see :func:`drop`)."""
    p = _parse(d, oid_len, record=True)
    if p is None or p.starts is None or p.names is None:
        return None
    n = p.oid_len
    trailer = d[-n:]
    if trailer != bytes(n) and _digest(d[:-n], n) != trailer:
        return None
    if any(not 65 <= sig[0] <= 90 for sig, _, _ in p.exts):  # sparse index
        return None
    removed = set(_matching(p, wanted))
    if not removed:
        return None
    bounds = [*p.starts, p.end]
    fx = 40 + n
    out = [_SIGNATURE, d[4:8], (p.count - len(removed)).to_bytes(4, "big")]
    run = 12  # start of the run of entries kept as they are
    v4 = p.version == 4
    names = p.names
    prev = b""  # v4: the name of the last entry kept
    for i in range(p.count):
        if i not in removed:
            prev = names[i]
            continue
        out.append(d[run:bounds[i]])
        run = bounds[i + 1]
        if not v4 or i + 1 in removed or i + 1 == p.count:
            continue
        # v4: the next entry's name was written against this one's; write it against the
        # last entry kept, as git would (the longest common prefix)
        s = bounds[i + 1]
        name = names[i + 1]
        common = 0
        for a, b in zip(prev, name, strict=False):
            if a != b:
                break
            common += 1
        at = s + fx + (4 if d[s + fx] & 0x40 else 2)
        out += [d[s:at], _varint(len(prev) - common), name[common:], b"\0"]
        run = bounds[i + 2]
    out.append(d[run:p.end])
    # what a removed entry makes stale: the cache tree, the untracked cache, fsmonitor's
    # state, the offsets of entries; other optional ones are dropped too: git rebuilds them
    out += [d[start:end] for sig, start, end in p.exts if sig == b"REUC"]
    body = b"".join(out)
    return body + _digest(body, n)


def drop(gitdir: str, paths: Collection[str], oid_len: int | None = None) -> bool:
    """Remove from ``gitdir/index`` its gitlinks named in ``paths`` (entries of other modes
    stay, named or not), as git writes an index: ``index.lock`` made exclusively, written,
    synced, renamed over ``index``. Other entries stay byte for byte; the index keeps its
    version and its mtime (git's racy-entry check compares entries' mtimes with it).

    False, and nothing changed, when: ``index.lock`` exists (git is at work), the index is
    not one :func:`read` accepts, its trailing hash does not match (all zeros, as written
    with ``index.skipHash``, passes), it has a required extension (a split or sparse index),
    or none of ``paths`` is a gitlink in it."""
    wanted = set(paths)
    index = os.path.join(gitdir, "index")
    lock = index + ".lock"
    if not wanted:
        return False
    loaded = _load(index)
    if loaded is None:
        return False
    first = _parse(loaded[0], oid_len)
    if first is None or not _matching(first, wanted):
        return False
    flags = (os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(lock, flags, 0o666)
    except OSError:
        return False
    done = False
    try:
        loaded = _load(index)  # again, now that git waits for us
        new = None if loaded is None else _rewrite(loaded[0], wanted, oid_len)
        if loaded is None or new is None:
            return False
        view = memoryview(new)
        while view:
            view = view[os.write(fd, view):]
        st = loaded[1]
        times = (st.st_atime_ns, st.st_mtime_ns)
        if os.utime in os.supports_fd:
            os.utime(fd, ns=times)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if os.utime not in os.supports_fd:  # Windows
            os.utime(lock, ns=times)
        os.replace(lock, index)
        done = True
        return True
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            try:
                os.unlink(lock)
            except OSError:
                pass
