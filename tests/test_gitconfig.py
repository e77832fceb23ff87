"""``ringfence._gitconfig``: reading git config the way git does, and what it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence._gitconfig import config_files, entries, env_config, named_paths


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
    # every word of a command is a candidate (the caller keeps those that exist)
    assert got == {(".husky/_", True), ("inc.cfg", False), ("tools/mon", False),
                   ("scripts/build.sh", False), ("sh", False), ("less", False)}


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


def test_entries_read_as_git_does() -> None:
    """Cases where a naive reader and git disagree (checked against git 2.39)."""
    text = ("\ufeff[core]\n"
            "\t# hooks live in C:\\\n"
            "\thooksPath = .githooks\n"
            "\tnote = a\\\\\\\n"
            "[x]\n"
            "\tfsmonitor = \"./my tools/x.sh\"\n")
    got = list(entries(text))
    assert ("core", "hookspath", ".githooks") in got
    assert ("core", "note", "a\\[x]") in got
    assert ("core", "fsmonitor", "./my tools/x.sh") in got


def test_named_paths_quoted_words_and_words_without_a_slash(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    config = tmp_path / "config"
    config.write_text("[core]\n\tfsmonitor = sh fsmon.sh\n[alias]\n"
                      "\tlint = \"!\\\"./my tools/x.sh\\\" --fix\"\n"
                      "[trailer \"s\"]\n\tcmd = t.sh\n")
    got = {p[len(str(root)) + 1:] for p, _, _ in named_paths(str(root), [str(config)], "/h")}
    assert {"fsmon.sh", "my tools/x.sh", "t.sh"} <= got


def test_config_from_the_environment_and_where_files_come_from() -> None:
    env = {"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "core.hooksPath",
           "GIT_CONFIG_VALUE_0": ".githooks", "GIT_CONFIG_KEY_1": "filter.x.clean",
           "GIT_CONFIG_VALUE_1": 'sh "a b.sh"'}
    got = list(entries(env_config(env)))
    assert ("core", "hookspath", ".githooks") in got
    assert ("filter.x", "clean", 'sh "a b.sh"') in got
    files = config_files("/r/.git", "/r/.git", {"GIT_CONFIG_SYSTEM": "/s"}, "/h")
    assert files == ["/s", "/h/.config/git/config", "/h/.gitconfig", "/r/.git/config",
                     "/r/.git/config.worktree"]
    files = config_files("/c", "/g", {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/x"},
                         "/h")
    assert files == ["/x", "/c/config", "/g/config.worktree"]


def test_missing_included_file_is_protected_and_a_missing_script_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An included config file is protected whether it exists or not (git skips a missing
    one, so the command could create it); a command's word is protected only when it names an
    existing file (any word is a candidate: ``git``, ``log``)."""
    from ringfence.plan import INCLUDED_BY, find_protected

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", "/dev/null")
    root = tmp_path / "ws"
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / ".git" / "config").write_text(
        "[include]\n\tpath = ../.gitconfig.local\n[alias]\n\tl = !git log --oneline\n")
    found = dict(find_protected(str(root), ()))
    assert found[str(root / ".gitconfig.local")].startswith(INCLUDED_BY)
    assert str(root / "git") not in found and str(root / "log") not in found
