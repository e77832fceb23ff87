"""The bash parser (tree-sitter's grammar): what it finds in shell text, and properties that hold
for any text at all."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.approval import shell
from ringfence.approval.engine import decide
from ringfence.approval.model import Context

WS = "/home/u/proj"


def argvs(text: str) -> list[tuple[str, ...]]:
    return [c.argv for c in shell.parse(text).commands]


def test_lists_and_pipelines_are_split() -> None:
    assert argvs("a 1 | b 2 && c; d || e & f") == [
        ("a", "1"), ("b", "2"), ("c",), ("d",), ("e",), ("f",)]
    script = shell.parse("a | b | c")
    assert [[s.argv if s else None for s in p] for p in script.pipelines] == [
        [("a",), ("b",), ("c",)]]


def test_words_are_unquoted() -> None:
    assert argvs("""echo 'a b' "c d" e\\ f "g\\"h" 'i'"j"k""") == [
        ("echo", "a b", "c d", "e f", 'g"h', "ijk")]


def test_dynamic_and_glob_words_are_marked() -> None:
    cmd = shell.parse('ls $HOME "$x" ~/y *.py "lit" $(id)').commands[0]
    assert cmd.dynamic == (False, True, True, False, False, False, True)
    assert cmd.glob == (False, False, False, True, True, False, False)


@pytest.mark.parametrize(("text", "glob"), [
    ("*.o", True), ("a?", True), ("a[12]", True), ("'x'*", True), ("~", True), ("~root/x", True),
    ("PREFIX=~/x", True), ("PATH=/bin:~/bin", True), ("\\\\*", True),
    ("'*.o'", False), ("\\*.o", False), ("HEAD@{1}", False), ("{}", False), ("[", False),
    ("x]", False), ("'a'~", False), ("\\~", False), ("a~b", False), ('"~"/x', False),
])
def test_glob_marks_what_bash_expands(text: str, glob: bool) -> None:
    """A pattern or tilde bash expands is marked (its value is decided when it runs: no rule's
    literal word stands for it); quoted or escaped characters and brackets or braces bash
    leaves alone are not."""
    cmd = shell.parse(f"make {text}").commands[0]
    assert cmd.glob[1] is glob and not cmd.dynamic[1], (text, cmd.argv)


def test_variable_assignments_are_not_words() -> None:
    assert argvs("FOO=1 BAR=2 make -j4") == [("make", "-j4")]


def test_substitutions_are_flagged_and_their_commands_found() -> None:
    script = shell.parse("echo $(whoami) `date` <(ls)")
    assert shell.SUBSTITUTION in script.flags
    assert shell.PROCESS_SUBSTITUTION in script.flags
    assert ("whoami",) in argvs("echo $(whoami)")
    assert {("date",), ("ls",)} <= {c.argv for c in script.commands}


def test_redirection_targets() -> None:
    assert shell.parse("a > out 2>&1 >> log < in").writes == ["out", "log"]
    assert shell.parse("a &> both").writes == ["both"]
    assert shell.parse("a > $X").writes == [None]
    assert shell.parse("a > *.txt").writes == [None]
    assert shell.parse("a 2>&1 >&2").writes == []


def test_heredoc_and_herestring_feed_interpreters() -> None:
    fed = shell.parse("python3 <<EOF\nprint(1)\nEOF\n").fed_interpreters
    assert [c.argv for c in fed] == [("python3",)]
    assert [c.argv for c in shell.parse("bash <<< 'id'").fed_interpreters] == [("bash",)]
    piped = shell.parse("cat <<EOF | sh\nid\nEOF\n").fed_interpreters
    assert ("sh",) in [c.argv for c in piped]


def test_control_structures_are_flagged() -> None:
    for text in ("if a; then b; fi", "for i in 1; do b; done", "while a; do b; done",
                 "f() { a; }", "(a)", "case x in y) a;; esac"):
        assert shell.CONTROL in shell.parse(text).flags, text


def test_syntax_errors_are_flagged_not_raised() -> None:
    for text in ("'unterminated", "a |", "if then fi", "$(", "\0"):
        assert shell.SYNTAX_ERROR in shell.parse(text).flags, text


# --- properties (hypothesis) -----------------------------------------------------------------

SHELLISH = st.text(alphabet=st.sampled_from(list("abcsudo -|&;<>()$`'\"\\{}*~=!\n\t#0123")),
                   max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), SHELLISH))
