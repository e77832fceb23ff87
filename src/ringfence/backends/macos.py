"""The macOS backend: runs a plan through ``/usr/bin/sandbox-exec`` (Seatbelt).

Thin on purpose: the profile and its parameters come from ``plan_macos`` (pure); the facts from
``_macos_facts`` (portable); starting, limits and the process-group watchdog from ``_spawn``
(plain POSIX, tested on Linux). What is left here is macOS's own: finding sandbox-exec, making
the private temp directory, and the doctor's probes. OS errors become ``SandboxError`` /
``UnavailableError`` here, at the boundary.
"""

from __future__ import annotations

import os
import sys

from ..errors import SandboxError, UnavailableError
from . import Outcome
from ._macos_facts import gather_facts

# macOS only: this tells type checkers run with --platform linux|win32 to skip the module.
assert sys.platform == "darwin"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..plan import Plan

__all__ = ["diagnose", "exec_cli", "find_sandbox_exec", "gather_facts", "run_captured",
           "start_checks"]


def find_sandbox_exec() -> str:
    """``/usr/bin/sandbox-exec`` (never looked up on PATH, where a look-alike could sit)."""
    from ..plan_macos import SANDBOX_EXEC

    if not (os.path.isfile(SANDBOX_EXEC) and os.access(SANDBOX_EXEC, os.X_OK)):
        raise UnavailableError(
            f"{SANDBOX_EXEC} is missing or not executable, so commands cannot be sandboxed on "
            "this Mac; it is part of macOS (restore it, e.g. by reinstalling macOS), or use "
            "--profile full-access to run without a sandbox"
        )
    return SANDBOX_EXEC


def start_checks(plan: Plan) -> list[str]:
    """Resolve the command as the sandbox will (127/126 errors); the argv to start."""
    from ._spawn import resolve_command

    found = resolve_command(plan.command[0], plan.env, plan.cwd)
    if plan.mode == "none":
        return [found, *plan.command[1:]]
    find_sandbox_exec()
    return list(plan.argv)


class Prepared:
    """Host-side state for one run: the argv and environment with the private temp directory
    filled in. ``close()`` removes the directory."""

    __slots__ = ("argv", "env", "tmpdir")

    def __init__(self, argv: list[str], env: dict[str, str], tmpdir: str) -> None:
        self.argv = argv
        self.env = env
        self.tmpdir = tmpdir

    def check_started(self, outcome: Outcome) -> None:
        """Mark the outcome ``setup_failed`` when sandbox-exec never ran the start shim (it
        rejected the profile): no mark in the private temp dir, and no timeout or signal that
        could have come first."""
        if not self.tmpdir or outcome.exit_code >= 128 or "timeout" in outcome.limits_hit:
            return
        if not os.path.exists(os.path.join(self.tmpdir, ".ringfence-started")):
            outcome.setup_failed = True

    def close(self) -> None:
        if self.tmpdir:
            import shutil

            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""


def prepare(plan: Plan) -> Prepared:
    """The private temp directory and the sandbox's cache directory. Fails closed."""
    import tempfile

    from ..plan_macos import fill_tmp_dir

    argv = start_checks(plan)
    if plan.mode == "none":
        return Prepared(argv, dict(plan.env), "")
    cache_root = plan.env.get("XDG_CACHE_HOME", "")
    try:
        if cache_root and plan.policy.profile == "workspace-write":
            os.makedirs(cache_root, mode=0o700, exist_ok=True)
        # the canonical path (/private/var/folders/...): Seatbelt matches resolved paths
        tmpdir = os.path.realpath(tempfile.mkdtemp(prefix="ringfence-tmp-"))
    except OSError as exc:
        raise SandboxError(f"cannot prepare the sandbox's directories: {exc}") from None
    argv, env = fill_tmp_dir(argv, plan.env, tmpdir)
    return Prepared(argv, env, tmpdir)


