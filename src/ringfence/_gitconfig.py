"""Which files inside a writable root a repository's git config makes the host run or read.

``.git/config`` itself is protected, but it can name files elsewhere that git on the host later
runs or reads: ``core.hooksPath`` (husky keeps its hooks in ``.husky/_``, which git ignores, so
a planted hook there shows in no ``git status``), ``include.path`` / ``includeIf.*.path`` (a
config file of the project's, read as if it were ``.git/config``), and commands such as
``core.fsmonitor``, filter and diff drivers or ``!`` aliases that name a script of the project's.
``find_protected`` protects those that resolve inside the root.

Bounded: only the repository's own config files, the user's global ones, and what they include
(at most ``MAX_FILES`` files of at most ``MAX_BYTES`` each). No ``re`` (start-up).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_FILES = 16
MAX_BYTES = 1 << 20

# Settings whose value is a command line: a word of it that is a path inside the root makes
# that file protected. section -> names (None: every name in the section, e.g. alias.*).
_COMMANDS: dict[str, frozenset[str] | None] = {
    "core": frozenset({"fsmonitor", "sshcommand", "editor", "pager", "askpass", "gitproxy",
                       "alternaterefscommand"}),
    "sequence": frozenset({"editor"}),
    "gpg": frozenset({"program"}),
    "diff": frozenset({"external", "textconv", "command"}),
    "filter": frozenset({"clean", "smudge", "process"}),
    "merge": frozenset({"driver"}),
    "mergetool": frozenset({"cmd", "path"}),
    "difftool": frozenset({"cmd", "path"}),
    "credential": frozenset({"helper"}),
    "interactive": frozenset({"difffilter"}),
    "submodule": frozenset({"update"}),
    "uploadpack": frozenset({"packobjectshook"}),
    "remote": frozenset({"receivepack", "uploadpack"}),
    "alias": None,
    "pager": None,
}
_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}


def _value(raw: str) -> str:
    """A value as git reads it: quotes removed, escapes applied, comments cut."""
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == '"':
            quoted = not quoted
        elif c == "\\" and i + 1 < len(raw):
            i += 1
            out.append(_ESCAPES.get(raw[i], raw[i]))
        elif c in ";#" and not quoted:
            break
        else:
            out.append(c)
        i += 1
    return "".join(out).strip()


def entries(text: str) -> Iterator[tuple[str, str, str]]:
    """(section, name, value) for every setting; section is ``core`` or ``filter.lfs`` (the
    subsection as written), section and name lower-cased."""
    section = ""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):
            line = line[:-1] + lines[i]  # a continued value
            i += 1
        line = line.strip()
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                continue
            head = line[1:end].strip()
            quote = head.find('"')
            if quote >= 0:
                section = head[:quote].strip().lower() + "." + head[quote + 1:].rstrip('"')
            else:
                section = head.lower()
            line = line[end + 1:].strip()  # `[core] hooksPath = x` is valid
        if not line or line[0] in ";#":
            continue
        name, eq, raw = line.partition("=")
        yield section, name.strip().lower(), _value(raw) if eq else "true"


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def _words(command: str) -> Iterator[str]:
    for word in command.replace("'", " ").replace('"', " ").split():
        yield word.lstrip("!")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def named_paths(root: str, files: list[str], home: str) -> list[tuple[str, str, bool]]:
    """(path, why, is_dir_hint) for every path inside ``root`` that the config ``files`` (and
    what they include) name as hooks, included config or a command's program. Relative paths
    are taken as git takes them: includes beside the including file, the rest from the top of
    the working tree (``root``)."""
    out: list[tuple[str, str, bool]] = []
    queue = list(files)
    seen: set[str] = set()

    def resolve(value: str, base: str) -> str:
        if value.startswith("~/"):
            value = os.path.join(home, value[2:])
        return os.path.normpath(os.path.join(base, value))

    while queue and len(seen) < MAX_FILES:
        config = queue.pop(0)
        if config in seen:
            continue
        seen.add(config)
        text = _read(config)
        if text is None:
            continue
        for section, name, value in entries(text):
            if not value:
                continue
            top = section.partition(".")[0]
            if name == "path" and top in ("include", "includeif"):
                target = resolve(value, os.path.dirname(config))
                queue.append(target)
                if _inside(target, root):
                    out.append((target, f"git config included by {config}", False))
            elif top == "core" and name == "hookspath":
                target = resolve(value, root)
                if _inside(target, root) and target != root:
                    out.append((target, "git hooks (core.hooksPath)", True))
            elif top in _COMMANDS:
                names = _COMMANDS[top]
                if names is not None and name not in names:
                    continue
                if top == "core" and name == "fsmonitor" and value.lower() in (
                        "true", "false", "yes", "no", "on", "off", "1", "0"):
                    continue
                for word in _words(value):
                    if "/" not in word:
                        continue
                    target = resolve(word, root)
                    if _inside(target, root) and target != root:
                        out.append((target, f"run by git ({section}.{name})", False))
    return out
