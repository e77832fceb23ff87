"""Start-up benchmark: what ringfence adds to every command.

Prints, from one run, the median wall time of:
- ``/bin/true`` run plainly;
- ``/bin/true`` under bare bwrap (the same namespaces, no policy); on macOS, under bare
  ``sandbox-exec`` (an allow-everything profile), and ``/usr/bin/true`` throughout;
- ``ringfence run -- /bin/true`` (the command line, a new interpreter each time);
- ``ringfence.run(["/bin/true"])`` (the library's one-shot run, in-process);
each in a small workspace and in a 100,000-file workspace, with ratios against the plain
command and bare bwrap.

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


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm the page cache and the policy cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def make_big_workspace(path: Path, files: int = 100_000, per_dir: int = 1000) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / ".git").mkdir(exist_ok=True)
    for d in range(files // per_dir):
        sub = path / f"pkg{d:03d}"
        sub.mkdir(exist_ok=True)
        for f in range(per_dir):
            (sub / f"m{f:04d}.py").touch()


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
        small.mkdir()
        big = base / "big"
        make_big_workspace(big)
        cli = [sys.executable, "-m", "ringfence"]
        launcher = shutil.which("ringfence", path=os.path.dirname(sys.executable))
        if launcher:
            cli = [launcher]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        def sh(argv: list[str], cwd: Path) -> Callable[[], object]:
            return lambda: subprocess.run(argv, cwd=cwd, env=env, check=True)

        results: dict[str, float] = {}
        results["plain /bin/true"] = median_ms(sh([true], small), args.runs)
        results[bare_name] = median_ms(sh(bare, small), args.runs)
        for name, ws in (("small", small), ("100k files", big)):
            results[f"ringfence run ({name})"] = median_ms(
                sh([*cli, "run", "--", true], ws), args.runs)
            policy = ringfence.resolve_policy(ringfence.Options(workspace=str(ws)))
            results[f"library run ({name})"] = median_ms(
                lambda p=policy: ringfence.run([true], p), args.runs)
        results["interpreter start (python -c pass)"] = median_ms(
            sh([sys.executable, "-c", "pass"], small), args.runs)
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