def test_no_input_crashes_the_parser_or_the_engine(text: str) -> None:
    shell.parse(text)
    for mode in ("untrusted", "on-request", "never"):
        d = decide(text, (), Context(mode=mode, workspace=WS, writable=(WS,), cwd=WS))
        assert d.verdict in ("run", "ask", "forbid")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=6))
def test_no_argv_crashes_the_engine(argv: list[str]) -> None:
    d = decide(argv, (), Context(mode="untrusted", workspace=WS, writable=(WS,), cwd=WS))
    assert d.verdict in ("run", "ask", "forbid")


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz./-_", min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORD, min_size=1, max_size=3), st.lists(WORD, min_size=1, max_size=3),
       st.sampled_from(["$({})", "`{}`", '"$({})"', "<({})", ">({})"]),
       st.sampled_from(["ls", "cat", "echo", "grep x", "wc -l"]))
def test_a_substitution_never_runs_without_asking(outer: list[str], inner: list[str],
                                                   form: str, safe: str) -> None:
    """Whatever surrounds it, text with a command or process substitution is never taken as
    read-only: in the untrusted mode it asks (or is refused), in no mode is it safe-listed."""
    text = f"{safe} {' '.join(outer)} {form.format(' '.join(inner))}"
    for mode in ("untrusted", "on-request", "on-failure", "never"):
        d = decide(text, (), Context(mode=mode, workspace=WS, writable=(WS,), cwd=WS))
        assert d.approved_by != "safe-list", (text, d)
        if mode == "untrusted":
            assert d.verdict != "run", (text, d)


@pytest.mark.parametrize("text", ["ls $(id)", "ls `id`", "cat <(id)", "echo \"$(id)\""])
def test_substitution_examples(text: str) -> None:
    d = decide(text, (), Context(mode="untrusted", workspace=WS, writable=(WS,), cwd=WS))
    assert d.verdict == "ask"


# Found by fuzzing this module: tree-sitter-bash reads out of bounds on a "{" followed later by
# a 4-byte UTF-8 character (tree-sitter/tree-sitter-bash#337); in a fresh process this text
# crashes the parser more often than not (it depends on the memory layout).
CRASHER = (
    "\U000edecewV\U0004860d\x0c\u05c4\u0aae\u2d5a\U000505f4\u2964\U000679ae\x05"
    "\U00104596\U00087af2\u0b16\u23b36B\U000c5980\u236a\U000a88e7Y\x96\u2e09\u2880"
    "\U00075fd2\t\U000e0aa07\U0007b6d3\u2346^Un\U0004ea17\u0f21\U0002007b\U00036326{"
    "\u2441\U0005f254\U00106eb4*_\u22f9Eo2\U0008db58\u1e6b C@\U0008d96c\u02e1ijnE"
    "\U000fe7f9\U000a9569")


def test_text_that_crashes_the_parser_is_never_parsed() -> None:
    """Attack on the approval engine's host process: shell text that makes tree-sitter-bash
    read out of bounds kills the agent's process (a segmentation fault, not an exception).
    Such text is flagged without being parsed. Eight fresh interpreters each parse it; without
    the guard most of them die with SIGSEGV."""
    import subprocess
    import sys

    code = ("import sys; from ringfence.approval import shell; "
            "assert shell.UNREADABLE in shell.parse(sys.argv[1]).flags")
    for _ in range(8):
        done = subprocess.run([sys.executable, "-c", code, CRASHER], capture_output=True,
                              timeout=60)
        assert done.returncode == 0, (done.returncode, done.stderr[-300:])


def test_unreadable_text_asks_even_when_allowed_as_a_whole() -> None:
    """Nothing inside unparsed text was judged, so an allow rule for the whole text (an
    "always" answer) does not make it run unasked where flagged text asks (untrusted mode, or
    no sandbox): the always-ask list never saw it."""
    from ringfence.approval.model import Rule

    text = "{ rm -rf ~; } # \U0001f600"
    assert shell.UNREADABLE in shell.parse(text).flags
    rule = Rule(prefix=("/bin/sh", "-c", text), decision="allow")
    d = decide(text, (rule,), Context(mode="untrusted", workspace=WS, writable=(WS,), cwd=WS))
    assert d.verdict == "ask"
    assert "cannot read it" in d.reason
    bare = Context(mode="on-request", workspace=WS, writable=(WS,), cwd=WS, sandboxed=False)
    assert decide(text, (), bare).verdict == "ask"
