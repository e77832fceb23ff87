"""Windows path rules, pure (``ntpath`` semantics on any OS).

Two jobs:

- ``canonical(path, what)``: the one spelling ringfence uses for a path the policy names (a
  writable root, a deny-read path, the workspace): ``X:\\dir\\name``, upper-case drive, ``.`` and
  ``..`` resolved, trailing dots and spaces trimmed (Win32 does the same when it opens a path),
  ``\\\\?\\X:\\`` unwrapped, the default data stream (``f::$DATA``) and a directory's index
  (``d::$INDEX_ALLOCATION``) mapped to the file or directory itself. Whatever it cannot guard is
  refused with a PolicyError naming the path and the fix: the device namespace (``\\\\.\\``,
  ``\\\\?\\GLOBALROOT``), volume GUID paths, network shares (UNC, ``\\\\?\\UNC\\``), drive- or
  root-relative paths, reserved device names (``NUL``, ``COM1``, ``aux.txt`` …) and, for roots, a
  named alternate data stream (``file:stream``).
- ``key(path)``: the case-folded form used to compare paths (NTFS compares names without case;
  ``.GiT`` and ``.git`` are one directory).

What a path string cannot tell, the plan does not decide by string: a junction or symlink can
send any prefix elsewhere, and an 8.3 alias (``PROGRA~1``) is a second name for the same object.
So the plan puts every ACE on the *object* (access checks happen on the object, whatever name
opened it); the facts gatherer resolves each policy path to its final path with
``GetFinalPathNameByHandleW`` / ``GetLongPathNameW`` before planning; and the planner refuses a
name that still looks like an 8.3 alias, and any reparse point where it must put a guard.
"""

from __future__ import annotations

from ..errors import PolicyError

RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in ("1", "2", "3", "4", "5", "6", "7", "8",
                                                        "9", "\u00b9", "\u00b2", "\u00b3")]
)
"""Device names Win32 maps to devices in any directory (also with an extension: ``nul.txt``)."""

# Stream types that name the object itself: ``f::$DATA`` is the file's default stream;
# ``d::$INDEX_ALLOCATION`` and ``d:$I30:$INDEX_ALLOCATION`` open the directory.
_SELF_STREAMS = {("", "$DATA"), ("", "$INDEX_ALLOCATION"), ("$I30", "$INDEX_ALLOCATION")}


def fold(text: str) -> str:
    """Case-fold one name the way NTFS compares names: one upper-case character for one
    character (``str.upper`` would turn ``ß`` into ``SS``; NTFS's upcase table does not)."""
    out = []
    for ch in text:
        up = ch.upper()
        out.append(up if len(up) == 1 else ch)
    return "".join(out)


def looks_short_name(name: str) -> bool:
    """Whether ``name`` has the shape of an 8.3 alias (``PROGRA~1``, ``GIT~1.CFG``): up to six
    characters, ``~`` and digits, an extension of up to three. Such a name may be a second name
    of a long one, which only the file system can tell (``GetLongPathNameW``)."""
    base, dot, ext = name.partition(".")
    if dot and (len(ext) > 3 or "." in ext):
        return False
    stem, tilde, digits = base.rpartition("~")
    return bool(tilde and stem and digits.isdigit() and len(base) <= 8 and " " not in base)


def split_stream(name: str, what: str) -> tuple[str, str, str]:
    """``(name, stream, type)`` of the last component: ``f:s:$DATA`` → ``(f, s, $DATA)``."""
    parts = name.split(":")
    if len(parts) > 3:
        raise PolicyError(f"{what}: {name!r} has too many ':' to be a file or stream name")
    base = parts[0]
    stream = parts[1] if len(parts) > 1 else ""
    kind = parts[2].upper() if len(parts) > 2 else ("$DATA" if len(parts) > 1 else "")
    if len(parts) == 2 and stream.startswith("$"):
        kind, stream = stream.upper(), ""
    return base, stream, kind


def _trim(name: str) -> str:
    """Win32 trims trailing dots and spaces from every component (``.git.`` is ``.git``)."""
    return name.rstrip(". ")


