"""Which files inside a writable root a repository's git config makes the host run or read.

``.git/config`` itself is protected, but it can name files elsewhere that git on the host later
runs or reads: ``core.hooksPath`` (husky keeps its hooks in ``.husky/_``, which git ignores, so
a planted hook there shows in no ``git status``), ``include.path`` / ``includeIf.*.path`` (a
config file of the project's, read as if it were ``.git/config``), and commands such as
``core.fsmonitor``, filter and diff drivers or ``!`` aliases that name a script of the project's.
``find_protected`` protects those that resolve inside the root.

Bounded: only the repository's own config files, the user's global ones, and what they include
(at most ``MAX_FILES`` files, each read whole, as git reads it). No ``re`` (start-up).
"""

from __future__ import annotations

import os

from .plan import INCLUDED_BY, _inside

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

MAX_FILES = 16

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
    "trailer": frozenset({"cmd", "command"}),
    "browser": frozenset({"cmd", "path"}),
    "web": frozenset({"browser"}),
    "man": frozenset({"cmd", "path"}),
    "guitool": frozenset({"cmd"}),
    "sendemail": frozenset({"sendmailcmd", "tocmd", "cccmd", "headercmd", "smtpserver"}),
    "lfs": frozenset({"path", "clean", "smudge"}),  # lfs.customtransfer.*, lfs.extension.*
}
# Settings that name a directory of programs git runs (or copies into new repositories).
_DIRS = {("core", "hookspath"): "git hooks (core.hooksPath)",
         ("init", "templatedir"): "git templates (init.templateDir), copied with their hooks"}
_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}


def entries(text: str) -> Iterator[tuple[str, str, str]]:
    """(section, name, value) for every setting, as git reads them; section is ``core`` or
    ``filter.lfs`` (the subsection as written), section and name lower-cased. A value may go
    on over lines (a backslash at the end of one); a comment never does."""
    section = ""
    lines = text.removeprefix("\ufeff").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
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
            line = line[end + 1:].lstrip()  # `[core] hooksPath = x` is valid
        if not line or line[0] in ";#":
            continue
        name, eq, raw = line.partition("=")
        if not eq:
            yield section, name.split(";")[0].split("#")[0].strip().lower(), "true"
            continue
        if not any(c in raw for c in '"\\;#'):  # the usual plain value
            yield section, name.strip().lower(), raw.strip()
            continue
        out: list[str] = []
        quoted = False
        j = 0
        while j < len(raw):
            c = raw[j]
            if c == '"':
                quoted = not quoted
            elif c == "\\":
                if j + 1 == len(raw):  # continued on the next line
                    if i >= len(lines):
                        break
                    raw, j = lines[i], 0
                    i += 1
                    continue
                j += 1
                out.append(_ESCAPES.get(raw[j], raw[j]))
            elif c in ";#" and not quoted:
                break
            else:
                out.append(c)
            j += 1
        yield section, name.strip().lower(), "".join(out).strip()


MAX_READ = 1 << 20


def _read(path: str) -> str | None:
    """A regular file's text (its first MAX_READ bytes), or None. Files a command controls
    are read here: a FIFO or a device in their place must not hang or flood the host's scan,
    nor be opened at all (opening some devices does something; see ``_safeopen``)."""
    from ._safeopen import open_regular

    try:
        fd = open_regular(path)
    except OSError:
        return None
    if fd is None:
        return None
    try:
        data = b""
        while len(data) < MAX_READ:
            chunk = os.read(fd, MAX_READ - len(data))
            if not chunk:
                break
            data += chunk
        return data.decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _words(command: str) -> Iterator[str]:
    """The words of a command line as a shell splits them (quotes kept together), without a
    leading ``!`` (aliases, helpers)."""
    word: list[str] = []
    quote = ""
    started = False
    for c in command:
        if quote:
            if c == quote:
                quote = ""
            else:
                word.append(c)
        elif c in "'\"":
            quote, started = c, True
        elif c.isspace() or c in ";|&()<>":
            if started or word:
                yield "".join(word).lstrip("!")
            word, started = [], False
        else:
            word.append(c)
    if started or word:
        yield "".join(word).lstrip("!")


def env_config(environ: Mapping[str, str]) -> str:
    """``GIT_CONFIG_COUNT`` / ``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n`` as config text."""
    out = []
    try:
        count = int(environ.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    for n in range(min(count, 1000)):
        key = environ.get(f"GIT_CONFIG_KEY_{n}", "")
        value = environ.get(f"GIT_CONFIG_VALUE_{n}", "")
        section, _, name = key.rpartition(".")
        head, _, sub = section.partition(".")
        if not head or not name:
            continue
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        header = f'[{head} "{sub}"]' if sub else f"[{head}]"
        out.append(f'{header}\n\t{name} = "{escaped}"\n')
    return "".join(out)


def config_files(common: str, gitdir: str, environ: Mapping[str, str], home: str
                 ) -> list[str]:
    """The config files git reads for a repository, system to worktree (as git 2.x does)."""
    files: list[str] = []
    if not environ.get("GIT_CONFIG_NOSYSTEM"):
        files.append(environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig")
    if environ.get("GIT_CONFIG_GLOBAL"):
        files.append(environ["GIT_CONFIG_GLOBAL"])
    else:
        xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files += [os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig")]
    files += [os.path.join(common, "config"), os.path.join(gitdir, "config.worktree")]
    return files


def named_paths(top: str, files: list[str], home: str, within: str | None = None,
                extra: str = "") -> list[tuple[str, str, bool]]:
    """(path, why, is_dir) for every path inside ``within`` (default: ``top``, the working
    tree's top) that the config ``files`` (and what they include, and ``extra`` config text)
    name as hooks, included config or a command's program. Relative paths are taken as git
    takes them: includes beside the including file, the rest from ``top``. Commands' words
    are all candidates (``sh lint.sh`` names ``lint.sh``); the caller keeps existing files."""
    within = within or top
    out: list[tuple[str, str, bool]] = []
    queue: list[str | None] = [*files, None if extra else ""]
    seen: set[str] = set()

    def resolve(value: str, base: str) -> str:
        if value.startswith("~/"):
            value = os.path.join(home, value[2:])
        return os.path.normpath(os.path.join(base, value))

    while queue and len(seen) < MAX_FILES:
        config = queue.pop(0)
        if config == "":
            continue
        if config is None:
            text: str | None = extra
            config = "the environment (GIT_CONFIG_COUNT)"
            base = top
        else:
            if config in seen:
                continue
            text = _read(config)
            base = os.path.dirname(config)
        seen.add(config)
        if text is None:
            continue
        for section, name, value in entries(text):
            if not value:
                continue
            top_name = section.partition(".")[0]
            if name == "path" and top_name in ("include", "includeif"):
                target = resolve(value, base)
                queue.append(target)
                if _inside(target, within):
                    out.append((target, f"{INCLUDED_BY}{config}", False))
            elif (top_name, name) in _DIRS and "." not in section:
                target = resolve(value, top)
                if _inside(target, within) and target != within:
                    out.append((target, _DIRS[(top_name, name)], True))
            elif top_name in _COMMANDS:
                names = _COMMANDS[top_name]
                if names is not None and name not in names:
                    continue
                if top_name == "core" and name == "fsmonitor" and value.lower() in (
                        "true", "false", "yes", "no", "on", "off", "1", "0"):
                    continue
                for word in _words(value):
                    if not word or word.startswith("-") or "=" in word:
                        continue
                    target = resolve(word, top)
                    if _inside(target, within) and target != within:
                        out.append((target, f"run by git ({section}.{name})", False))
    return out
