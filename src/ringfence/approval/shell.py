"""Shell text → the simple commands in it, using tree-sitter's bash grammar.

Only CPU work (no I/O). The parser is built once per process, on first use: importing
tree-sitter costs tens of milliseconds, so nothing on the argv run path imports this module.

What comes out is deliberately plain: every simple command found anywhere in the text (inside
pipelines, ``&& || ;`` lists, substitutions, subshells, loops and functions), its words (a word
whose value is only known when the shell runs is marked dynamic), the files the text writes to
with redirections, the pipelines (so ``curl … | sh`` can be seen) and flags for the constructs
that make a command not automatically safe.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Flags (Script.flags).
SUBSTITUTION = "command substitution"
PROCESS_SUBSTITUTION = "process substitution"
EXPANSION = "a variable or other expansion"
CONTROL = "a loop, condition, function or subshell"
HEREDOC_TO_INTERPRETER = "a here-document or here-string fed to an interpreter"
SYNTAX_ERROR = "text that does not parse as bash"
UNREADABLE = "text that does not parse safely (the bash parser cannot read it)"
ASSIGNMENT = "a variable assignment"
BACKGROUND = "a background job"

_CONTROL_NODES = {
    "if_statement", "for_statement", "c_style_for_statement", "while_statement",
    "case_statement", "function_definition", "subshell", "compound_statement",
    "negated_command", "test_command",
}
_WRITE_OPS = {">", ">>", "&>", "&>>", ">|", "<>"}

INTERPRETERS = frozenset({
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox",
    "python", "python2", "python3", "perl", "ruby", "node", "nodejs", "deno", "bun", "php",
    "lua", "tclsh", "osascript", "pwsh", "powershell", "Rscript", "julia", "awk", "gawk",
})


class Command:
    """One simple command: its words and, per word, whether it is only known at run time."""

    __slots__ = ("argv", "dynamic", "glob")

    def __init__(self, argv: tuple[str, ...], dynamic: tuple[bool, ...],
                 glob: tuple[bool, ...]) -> None:
        self.argv = argv
        self.dynamic = dynamic
        self.glob = glob

    def __repr__(self) -> str:
        return f"Command({self.argv!r})"


class Script:
    """What the engine needs to know about a piece of shell text."""

    __slots__ = ("commands", "pipelines", "writes", "write_words", "flags",
                 "fed_interpreters", "read")

    def __init__(self) -> None:
        self.read = True  # False: not parsed at all (see _unsafe_for_the_parser)
        self.commands: list[Command] = []
        self.pipelines: list[list[Command | None]] = []
        self.writes: list[str | None] = []  # redirection targets; None when not literal
        self.write_words: list[str] = []  # ... as written
        self.flags: list[str] = []
        self.fed_interpreters: list[Command] = []  # given a here-doc/here-string, or <(...)

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags.append(name)


_PARSER: Any = None


def _parser() -> Any:
    global _PARSER
    if _PARSER is None:
        import tree_sitter
        import tree_sitter_bash

        _PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language()))
    return _PARSER


# bytes below 0xF0: deleting them leaves the lead bytes of 4-byte UTF-8 characters
_BELOW_F0 = bytes(range(0xF0))


def _unsafe_for_the_parser(src: bytes) -> bool:
    """tree-sitter-bash (0.23 to 0.25 at least) reads out of bounds -- a segmentation fault
    that takes the whole process down, depending on the memory layout -- on a ``{`` followed
    anywhere later by a 4-byte UTF-8 character (tree-sitter/tree-sitter-bash#337). Such text
    is not parsed: it is flagged, and the engine asks."""
    brace = src.find(b"{")
    return brace >= 0 and bool(src[brace:].translate(None, _BELOW_F0))


def join_continuations(text: str) -> str:
    """``text`` with its line continuations (backslash-newline, outside single quotes) removed,
    as the shell removes them before it splits words: ``r\\<newline>m -rf ~`` is ``rm -rf ~``
    to sh, but two words to a parser that keeps the pair."""
    if "\\\n" not in text:
        return text
    out: list[str] = []
    single = double = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if single:
            single = c != "'"
        elif c == "\\" and i + 1 < n:
            if text[i + 1] != "\n":
                out.append(text[i:i + 2])
            i += 2
            continue
        elif c == "'" and not double:
            single = True
        elif c == '"':
            double = not double
        out.append(c)
        i += 1
    return "".join(out)


def parse(text: str) -> Script:
    """The simple commands and risky constructs in ``text``. Never raises on bad input."""
    text = join_continuations(text)
    src = text.encode("utf-8", "surrogatepass")
    if _unsafe_for_the_parser(src):
        script = Script()
        script.read = False
        script.flag(UNREADABLE)
        return script
    tree = _parser().parse(src)
    script = Script()
    root = tree.root_node
    if root.has_error or "\0" in text:
        script.flag(SYNTAX_ERROR)
    _walk(root, script, 0)
    return script


def _text(node: Any) -> str:
    return bytes(node.text).decode("utf-8", "surrogateescape")


def _unescape(raw: str, escapable: str | None = None) -> str:
    """Remove backslash escapes as bash does: before any character in a bare word
    (``escapable`` None), only before ``escapable`` ones inside double quotes; a backslash
    before a newline removes both."""
    out = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and (escapable is None or raw[i + 1] in escapable):
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _shape(node: Any) -> str:
    """The word with every quoted or escaped character replaced by ``_`` (they expand to
    nothing), so what is left is what bash may expand."""
    if node.type in ("word", "number"):
        raw = _text(node)
        out = []
        i = 0
        while i < len(raw):
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append("_")
                i += 2
                continue
            out.append(raw[i])
            i += 1
        return "".join(out)
    if node.type == "concatenation":
        return "".join(_shape(c) for c in node.named_children)
    return "_"


def braces(shape: str) -> bool:
    """Whether bash brace-expands the word (``{a,b}``, ``x{,.bak}``, ``{1..3}``): an unquoted
    ``{`` whose matching ``}`` has a ``,`` or ``..`` between them at its own level."""
    for start, ch in enumerate(shape):
        if ch != "{" or (start and shape[start - 1] == "$"):
            continue
        depth = 0
        for i in range(start, len(shape)):
            c = shape[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            elif depth == 1 and (c == "," or shape.startswith("..", i)):
                return True
    return False


def expands(shape: str) -> bool:
    """Whether bash expands what is left unquoted in a word (see ``_shape``) when it runs: a
    pathname pattern (``*``, ``?``, ``[…]``: the files there decide), or a tilde (``~``,
    ``~user``: the home directory decides; bash also expands it after ``=`` and ``:`` in a
    word shaped like an assignment, ``make PREFIX=~/x``)."""
    if shape.startswith("~") or "=~" in shape or ":~" in shape or "*" in shape \
            or "?" in shape:
        return True
    start = shape.find("[")
    return start >= 0 and "]" in shape[start + 1:]


def word_value(node: Any) -> tuple[str, bool, bool]:
    """(value, dynamic, glob): the word as the program would receive it, when that is known.
    ``dynamic``: a parameter, substitution or other expansion, or a word bash brace-expands
    (``rm -rf {/x,/y}`` is ``rm -rf /x /y`` to bash, zsh and macOS's sh): its value is only
    known when the shell runs, and the value given is its text. ``glob``: a pattern or tilde
    bash expands (``expands``), so the value given is the pattern, not what the program gets.
    Either way no rule's literal word stands for it."""
    kind = node.type
    if kind in ("word", "number", "concatenation") and braces(_shape(node)):
        return _text(node), True, True
    if kind in ("word", "number"):
        return _unescape(_text(node)), False, expands(_shape(node))
    if kind == "raw_string":
        return _text(node)[1:-1], False, False
    if kind == "string":
        parts = []
        for child in node.named_children:
            if child.type != "string_content":
                return _text(node), True, False
            parts.append(_unescape(_text(child), '$`"\\\n'))
        return "".join(parts), False, False
    if kind == "concatenation":
        values, dynamic = [], False
        for child in node.named_children:
            value, dyn, _ = word_value(child)
            values.append(value)
            dynamic = dynamic or dyn
        glob = expands(_shape(node))  # (the whole word: `'a'~` has no tilde prefix)
        if dynamic:
            return _text(node), True, glob
        return "".join(values), False, glob
    return _text(node), True, False


def _command(node: Any, script: Script) -> Command:
    argv: list[str] = []
    dynamic: list[bool] = []
    glob: list[bool] = []
    for child in node.named_children:
        kind = child.type
        if kind in ("variable_assignment", "file_redirect", "heredoc_redirect",
                    "herestring_redirect"):
            continue
        target = child.named_children[0] if kind == "command_name" and child.named_children \
            else child
        if kind == "command_name" and not child.named_children:
            continue
        value, dyn, gl = word_value(target)
        argv.append(value)
        dynamic.append(dyn)
        glob.append(gl)
    cmd = Command(tuple(argv), tuple(dynamic), tuple(glob))
    script.commands.append(cmd)
    return cmd


def _walk(node: Any, script: Script, depth: int) -> Command | None:
    """Visit ``node``; return the Command when the node is a simple command."""
    if depth > 200:  # absurd nesting: give up on detail, never on caution
        script.flag(SYNTAX_ERROR)
        return None
    kind = node.type
    result: Command | None = None
    if kind == "command":
        result = _command(node, script)
        if any(c.type == "herestring_redirect" for c in node.named_children):
            script.fed_interpreters.append(result)
    elif kind in _CONTROL_NODES:
        script.flag(CONTROL)
    elif kind == "command_substitution":
        script.flag(SUBSTITUTION)
    elif kind == "process_substitution":
        script.flag(PROCESS_SUBSTITUTION)
    elif kind in ("simple_expansion", "expansion", "arithmetic_expansion"):
        script.flag(EXPANSION)
    elif kind == "variable_assignment" and node.parent is not None \
            and node.parent.type != "command":
        script.flag(ASSIGNMENT)
    elif kind == "file_redirect":
        _redirect(node, script)
    elif kind == "ERROR":
        script.flag(SYNTAX_ERROR)
    elif kind == "&" and not node.is_named:
        script.flag(BACKGROUND)

    if kind == "pipeline":
        stages: list[Command | None] = []
        for child in node.children:
            if not child.is_named:
                continue
            stages.append(_walk(child, script, depth + 1))
        script.pipelines.append(stages)
        return None
    if kind == "redirected_statement":
        heredoc = False
        inner: list[Command | None] = []
        for child in node.children:
            if child.type in ("heredoc_redirect", "herestring_redirect"):
                heredoc = True
            got = _walk(child, script, depth + 1)
            inner.append(got)
        if heredoc:
            body = inner[0] if inner else None
            if body is not None:
                script.fed_interpreters.append(body)
            # `cat <<EOF | python`: the grammar puts the rest of the pipeline in the redirect
            for child in node.children:
                if child.type == "heredoc_redirect":
                    for sub in child.named_children:
                        if sub.type in ("pipeline", "command"):
                            _mark_fed(sub, script)
        return inner[0] if inner else None
    for child in node.children:
        _walk(child, script, depth + 1)
    if kind == "process_substitution":
        # `sh <(curl …)`: the command that reads it is fed by what is inside
        parent = node.parent
        while parent is not None and parent.type not in ("command",):
            parent = parent.parent
        if parent is not None:
            found = [c for c in script.commands if c.argv and _same(parent, c)]
            script.fed_interpreters.extend(found[-1:])
    return result


def _same(node: Any, cmd: Command) -> bool:
    name = node.child_by_field_name("name")
    if name is None or not name.named_children:
        return False
    return word_value(name.named_children[0])[0] == cmd.argv[0]


def _mark_fed(node: Any, script: Script) -> None:
    if node.type == "command":
        name = node.child_by_field_name("name")
        if name is not None and name.named_children:
            value = word_value(name.named_children[0])[0]
            for cmd in script.commands:
                if cmd.argv and cmd.argv[0] == value:
                    script.fed_interpreters.append(cmd)
        return
    for child in node.named_children:
        _mark_fed(child, script)


def _redirect(node: Any, script: Script) -> None:
    op = ""
    dest: Any = None
    fd_dup = False
    for child in node.children:
        if not child.is_named:
            op = child.type
        elif child.type != "file_descriptor":
            dest = child
    if op in (">&", "<&", ">&-", "<&-"):
        if dest is None or dest.type == "number" or _text(dest) == "-":
            fd_dup = True
        else:
            op = ">"  # `>& file` is `&> file`
    if fd_dup or op not in _WRITE_OPS or dest is None:
        return
    value, dynamic, glob = word_value(dest)
    script.writes.append(None if dynamic or glob else value)
    script.write_words.append(value)
