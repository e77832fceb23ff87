"""``ringfence._gitconfig``: reading git config the way git does, and what it names."""

from __future__ import annotations

from pathlib import Path

from ringfence._gitconfig import entries, named_paths


def test_entries_sections_quotes_comments_continuations() -> None:
    text = (
        "[core]\n\tbare = false\n\tHooksPath = \".husky/_\" ; husky\n"
        "[filter \"Lfs\"]\n\tclean = git-lfs clean -- %f # comment\n"
        "[alias] st = status\n"
        "[diff.X]\n\ttextconv = tools/a\\\n b\n"
        "\tflag\n"
        "[alias]\n\tq = \"!echo \\\"a;b\\\"\"\n"
    )
    got = list(entries(text))
    assert ("core", "hookspath", ".husky/_") in got
    assert ("filter.Lfs", "clean", "git-lfs clean -- %f") in got
    assert ("alias", "st", "status") in got
    assert ("diff.x", "textconv", "tools/a b") in got
    assert ("diff.x", "flag", "true") in got
    assert ("alias", "q", '!echo "a;b"') in got


def test_named_paths(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "inc.cfg").write_text("[core]\n\tfsmonitor = ./tools/mon --x\n[include]\n"
                                  "\tpath = inc.cfg\n")
    config = root / ".git" / "config"
    config.write_text(
        "[core]\n\thooksPath = .husky/_\n\tfsmonitor = true\n\tpager = less\n"
        "[include]\n\tpath = ../inc.cfg\n"
        "[includeIf \"gitdir:~/w/\"]\n\tpath = ~/elsewhere.cfg\n"
        "[alias]\n\tb = !sh scripts/build.sh\n"
        "[remote \"origin\"]\n\turl = ../other/repo\n"
        "[credential]\n\thelper = /usr/bin/helper\n"
    )
    got = {(p[len(str(root)) + 1:], is_dir)
           for p, _, is_dir in named_paths(str(root), [str(config)], str(tmp_path))}
    assert got == {(".husky/_", True), ("inc.cfg", False), ("tools/mon", False),
                   ("scripts/build.sh", False)}


def test_named_paths_hooks_path_outside_or_root_itself(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    config = tmp_path / "config"
    config.write_text("[core]\n\thooksPath = ~/hooks\n[core]\n\thooksPath = .\n")
    assert named_paths(str(root), [str(config)], str(tmp_path)) == []


def test_named_paths_include_loop_and_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a").write_text("[include]\n\tpath = b\n")
    (root / "b").write_text("[include]\n\tpath = a\n")
    got = named_paths(str(root), [str(root / "a"), str(tmp_path / "missing")], str(tmp_path))
    assert sorted(p for p, _, _ in got) == [str(root / "a"), str(root / "b")]