def canonical(path: str, what: str = "path", *, named_stream: str = "refuse") -> str:
    """The canonical ``X:\\a\\b`` spelling of an absolute local path, or a PolicyError.

    ``named_stream``: ``refuse`` (roots, workspace) or ``base`` (deny-read: a stream is part of
    its file, so denying the file denies the stream).
    """
    if not path or "\0" in path:
        raise PolicyError(f"{what}: {path!r} is empty or contains a NUL character")
    p = path.replace("/", "\\")
    literal = False  # \\?\ paths are not normalized by Win32: what they say is what is opened
    upper = p.upper()
    if upper.startswith(("\\\\?\\UNC\\", "\\??\\UNC\\")) or (
        p.startswith("\\\\") and not upper.startswith(("\\\\?\\", "\\\\.\\"))
    ):
        raise PolicyError(
            f"{what}: {path} is on a network share; its access checks happen on the server, "
            "which knows nothing of the sandbox's identities; use a local directory"
        )
    if upper.startswith(("\\\\.\\", "\\??\\GLOBALROOT", "\\\\?\\GLOBALROOT")):
        raise PolicyError(
            f"{what}: {path} is in the device namespace (\\\\.\\), not a file system path; "
            "name the directory as X:\\dir"
        )
    if upper.startswith(("\\\\?\\", "\\??\\")):
        p = p[4:]
        literal = True
        if p.upper().startswith("VOLUME{"):
            raise PolicyError(
                f"{what}: {path} is a volume GUID path; mount the volume on a drive letter or "
                "folder and name that instead"
            )
    if len(p) < 2 or p[1] != ":" or not ("A" <= p[0].upper() <= "Z"):
        if p.startswith("\\"):
            raise PolicyError(f"{what}: {path} has no drive letter; write it as X:\\{p[1:]}")
        raise PolicyError(f"{what}: {path} is not an absolute path; write it as X:\\dir")
    if len(p) > 2 and p[2] != "\\":
        raise PolicyError(
            f"{what}: {path} is relative to the current directory of drive {p[:2]}; write it "
            f"as {p[:2]}\\{p[2:]}"
        )
    drive = p[0].upper() + ":"
    parts: list[str] = []
    raw = [c for c in p[3:].split("\\") if c != ""]
    for i, comp in enumerate(raw):
        last = i == len(raw) - 1
        if ":" in comp:
            if not last:
                raise PolicyError(f"{what}: {path}: ':' may only name a stream of the last "
                                  "component")
            comp, stream, kind = split_stream(comp, what)
            if (stream, kind) not in _SELF_STREAMS and named_stream != "base":
                raise PolicyError(
                    f"{what}: {path} names an alternate data stream; name the file or "
                    "directory itself"
                )
        if literal and (comp in (".", "..") or comp != _trim(comp)):
            raise PolicyError(
                f"{what}: {path} uses \\\\?\\ with a name Win32 would change ({comp!r}); such "
                "a file cannot be reached by ordinary paths; rename it"
            )
        if comp == ".":
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        comp = _trim(comp)
        if not comp:
            raise PolicyError(f"{what}: {path} has a component made only of dots or spaces")
        if any(ch in comp for ch in '<>"|?*') or any(ord(ch) < 32 for ch in comp):
            raise PolicyError(f"{what}: {path} contains a character Windows file names cannot")
        stem = fold(comp.split(".")[0].rstrip(" "))
        if stem in RESERVED_NAMES:
            raise PolicyError(
                f"{what}: {path} contains {comp!r}, which Windows maps to the {stem} device in "
                "every directory; rename it"
            )
        parts.append(comp)
    return drive + "\\" + "\\".join(parts)


def key(path: str) -> str:
    """The comparison key of a canonical path: case-folded."""
    return fold(path)


def is_within(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it, by canonical keys (``C:\\A\\.GIT`` is within ``c:\\a``)."""
    p, r = key(path), key(root).rstrip("\\")
    return p == r or p.startswith(r + "\\")


def parent(path: str) -> str:
    """The parent of a canonical path (the root ``X:\\`` is its own parent)."""
    head, _, _ = path.rstrip("\\").rpartition("\\")
    return head + "\\" if len(head) == 2 else head


def join(path: str, *names: str) -> str:
    """Join names (with ``/`` or ``\\`` inside) onto a canonical path."""
    out = path.rstrip("\\")
    for name in names:
        for comp in name.replace("/", "\\").split("\\"):
            if comp:
                out += "\\" + comp
    return out if len(out) > 2 else out + "\\"


def short_name_components(path: str) -> list[str]:
    """The components of ``path`` that look like 8.3 aliases."""
    return [c for c in path[3:].split("\\") if c and looks_short_name(c)]


def from_posix(path: str, drive: str = "C") -> str:
    """A POSIX path shown on a Windows drive (``/home/u/p`` → ``C:\\home\\u\\p``): how
    ``ringfence explain --platform windows`` shows this host's paths when it is not Windows."""
    return f"{drive}:\\" + "\\".join(c for c in path.split("/") if c)
