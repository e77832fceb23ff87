"""The built-in lists (``builtin.rules``) and the argument checks they name. Pure but for reading
the package's own data file once.

A check gets the command's words and what is known about them and returns True when the entry
applies: for ``safe``, that the arguments are read-only; for ``ask``, that these arguments are
the dangerous ones.
"""

from __future__ import annotations

import os

from .model import where

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .model import Context

    Check = Callable[["Words", Context], bool]

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox"})
DOWNLOADERS = frozenset({"curl", "wget", "fetch", "aria2c", "http", "https", "xh", "lynx"})


class Words:
    """A simple command: its words, and per word whether it is only known when the shell runs
    (``dynamic``) or is expanded by it (``glob``: ``*``, ``~``, braces)."""

    __slots__ = ("argv", "dynamic", "glob")

    def __init__(self, argv: Sequence[str], dynamic: Sequence[bool] | None = None,
                 glob: Sequence[bool] | None = None) -> None:
        self.argv = tuple(argv)
        self.dynamic = tuple(dynamic) if dynamic is not None else (False,) * len(self.argv)
        self.glob = tuple(glob) if glob is not None else (False,) * len(self.argv)

    def tail(self, start: int) -> Words:
        return Words(self.argv[start:], self.dynamic[start:], self.glob[start:])

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0]) if self.argv else ""


_TABLE: dict[str, dict[str, list[str]]] | None = None


def table() -> dict[str, dict[str, list[str]]]:
    """``{kind: {program: [check, ...]}}`` from ``builtin.rules`` ("" = no check)."""
    global _TABLE
    if _TABLE is None:
        path = os.path.join(os.path.dirname(__file__), "builtin.rules")
        out: dict[str, dict[str, list[str]]] = {"safe": {}, "ask": {}, "wrapper": {}}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                words = line.split("#", 1)[0].split()
                if not words:
                    continue
                kind, program = words[0], words[1]
                out[kind].setdefault(program, []).append(words[2] if len(words) > 2 else "")
        _TABLE = out
    return _TABLE


def _short_has(arg: str, letters: str) -> bool:
    return arg.startswith("-") and not arg.startswith("--") and any(c in arg[1:] for c in letters)


# --- safe checks ---------------------------------------------------------------------------

_FIND_UNSAFE = {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fls", "-fprint", "-fprint0",
                "-fprintf"}


def find_read_only(w: Words, ctx: Context) -> bool:
    return not any(a in _FIND_UNSAFE for a in w.argv[1:])


def sources_output(w: Words, ctx: Context) -> bool:
    """``source <(curl …)``, ``. <(echo …)``: what a command prints, run as code."""
    return any(a.startswith("<(") for a in w.argv[1:])


def rg_read_only(w: Words, ctx: Context) -> bool:
    for a in w.argv[1:]:
        if a == "--":
            break
        if a.split("=", 1)[0] in ("--pre", "--hostname-bin", "--search-zip"):
            return False
        if _short_has(a, "z"):
            return False
    return True


_GIT_READ = {"status", "log", "diff", "show", "branch"}
_GIT_BRANCH_FLAGS = {"--list", "-l", "-a", "--all", "-r", "--remotes", "-v", "-vv", "--verbose",
                     "--show-current", "--no-color", "--color", "--column", "--no-column",
                     "--contains", "--no-contains", "--merged", "--no-merged", "--points-at",
                     "--sort", "--format", "--ignore-case", "-i", "--omit-empty"}


def git_read_only(w: Words, ctx: Context) -> bool:
    args = w.argv[1:]
    if not args or args[0] not in _GIT_READ:
        return False  # any global option (-c, -C, --git-dir, --exec-path...) before it: no
    for a in args[1:]:
        key = a.split("=", 1)[0]
        if key in ("-c", "--config-env", "--output", "--ext-diff", "--textconv", "--exec-path",
                   "--git-dir", "--work-tree", "-o") or key.startswith("--output"):
            return False
    if args[0] == "branch":
        listing = any(a in ("--list", "-l") for a in args[1:])
        for a in args[1:]:
            if a.startswith("-"):
                if a.split("=", 1)[0] not in _GIT_BRANCH_FLAGS:
                    return False
            elif not listing:
                return False  # `git branch NAME` creates a branch
    return True


def sed_print_only(w: Words, ctx: Context) -> bool:
    args = w.argv[1:]
    if len(args) < 2 or args[0] != "-n":
        return False
    script = args[1]
    head, _, last = script.rpartition(",")
    numbers = [head, last[:-1]] if head else [script[:-1]]
    if not script.endswith("p") or not all(n.isdigit() and n.isascii() for n in numbers):
        return False
    return not any(a.startswith("-") for a in args[2:])


