"""Start-up benchmark: what ringfence adds to every command.

Prints, from one run (the cases take turns, so load changes fall on all alike), the median wall
time of:
- ``/bin/true`` run plainly;
- ``/bin/true`` under bare bwrap (the same namespaces, no policy); on macOS, under bare
  ``sandbox-exec`` (an allow-everything profile), and ``/usr/bin/true`` throughout;
- ``ringfence run -- /bin/true`` (the command line, a new interpreter each time);
- ``ringfence.run(["/bin/true"])`` (the library's one-shot run, in-process);
- on Linux, bubblewrap alone as ringfence starts it for the small workspace (its mounts,
  seccomp and handshake, without ringfence's own work): the floor the policy sets;
each in a small workspace and in a 100,000-file workspace, with ratios against the plain
command and bare bwrap. Both workspaces are shaped like a repository (``.git`` with hooks and
config); the large one adds 100 directories of 1,000 files.

    python bench/startup.py [--runs N] [--json]

Run it as the user who will use ringfence: as root, the process limit needs a pids cgroup whose
migration costs the kernel ~10 ms per run (an ordinary user gets RLIMIT_NPROC for free).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def medians_ms(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each case, in ms. The cases take turns (one run of each per round)
    so that a change in the machine's load during the benchmark falls on all of them alike."""
    for fn in cases.values():
        fn()  # warm the page cache, the policy cache and the scan memo
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            start = time.perf_counter()
            took = fn()
            end = time.perf_counter()
            # a case that times itself (leaving out its own setup) returns its seconds
            times[name].append(took if isinstance(took, float) else end - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def make_workspace(path: Path, files: int = 0, per_dir: int = 1000) -> None:
    """A repository-shaped workspace (``.git`` with hooks and config, as ``git init`` leaves
    it), with ``files`` empty files in directories of ``per_dir`` beside it."""
    (path / ".git" / "hooks").mkdir(parents=True, exist_ok=True)
    (path / ".git" / "config").write_text("[core]\n")
    for d in range(files // per_dir):
        sub = path / f"pkg{d:03d}"
        sub.mkdir(exist_ok=True)
        for f in range(per_dir):
            (sub / f"m{f:04d}.py").touch()


def ringfence_bwrap(policy: object, true: str) -> Callable[[], float]:
    """bubblewrap exactly as ringfence starts it for ``policy`` (every mount, seccomp, the
    info/block handshake), timed from the spawn to its exit, without ringfence's own work
    around it (the plan, placeholders, audit records: done untimed, per run). The difference
    between this and bare bwrap is what the policy's mount table costs inside bubblewrap."""
    from ringfence import _dirs, runner
    from ringfence.backends import linux

    plan = runner.make_plan(policy, [true])  # type: ignore[arg-type]

    def once() -> float:
        prep = linux.prepare(plan, _dirs.state_dir())
        try:
            start = time.perf_counter()
            pid = os.posix_spawn(prep.argv[0], prep.argv, dict(plan.env))
            for fd in prep.fds:
                os.close(fd)
            prep.fds = []
            prep.started(pid)
            os.waitpid(pid, 0)
            return time.perf_counter() - start
        finally:
            prep.close()

    return once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import ringfence

    true = "/usr/bin/true" if sys.platform == "darwin" else "/bin/true"
    if sys.platform == "darwin":
        bare_name = "bare sandbox-exec"
        bare = ["/usr/bin/sandbox-exec", "-p", "(version 1)(allow default)", "--", true]
    else:
        from ringfence.backends.linux import find_bwrap

        bwrap, _ = find_bwrap("bundled")
        bare_name = "bare bwrap"
        bare = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
                "--dev", "/dev", "--proc", "/proc", "--", true]
    base = Path(tempfile.mkdtemp(prefix="ringfence-bench-", dir=os.path.expanduser("~")))
    try:
        small = base / "small"
        make_workspace(small)
        big = base / "big"
        make_workspace(big, files=100_000)
        # write the 100,000 new inodes out now: left to background writeback, the flush runs
        # during the timed runs and its CPU and journal commits land on whichever case is next
        os.sync()
        # a workspace is not brand new: let its directories age past the scan memo's
        # racy-timestamp window (ringfence.plan.RACY_NS), as in any checkout older than 2 s
        time.sleep(2.5)
        cli = [sys.executable, "-m", "ringfence"]
        launcher = shutil.which("ringfence", path=os.path.dirname(sys.executable))
        if launcher:
            cli = [launcher]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        # the standard streams are /dev/null, as a terminal or an agent's pipes would be:
        # passed through. (Regular files would be copied through pipes, see
        # ringfence.backends._streams, ~1 ms more; whatever launched the benchmark must not
        # decide which case is measured.)
        null = subprocess.DEVNULL

        def sh(argv: list[str], cwd: Path) -> Callable[[], object]:
            return lambda: subprocess.run(argv, cwd=cwd, env=env, check=True, stdin=null,
                                          stdout=null, stderr=null)

        cases: dict[str, Callable[[], object]] = {
            "plain /bin/true": sh([true], small),
            bare_name: sh(bare, small),
        }
        for name, ws in (("small", small), ("100k files", big)):
            cases[f"ringfence run ({name})"] = sh([*cli, "run", "--", true], ws)
            policy = ringfence.resolve_policy(ringfence.Options(workspace=str(ws)))
            cases[f"library run ({name})"] = (
                lambda p=policy: ringfence.run([true], p))  # type: ignore[misc]
            if name == "small":  # the same without the audit log's two fdatasync'd records
                cases["library run, audit=False (small)"] = (
                    lambda p=policy: ringfence.run([true], p, audit=False))  # type: ignore[misc]
                if sys.platform == "linux":
                    cases["  of which bwrap with the policy's mounts"] = ringfence_bwrap(
                        policy, true)
        cases["interpreter start (python -c pass)"] = sh([sys.executable, "-c", "pass"], small)
        results = medians_ms(cases, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    plain = results["plain /bin/true"]
    bare_ms = results[bare_name]
    if args.json:
        print(json.dumps({"runs": args.runs, "uid": os.getuid(), "median_ms": results}))
        return 0
    print(f"median of {args.runs} runs, uid {os.getuid()}, {os.cpu_count()} CPUs")
    print(f"{'':38} {'ms':>8} {'x plain':>9} {'x bare':>9}")
    for name, ms in results.items():
        print(f"{name:38} {ms:8.2f} {ms / plain:9.1f} {ms / bare_ms:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
