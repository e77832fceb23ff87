"""The command line as a user (or an agent's harness) meets it: exit statuses, ``--json``,
stdin, ``explain`` and ``doctor``, and bad input, which must always end in one readable line on
stderr, exit 125, no traceback, and nothing changed on disk."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import World

PY = os.path.realpath(sys.executable)


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    """Every path under ``root`` with its size and mtime: equal snapshots mean nothing changed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):  # a directory's changes show in its entries
                out.append((os.path.relpath(path, root), 0, 0))
            else:
                out.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return sorted(out)


def assert_one_line_error(result: Any, *words: str) -> None:
    """Exit 125, exactly one line on stderr starting with ``ringfence:`` and naming the
    problem, nothing on stdout, no traceback."""
    assert result.returncode == 125, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ringfence:"), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""


# ---------------------------------------------------------------------------------------------
# Exit statuses.

def test_exit_status_is_the_commands(world: World) -> None:
    """``exit 3`` in the sandbox is 3 from ringfence."""
    assert world.sandbox("exit 3").returncode == 3
    assert world.sandbox("exit 0").returncode == 0


def test_killed_by_a_signal_is_128_plus_n(world: World) -> None:
    """A command killed by SIGTERM gives 143 (128+15), as a shell reports it."""
    assert world.sandbox("kill -TERM $$").returncode == 143
    assert world.sandbox("kill -KILL $$").returncode == 137


def test_missing_command_is_127(world: World) -> None:
    """A command that does not exist: 127 and one line naming it, no traceback."""
    result = world.run("run", "--", "ringfence-no-such-command")
    assert result.returncode == 127
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringfence:"), result.stderr
    assert "ringfence-no-such-command" in lines[0]
    result = world.run("run", "--", "./no-such-file")
    assert result.returncode == 127
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_not_executable_is_126(world: World) -> None:
    """A file without the execute bit: 126 and one line naming it."""
    script = world.workspace / "script.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o644)
    result = world.run("run", "--", "./script.sh")
    assert result.returncode == 126
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringfence:"), result.stderr
    assert "script.sh" in lines[0] and "Traceback" not in result.stderr


def test_program_under_host_tmp_is_refused(world: World) -> None:
    """A program that lives under the host's /tmp (which the sandbox replaces with its own):
    ringfence says so with 127 instead of a confusing failure inside."""
    tmp = tempfile.mkdtemp(prefix="ringfence-test-")
    try:
        prog = Path(tmp) / "prog"
        prog.write_text("#!/bin/sh\necho ran\n")
        prog.chmod(0o755)
        result = world.run("run", "--", str(prog))
        assert result.returncode == 127, result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith("ringfence:") and "/tmp" in result.stderr
    finally:
        shutil.rmtree(tmp)


def test_symlink_under_host_tmp_is_refused(world: World) -> None:
    """The same through a symlink in /tmp that points at a real program elsewhere (a virtual
    environment under /tmp is one): still 127 with one 'ringfence:' line."""
    tmp = tempfile.mkdtemp(prefix="ringfence-test-")
    try:
        link = Path(tmp) / "python"
        link.symlink_to(PY)
        result = world.run("run", "--", str(link), "-c", "print('ran')")
        assert result.returncode == 127, (result.returncode, result.stderr)
        assert result.stderr.startswith("ringfence:")
    finally:
        shutil.rmtree(tmp)


def test_command_starts_with_default_signal_dispositions(world: World) -> None:
    """Programs expect SIGPIPE to end them when a reader goes away (``yes | head -1``); no
    standard signal (1-31) is ignored. (The command line starts bubblewrap with glibc's
    posix_spawn, which leaves glibc's own two internal real-time signals, 32 and 33, ignored;
    glibc programs install their handlers for those themselves, and they are not masked.)"""
    result = world.sandbox("grep SigIgn /proc/self/status; yes | head -n 1")
    assert result.returncode == 0
    ignored, rest = result.stdout.split("\n", 1)
    assert ignored.startswith("SigIgn:\t")
    assert int(ignored.split("\t")[1], 16) & ~(0b11 << 31) == 0, ignored
    assert rest.splitlines() == ["y"]
    assert result.stderr == ""