def base64_no_output(w: Words, ctx: Context) -> bool:
    return not any(a.startswith("--output") or _short_has(a, "o") for a in w.argv[1:])


# --- ask checks ----------------------------------------------------------------------------

def _inside(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _long_prefix(arg: str, options: tuple[str, ...]) -> bool:
    """Whether ``arg`` (``--name`` or ``--name=value``) is one of ``options`` or a prefix of
    one: GNU getopt and git accept any unique prefix (``--recursiv``, ``--mirr``)."""
    key = arg.split("=", 1)[0]
    return key.startswith("--") and len(key) > 3 and any(o.startswith(key) for o in options)


def rm_recursive_outside(w: Words, ctx: Context) -> bool:
    recursive = False
    targets: list[int] = []
    dashdash = False
    for i, a in enumerate(w.argv[1:], start=1):
        if not dashdash and a == "--":
            dashdash = True
        elif not dashdash and a.startswith("-") and a != "-":
            if _long_prefix(a, ("--recursive",)) or _short_has(a, "rR"):
                recursive = True
        else:
            targets.append(i)
    if not recursive:
        return False
    roots = ctx.writable or (ctx.workspace,)
    for i in targets:
        if w.dynamic[i]:
            return True
        target = w.argv[i]
        if target.startswith("~"):
            return True
        if w.glob[i]:
            cut = min((target.index(c) for c in "*?[{" if c in target), default=len(target))
            base = os.path.dirname(target[:cut] + "x") or "."
            full = where(ctx, base, follow=True)  # the glob lists what the link points to
            if not any(_inside(full, r) for r in roots):
                return True
            continue
        full = where(ctx, target, follow=False)
        if not any(_inside(full, r) and full != r.rstrip("/") for r in roots):
            return True
    return False


def _expanded(w: Words, i: int) -> bool:
    """Whether word ``i`` is only known when the shell runs: a substitution or variable, a
    brace (``{+main,x}`` is ``+main x``) or a glob (a file named ``-f`` or ``+main``)."""
    return w.dynamic[i] or w.glob[i]


def git_push_force(w: Words, ctx: Context) -> bool:
    i, n = 1, len(w.argv)
    while i < n and w.argv[i].startswith("-"):  # global options: -C DIR, -c K=V, --git-dir=...
        a = w.argv[i]
        takes_value = a in ("-C", "-c", "--git-dir", "--work-tree", "--namespace",
                            "--config-env")
        if a in ("-c", "--config-env") or a.startswith(("--config-env=", "-c")):
            at = i + 1 if takes_value and i + 1 < n else i
            setting = w.argv[at]
            if _expanded(w, at) or "alias." in setting.lower() or "remote." in setting.lower() \
                    or "push." in setting.lower():
                return True  # `git -c alias.p='push --force' p`: the command is in config
        i += 2 if takes_value else 1
    if i >= n:
        return False
    if _expanded(w, i):
        return True  # `git {push,-f} origin`: the subcommand is only known at run time
    if w.argv[i] != "push":
        return False
    for j in range(i + 1, n):
        a = w.argv[j]
        if _expanded(w, j):
            return True  # `git push origin {+main,x}`, `git push $(echo -f) origin main`
        if _long_prefix(a, ("--force", "--force-with-lease", "--force-if-includes", "--mirror",
                            "--delete", "--prune")):
            return True
        if _short_has(a, "fd") or a.startswith("+") or (":" in a and a.startswith(":")):
            return True
    return False


def dd_to_device(w: Words, ctx: Context) -> bool:
    for i, a in enumerate(w.argv[1:], start=1):
        if _expanded(w, i):
            return True  # `dd {of=/dev/sda,if=/dev/zero}`: what it writes is known at run time
        if a.startswith("of=/dev/") and a not in ("of=/dev/null", "of=/dev/stdout",
                                                  "of=/dev/stderr"):
            return True
    return False


CHECKS: dict[str, Check] = {
    "find_read_only": find_read_only,
    "rg_read_only": rg_read_only,
    "git_read_only": git_read_only,
    "sed_print_only": sed_print_only,
    "base64_no_output": base64_no_output,
    "rm_recursive_outside": rm_recursive_outside,
    "git_push_force": git_push_force,
    "dd_to_device": dd_to_device,
    "sources_output": sources_output,
}


def applies(kind: str, w: Words, ctx: Context) -> str | None:
    """The entry's label (``builtin:NAME`` or ``builtin:NAME/CHECK``) when it applies."""
    checks = table()[kind].get(w.name)
    if checks is None:
        return None
    for check in checks:
        if not check or CHECKS[check](w, ctx):
            return f"builtin:{w.name}" + (f" ({check.replace('_', ' ')})" if check else "")
    return None


# --- wrappers ------------------------------------------------------------------------------

# options that take a value, per wrapper; and how many positionals come before the command
_WRAP_VALUES: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}), 0),
    "exec": (frozenset({"-a"}), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "time": (frozenset({"-f", "--format", "-o", "--output"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "stdbuf": (frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}), 0),
    "xargs": (frozenset({"-a", "--arg-file", "-d", "--delimiter", "-E", "-I", "-L", "-n",
                         "--max-args", "-P", "--max-procs", "-s", "--max-chars",
                         "--process-slot-var", "-e", "-i", "-l"}), 0),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "ionice": (frozenset({"-c", "--class", "-n", "--classdata", "-p", "-P", "-u"}), 0),
    "taskset": (frozenset(), 1),
    "busybox": (frozenset(), 0),  # busybox APPLET ARGS (busybox sh -c: see shell_script)
    "flock": (frozenset({"-w", "--wait", "--timeout", "-E", "--conflict-exit-code", "-c",
                         "--command"}), 1),  # flock FILE CMD ARGS, or flock FILE -c STRING
    "chrt": (frozenset({"-T", "--sched-runtime", "-P", "--sched-period", "-D",
                        "--sched-deadline"}), 1),  # chrt [options] PRIORITY CMD ARGS
}
# Wrappers whose command is a shell string: an option's value (``flock FILE -c 'rm -rf ~'``,
# ``script -c 'rm -rf ~'``: script's operand is its log file, never a command), or all their
# operands joined with spaces, as ``watch`` hands them to ``sh -c``.
_STRING_OPTIONS: dict[str, tuple[str, str]] = {"flock": ("c", "--command"),
                                               "script": ("c", "--command")}
_WATCH_VALUES = frozenset({"-n", "--interval", "-q", "--equexit", "-s", "--shotsdir"})


_FIND_RUNS = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


def _find_runs(w: Words) -> list[Words]:
    """What ``find`` runs or deletes, judged as commands: each ``-exec CMD … {} ;`` with ``{}``
    as each starting point (``find ~ -exec rm -rf {} +`` is ``rm -rf ~``), and ``-delete`` as
    ``rm -r`` of each starting point (what it deletes lies below them)."""
    argv, i = w.argv, 1
    while i < len(argv) and (argv[i] in ("-H", "-L", "-P") or argv[i].startswith("-O")):
        i += 1
    starts: list[tuple[str, bool]] = []
    while i < len(argv) and not argv[i].startswith(("-", "(", "!", ")", ",")):
        starts.append((argv[i], w.dynamic[i]))
        i += 1
    starts = starts or [(".", False)]
    # what find finds lies below each starting point: START/* (a glob, as the rm check reads it)
    below = [(path.rstrip("/") + "/*" if path != "/" else "/*", dynamic)
             for path, dynamic in starts]
    out: list[Words] = []
    while i < len(argv):
        a = argv[i]
        if a == "-delete":
            for found, dynamic in below:
                out.append(Words(("rm", "-r", found), (False, False, dynamic),
                                 (False, False, True)))
        elif a in _FIND_RUNS:
            end = i + 1
            while end < len(argv) and argv[end] not in (";", "+"):
                end += 1
            inner = list(zip(argv[i + 1:end], w.dynamic[i + 1:end], w.glob[i + 1:end],
                             strict=False))
            for found, dynamic in below if inner else []:
                words = [(found, dynamic, True) if x == "{}" else (x, d, g)
                         for x, d, g in inner]
                if os.path.basename(words[0][0]) == "rm":
                    words.insert(1, ("-r", False, False))  # on all find finds below it
                out.append(Words([x for x, _, _ in words], [d for _, d, _ in words],
                                 [g for _, _, g in words]))
            i = end
        i += 1
    return out


def unwrap(w: Words) -> list[Words]:
    """The command(s) a wrapper runs (``env -S 'a b'`` splits its string), or []."""
    if w.name == "find":
        return _find_runs(w)
    if table()["wrapper"].get(w.name) is None or w.name in ("script", "watch") or (
            w.name == "flock" and _string_option(w) is not None):
        return []  # (these run a shell string: see shell_script)
    values, positionals = _WRAP_VALUES.get(w.name, (frozenset(), 0))
    i = 1
    out: list[Words] = []
    argv = w.argv
    if w.name == "coproc":
        # `coproc CMD ARGS`, or `coproc [NAME] { CMD; }` (the grammar gives the braced
        # command's words to coproc: skip the name and the brace); no options
        if len(argv) > 2 and argv[2] in ("{", "("):
            return [w.tail(3)] if len(argv) > 3 else []
        if len(argv) > 1 and argv[1] in ("{", "("):
            return [w.tail(2)] if len(argv) > 2 else []
        return [w.tail(1)] if len(argv) > 1 else []
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if w.name == "env" and "=" in a and not a.startswith("-"):
            i += 1
            continue
        if a.startswith("-") and len(a) > 1:
            key = a.split("=", 1)[0]
            if w.name == "env" and key in ("-S", "--split-string"):
                at = i if "=" in a or i + 1 >= len(argv) else i + 1
                text = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv)
                                                            else "")
                split = text.split()  # (a string only known at run time: every word is too)
                out.append(Words(split, (w.dynamic[at],) * len(split),
                                 (w.glob[at],) * len(split)))
                i += 1 if "=" in a else 2
                continue
            if a in values:
                i += 2
            else:
                i += 1
            continue
        break
    i += positionals
    if w.name == "xargs":  # its operands come from its input: one unknown word stands for them
        inner = w.tail(i) if i < len(argv) else Words(("echo",))
        out.append(Words((*inner.argv, "{input}"), (*inner.dynamic, True),
                         (*inner.glob, False)))
    elif i < len(argv):
        out.append(w.tail(i))
    return out


