"""Landlock fallback benchmark: what the fallback launcher (and its reaper) add to a command.

Prints, from one run (the cases take turns, so load changes fall on all alike), the median wall
time of:
- ``/bin/true`` run plainly;
- ``ringfence.run(["/bin/true"])`` in the Landlock fallback (in-process; ringfence is made to
  believe user namespaces are disabled, everything else is real);
- the same for ``sh -c 'sleep 2 >/dev/null 2>&1 & exit 0'``, whose background child the
  reaper must end (without a reaper it is left running);
with ratios against the plain command.

    python bench/fallback.py [--runs N] [--json]

To compare with another checkout, run it there (``PYTHONPATH=/that/checkout/src``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def medians_ms(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    for fn in cases.values():
        fn()  # warm up
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import ringfence
    from ringfence.backends import _landlock, linux

    if _landlock.abi_version() < 1:
        sys.exit("no Landlock on this kernel")
    linux._userns_status = lambda uid: "user namespaces are disabled (benchmark)"  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-") as tmp:
        ws = Path(tmp) / "project"
        (ws / ".git" / "hooks").mkdir(parents=True)
        (ws / ".git" / "config").write_text("[core]\n")
        pol = ringfence.Policy(workspace=str(ws), fallback="landlock",
                               limits=ringfence.Limits(max_processes=0))

        def fallback(argv: list[str]) -> Callable[[], object]:
            def run() -> object:
                result = ringfence.run(argv, pol)
                assert result.exit_code == 0 and result.mode == "landlock", result.stderr
                return result
            return run

        cases: dict[str, Callable[[], object]] = {
            "plain /bin/true": lambda: subprocess.run(["/bin/true"], check=True),
            "fallback /bin/true": fallback(["/bin/true"]),
            "fallback, a background child": fallback(
                ["/bin/sh", "-c", "sleep 2 >/dev/null 2>&1 & exit 0"]),
        }
        medians = medians_ms(cases, args.runs)
    plain = medians["plain /bin/true"]
    if args.json:
        print(json.dumps({"runs": args.runs, "median_ms": medians}, indent=2))
        return
    print(f"{args.runs} runs each, medians:")
    for name, ms in medians.items():
        print(f"  {name:32} {ms:8.2f} ms  x{ms / plain:6.1f}")


if __name__ == "__main__":
    main()