def _failing_bwrap(world: World) -> Path:
    """A wrapper around the real bwrap that adds a bind of a source that does not exist: bwrap
    then fails while building the mounts, after it has started the sandbox's process, as it
    does when a planned path disappears before the run starts."""
    plan = json.loads(world.run("explain", "--json", "--", "true").stdout)
    wrapper = world.outside / "bwrap-wrapper"
    wrapper.write_text(f"#!/bin/sh\nexec '{plan['argv'][0]}' --ro-bind "
                       "/nonexistent-ringfence-test-source /ringfence-test-target \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def test_sandbox_setup_failure_is_125(world: World) -> None:
    """When the sandbox cannot be built, ringfence exits 125 with a line saying so, so a
    caller never mistakes it for the command failing (and the command never ran)."""
    wrapper = _failing_bwrap(world)
    result = world.run("run", "--bwrap", str(wrapper), "--", "touch", "created")
    assert not (world.workspace / "created").exists()  # the command never ran
    assert result.returncode == 125, (result.returncode, result.stderr)
    assert any(line.startswith("ringfence:") for line in result.stderr.splitlines())


# ---------------------------------------------------------------------------------------------
# --json, --capture, stdin.

JSON_KEYS = {"exit_code", "duration", "limits_hit", "mode"}


def test_json_is_one_object_on_stdout(world: World) -> None:
    """``--json``: stdout carries exactly one JSON object (a harness parses it whole); the
    command's own stdout goes to stderr so it cannot corrupt the object."""
    result = world.sandbox("printf 'to-%s\\n' stdout; echo to-stderr >&2; exit 4", "--json")
    assert result.returncode == 4
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    assert set(report) >= JSON_KEYS
    assert report["exit_code"] == 4
    assert report["mode"] == "bwrap"
    assert report["limits_hit"] == []
    assert isinstance(report["duration"], float) and 0 <= report["duration"] < 30
    assert "to-stdout" not in result.stdout
    assert "to-stdout" in result.stderr and "to-stderr" in result.stderr


def test_json_capture_puts_output_in_the_object(world: World) -> None:
    """``--json --capture``: the command's stdout and stderr are fields of the one object."""
    result = world.sandbox("echo to-stdout; echo to-stderr >&2", "--json", "--capture")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert set(report) >= JSON_KEYS
    assert report["stdout"] == "to-stdout\n"
    assert report["stderr"] == "to-stderr\n"
    assert result.stderr == ""


def test_stdin_passes_through(world: World) -> None:
    """``echo data | ringfence run -- cat``: the command reads ringfence's stdin."""
    result = world.run("run", "--", "cat", input=b"data\nmore\n")
    assert result.returncode == 0
    assert result.stdout == "data\nmore\n"


# ---------------------------------------------------------------------------------------------
# explain and doctor.

def test_explain_runs_nothing(world: World) -> None:
    """``explain`` prints the plan (text and ``--json``) and runs nothing: a command that
    would create a file does not."""
    before = snapshot(world.workspace)
    text = world.run("explain", "--", "touch", "created")
    assert text.returncode == 0, text.stderr
    assert "mode: bwrap" in text.stdout and "touch" in text.stdout
    data = world.run("explain", "--json", "--", "touch", "created")
    assert data.returncode == 0, data.stderr
    report = json.loads(data.stdout)
    assert report["mode"] == "bwrap"
    assert report["command"] == ["touch", "created"]
    assert report["policy"]["workspace"] == str(world.workspace)
    assert not (world.workspace / "created").exists()
    assert snapshot(world.workspace) == before  # no placeholders either


def test_doctor(world: World) -> None:
    """``doctor`` reports what this host can enforce; here, everything (exit 0)."""
    result = world.run("doctor")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "landlock ABI" in result.stdout
    assert "profiles:" in result.stdout


def test_doctor_json(world: World) -> None:
    """``doctor --json``: one object with the facts a harness checks before relying on it."""
    result = world.run("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("platform", "bubblewrap", "user_namespaces", "seccomp", "landlock_abi",
                "process_limit", "profiles", "problems", "default_profile_enforceable"):
        assert key in report, key
    assert isinstance(report["landlock_abi"], int)
    assert isinstance(report["overlay_masks"], bool)
    assert report["default_profile_enforceable"] is True
    assert report["profiles"]["workspace-write"] is True


def test_doctor_takes_no_command(world: World) -> None:
    assert_one_line_error(world.run("doctor", "true"), "doctor")


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 125, no traceback, nothing changed.

def _missing_workspace(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    missing = world.base / "missing-dir"
    return (["run", "--workspace", str(missing), "--", "touch", "created"], world.workspace,
            (str(missing), "no such directory"))


def _writable_is_a_file(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    afile = world.outside / "a-file"
    afile.write_text("x\n")
    return (["run", "--writable", str(afile), "--", "touch", "created"], world.workspace,
            (str(afile), "is a file"))


def _home_implicitly(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--", "touch", "created"], world.home, ("home", "--workspace"))


def _toml_syntax_error(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    policy = world.outside / "bad.toml"
    policy.write_text("[limits]\ntimeout = \n")
    return (["run", "--policy", str(policy), "--", "touch", "created"], world.workspace,
            (str(policy), "TOML"))


def _unknown_profile(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--profile", "yolo", "--", "touch", "created"], world.workspace,
            ("--profile", "yolo"))


def _unknown_project_key(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    (world.workspace / ".ringfence.toml").write_text("bogus_key = 1\n")
    return (["run", "--", "touch", "created"], world.workspace,
            (".ringfence.toml", "bogus_key"))


def _project_widens_network(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    (world.workspace / ".ringfence.toml").write_text('[network]\nmode = "on"\n')
    return (["run", "--", "touch", "created"], world.workspace,
            (".ringfence.toml", "network", "widen"))


def _unknown_option(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--frobnicate", "--", "touch", "created"], world.workspace,
            ("--frobnicate",))


def _missing_option_value(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--workspace"], world.workspace, ("--workspace", "value"))


def _no_command(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--"], world.workspace, ("command",))


def _no_command_at_all(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--network", "off"], world.workspace, ("command",))


def _bad_timeout(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--timeout", "soon", "--", "touch", "created"], world.workspace,
            ("--timeout", "soon"))


def _bad_memory(world: World) -> tuple[list[str], Path, tuple[str, ...]]:
    return (["run", "--memory", "lots", "--", "touch", "created"], world.workspace,
            ("--memory", "lots"))


BAD_INPUT: dict[str, Callable[[World], tuple[list[str], Path, tuple[str, ...]]]] = {
    "missing workspace": _missing_workspace,
    "writable root is a file": _writable_is_a_file,
    "workspace is $HOME implicitly": _home_implicitly,
    "TOML syntax error": _toml_syntax_error,
    "unknown profile": _unknown_profile,
    "unknown key in .ringfence.toml": _unknown_project_key,
    "project file widens network": _project_widens_network,
    "unknown option": _unknown_option,
    "missing option value": _missing_option_value,
    "no command after --": _no_command,
    "no command": _no_command_at_all,
    "bad --timeout": _bad_timeout,
    "bad --memory": _bad_memory,
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
@pytest.mark.parametrize("verb", ["run", "explain"])
def test_bad_input(world: World, case: str, verb: str) -> None:
    """Each mistake a user can make gets one line saying what is wrong, exit 125, and
    changes nothing on disk (the command is not run, no placeholder is created)."""
    args, cwd, words = BAD_INPUT[case](world)
    if args[0] == "run":
        args[0] = verb
    before = snapshot(world.base)
    result = world.run(*args, cwd=cwd)
    assert_one_line_error(result, *words)
    after = snapshot(world.base)
    assert [p for p in after if not _ringfence_state(p[0])] == [
        p for p in before if not _ringfence_state(p[0])]
    assert not (cwd / "created").exists()


def _ringfence_state(relpath: str) -> bool:
    """ringfence's own private state (the parsed-policy cache) may be written; nothing else."""
    state = os.path.join("home", ".local", "state")
    return relpath == os.path.dirname(state) or relpath == state or relpath.startswith(
        state + os.sep)


def test_unknown_subcommand(world: World) -> None:
    """A verb ringfence does not have: one line naming it, exit 125, nothing run."""
    result = world.run("execute", "--", "touch", "created")
    assert_one_line_error(result, "execute")
    assert not (world.workspace / "created").exists()


def test_home_as_explicit_workspace_is_accepted(world: World) -> None:
    """Refused implicitly, ``--workspace $HOME`` is accepted when the user names it."""
    result = world.run("run", "--workspace", str(world.home), "--", "touch", "created",
                       cwd=world.home)
    assert result.returncode == 0, result.stderr
    assert (world.home / "created").exists()


@pytest.fixture(params=["with space", "new\nline", "nön-äscii ✓"],
                ids=["space", "newline", "non-ascii"])
def odd_dirs(world: World, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path]]:
    name = request.param
    ws = world.base / f"ws {name}"
    extra = world.base / f"extra {name}"
    ws.mkdir()
    extra.mkdir()
    yield ws, extra


def test_odd_paths_work(world: World, odd_dirs: tuple[Path, Path]) -> None:
    """Paths with spaces, a newline or non-ASCII characters in ``--workspace`` and
    ``--writable`` are passed to the sandbox intact: both stay writable, the cwd is right."""
    ws, extra = odd_dirs
    script = 'echo a > "$1/in-ws"; echo b > "$2/in-extra"; pwd'
    result = world.run("run", "--workspace", str(ws), "--writable", str(extra), "--",
                       "/bin/sh", "-c", script, "sh", str(ws), str(extra), cwd=ws)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{ws}\n"
    assert (ws / "in-ws").read_text() == "a\n"
    assert (extra / "in-extra").read_text() == "b\n"
    # and still nothing outside them
    outside = world.sandbox(f"echo x > '{world.outside}/target.txt'", "--workspace", str(ws),
                            "--writable", str(extra), cwd=ws)
    assert outside.returncode != 0
    assert (world.outside / "target.txt").read_text() == "ORIGINAL\n"
    explained = world.run("explain", "--json", "--workspace", str(ws), "--writable",
                          str(extra), "--", "true", cwd=ws)
    policy = json.loads(explained.stdout)["policy"]
    assert policy["workspace"] == str(ws) and policy["writable"] == [str(extra)]