def exec_cli(plan: Plan, want_json: bool) -> Outcome:
    """The command line's run: the terminal passes through; with ``want_json`` the command's
    stdout goes to stderr (stdout carries only the JSON)."""
    from ._spawn import exec_group

    prep = prepare(plan)
    saved_stdout = -1
    try:
        if want_json:
            sys.stdout.flush()
            saved_stdout = os.dup(1)
            os.dup2(2, 1)
        outcome = exec_group(prep.argv, prep.env, plan.cwd, plan.rlimits, plan.timeout)
        prep.check_started(outcome)
    finally:
        if saved_stdout >= 0:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
        prep.close()
    if outcome.setup_failed:
        print("ringfence: sandbox-exec could not apply ringfence's profile (its message is "
              "above); run ringfence doctor, and please report it with your macOS version",
              file=sys.stderr)
        outcome.exit_code = 125
        outcome.setup_failed = False  # reported here, in the words for this OS
    return outcome


def run_captured(plan: Plan, *, stdin: bytes | None = None, capture: bool = True,
                 on_output: Callable[[str, bytes], None] | None = None) -> Outcome:
    from ._spawn import run_group

    prep = prepare(plan)
    try:
        outcome = run_group(prep.argv, prep.env, plan.cwd, plan.rlimits, plan.timeout,
                            output_limit=plan.output_limit, stdin=stdin, capture=capture,
                            on_output=on_output)
        prep.check_started(outcome)
        return outcome
    finally:
        prep.close()


# ---------------------------------------------------------------------------------------------
# ringfence doctor's probes.

def _probe(argv: list[str]) -> tuple[bool, str]:
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode == 0:
        return True, ""
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return False, err[-1] if err else f"exited {proc.returncode}"


def diagnose() -> dict[str, Any]:
    """What this Mac offers (``ringfence doctor``): sandbox-exec is there, applies a trivial
    profile, and applies ringfence's own profile to ``/usr/bin/true``."""
    import platform
    import tempfile

    from ..plan_macos import SANDBOX_EXEC, plan_macos
    from ..policy.model import Limits, Policy

    report: dict[str, Any] = {"platform": "darwin", "macos": platform.mac_ver()[0],
                              "machine": platform.machine(), "root": os.getuid() == 0}
    problems: list[str] = []
    present = os.path.isfile(SANDBOX_EXEC) and os.access(SANDBOX_EXEC, os.X_OK)
    info: dict[str, Any] = {"path": SANDBOX_EXEC, "present": present}
    trivial = own = False
    if present:
        trivial, why = _probe([SANDBOX_EXEC, "-p", "(version 1)(allow default)", "--",
                               "/usr/bin/true"])
        info["applies_a_profile"] = trivial
        if not trivial:
            problems.append(f"sandbox-exec cannot apply even a trivial profile: {why}")
        with tempfile.TemporaryDirectory(prefix="ringfence-doctor-") as ws:
            ws = os.path.realpath(ws)
            policy = Policy(workspace=ws, limits=Limits(max_processes=None))
            plan = plan_macos(policy, ["/usr/bin/true"], gather_facts(policy))
            from ..plan_macos import fill_tmp_dir

            argv, _ = fill_tmp_dir(plan.argv, plan.env, ws)
            own, why = _probe(argv)
        info["applies_ringfence_profile"] = own
        if trivial and not own:
            problems.append(f"sandbox-exec rejects ringfence's profile: {why}; please report "
                            "this with your macOS version")
    else:
        problems.append(f"{SANDBOX_EXEC} is missing: commands cannot be sandboxed")
    report["sandbox_exec"] = info
    report["process_limit"] = ("RLIMIT_NPROC (counts all of your processes)"
                               if os.getuid() != 0 else "unavailable for root")
    enforce = present and trivial and own
    report["profiles"] = {"read-only": enforce, "workspace-write": enforce, "full-access": True}
    report["problems"] = problems
    report["default_profile_enforceable"] = enforce
    return report