def _string_option(w: Words) -> tuple[str | None, bool] | None:
    """``flock``'s and ``script``'s ``-c STRING`` (getopt's forms: ``-c S``, ``-cS``, ``-xc S``,
    ``--command S``, ``--command=S``): (string or None if dynamic, True), or None."""
    short, long = _STRING_OPTIONS[w.name]
    argv = w.argv
    for i in range(1, len(argv)):
        a = argv[i]
        if a == "--":
            return None
        nxt = (None if w.dynamic[i + 1] else argv[i + 1]) if i + 1 < len(argv) else ""
        if a == long:
            return (nxt, True)
        if a.startswith(long + "="):
            return (None if w.dynamic[i] else a[len(long) + 1:], True)
        if a.startswith("-") and not a.startswith("--") and short in a[1:]:
            rest = a[a.index(short, 1) + 1:]
            return ((None if w.dynamic[i] else rest) if rest else nxt, True)
    return None


def _watch_script(w: Words) -> tuple[str | None, bool] | None:
    argv = w.argv
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "--":
            i += 1
            break
        i += 2 if argv[i] in _WATCH_VALUES else 1
    if i >= len(argv):
        return None
    if any(w.dynamic[i:]):
        return (None, True)
    return (" ".join(argv[i:]), True)


def shell_script(w: Words) -> tuple[str | None, bool] | None:
    """For ``sh -c SCRIPT`` (any option cluster with c): (script or None if dynamic, True).
    Likewise for the wrappers that run a shell string (``flock -c``, ``script -c``,
    ``watch``)."""
    if w.name in _STRING_OPTIONS:
        return _string_option(w)
    if w.name == "watch":
        return _watch_script(w)
    if w.name == "trap":  # trap BODY SIGNAL...: the body runs when the signal comes
        ops = w.argv[2:] if w.argv[1:2] == ("--",) else w.argv[1:]
        if len(ops) < 2 or ops[0] == "-" or ops[0].startswith("-"):
            return None  # listing (-p, -l) or resetting (trap - SIG, trap SIG)
        at = len(w.argv) - len(ops)
        return (None if w.dynamic[at] else ops[0], True)
    if w.name not in SHELLS:
        return None
    argv = w.argv
    i = 1
    if w.name == "busybox":
        if len(argv) < 2 or os.path.basename(argv[1]) not in ("sh", "ash", "bash"):
            return None
        i = 2
    command_mode = False  # -c seen: the script is the first operand after the options
    while i < len(argv):
        a = argv[i]
        if a in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 2
            continue
        if a == "--" or a == "-":
            i += 1
            break
        if a.startswith("-") and not a.startswith("--") and "c" in a[1:]:
            command_mode = True
            i += 1
            continue
        if a.startswith(("-", "+")):
            i += 1
            continue
        break
    if not command_mode:
        return None
    if i >= len(argv):
        return ("", True)
    return (None if w.dynamic[i] else argv[i], True)
