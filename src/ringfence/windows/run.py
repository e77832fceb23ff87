"""``ringfence.run()`` and ``ringfence run`` on Windows: policy + command → Windows plan →
backend → ``Result``. The runner's dispatch (runner.py, cli.py) calls ``run_windows``.

NOT YET RUN ON A REAL WINDOWS HOST (see the README). The parts that do not touch Windows —
``prepare``: the plan, and the refusal when ``ringfence windows setup`` has not run — are tested
on Linux (tests/windows/test_run.py).

Output: the command's stdout and stderr go to two unnamed temporary files of the caller's (the
sandbox user cannot open them by name; it only gets the inherited handles), read when the
command has ended; so output is not streamed while the command runs.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..policy.model import Policy
    from ..runner import Result
    from .plan import WindowsFacts, WindowsPlan


def windows_command(command: Sequence[str] | str) -> tuple[str, ...]:
    """A string runs through ``cmd.exe /d /s /c`` (as ``/bin/sh -c`` does elsewhere)."""
    if isinstance(command, str):
        return ("cmd.exe", "/d", "/s", "/c", command)
    if "\0" in "".join(command):
        from ..errors import PolicyError

        raise PolicyError("the command contains a NUL byte, which no program can receive")
    return tuple(command)


def prepare(policy: Policy, command: Sequence[str] | str, facts: WindowsFacts, *,
            cwd: str | None = None) -> WindowsPlan:
    """The plan, refused (UnavailableError naming ``ringfence windows setup``) when the sandbox
    users do not exist yet; full-access needs no setup."""
    from .plan import plan_windows, require_setup

    plan = plan_windows(policy, windows_command(command), facts, cwd=cwd)
    if plan.token is not None:
        require_setup(plan)
    return plan


def _facts(policy: Policy) -> WindowsFacts:
    if sys.platform == "win32":
        from .backend import gather_facts

        return gather_facts(policy, scan=True)
    from ..runner import no_backend

    raise no_backend()


def run_windows(policy: Policy, command: Sequence[str] | str, *, cwd: str | None = None,
                capture: bool = True, stdin: bytes | None = None,
                on_output: Callable[[str, bytes], None] | None = None) -> Result:
    """Run ``command`` in the Windows sandbox (see ``ringfence.run``). Refuses a policy this
    backend cannot enforce, as ``runner.make_plan`` does on Linux and macOS."""
    from ..runner import unenforceable

    problem = unenforceable(policy)
    if problem:
        from ..errors import UnavailableError

        raise UnavailableError(problem)
    facts = _facts(policy)
    plan = prepare(policy, command, facts, cwd=cwd)
    return _execute(plan, facts, capture=capture, stdin=stdin, on_output=on_output)


def _execute(plan: WindowsPlan, facts: WindowsFacts, *, capture: bool, stdin: bytes | None,
             on_output: Callable[[str, bytes], None] | None) -> Result:
    from ..runner import Result

    if sys.platform != "win32":
        from ..runner import no_backend

        raise no_backend()
    import contextlib
    import msvcrt
    import os
    import tempfile
    import time

    from . import backend

    limit = plan.output_limit
    out: dict[str, bytes] = {}
    hit: list[str] = []
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(3)]
        if stdin:
            files[0].write(stdin)
            files[0].flush()
            files[0].seek(0)
        handles = []
        for fh in files:
            os.set_inheritable(fh.fileno(), True)
            handles.append(int(msvcrt.get_osfhandle(fh.fileno())))
        start = time.monotonic()
        code, timed_out = backend.run_plan(plan, facts, (handles[0], handles[1], handles[2]))
        duration = time.monotonic() - start
        if timed_out:
            hit.append("timeout")
        for name, fh in (("stdout", files[1]), ("stderr", files[2])):
            fh.seek(0)
            data = fh.read(limit + 1) if limit is not None else fh.read()
            if limit is not None and len(data) > limit:
                data = data[:limit]
                if "output" not in hit:
                    hit.append("output")
            out[name] = data
    for name in ("stdout", "stderr"):
        if on_output is not None and out[name]:
            on_output(name, out[name])
        elif not capture and on_output is None:
            stream = sys.stdout if name == "stdout" else sys.stderr
            stream.flush()
            stream.buffer.write(out[name])
            stream.flush()
    return Result(
        exit_code=code, duration=duration, limits_hit=tuple(hit),
        mode="none" if plan.token is None else "windows",
        stdout=out["stdout"] if capture else None, stderr=out["stderr"] if capture else None,
        command=plan.command, env_removed=plan.env_removed, weaker=plan.weaker,
        layers=plan.layers)
