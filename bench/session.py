"""Session benchmark: what one more command costs in a session that is already open.

Prints, from one run (the cases take turns, so load changes fall on all alike), the median wall
time of:
- ``/bin/true`` run plainly with ``subprocess.run`` (the reference);
- ``/bin/true`` in an open ``ringfence.Session`` (``session.run``: request, spawn inside the
  sandbox, exit status, captured output);
- the same through ``AsyncSession`` (``await s.run``, one at a time, timed inside one running
  event loop after the others, since ``run_until_complete`` per call would time the loop's
  start-up instead);
- a one-shot ``ringfence.run(["/bin/true"])`` (a new sandbox each time), for comparison;
- starting and closing a session.
with ratios against the plain command. The target is a session command under 3 ms.

    python bench/session.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from startup import make_workspace, medians_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import ringfence

    base = Path(tempfile.mkdtemp(prefix="ringfence-bench-", dir=os.path.expanduser("~")))
    try:
        ws = base / "ws"
        make_workspace(ws)
        time.sleep(2.5)  # past the scan memo's racy-timestamp window, as in a real checkout
        policy = ringfence.resolve_policy(ringfence.Options(workspace=str(ws)))
        session = ringfence.Session(policy)

        def start_close() -> None:
            ringfence.Session(policy).close()

        cases: dict[str, Callable[[], object]] = {
            "plain /bin/true (subprocess.run)": lambda: subprocess.run(["/bin/true"],
                                                                       check=True),
            "session.run(['/bin/true'])": lambda: session.run(["/bin/true"]),
        }
        results = medians_ms(cases, args.runs)

        async def in_loop() -> float:
            async with ringfence.AsyncSession(policy) as s:
                await s.run(["/bin/true"])
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    await s.run(["/bin/true"])
                    times.append(time.perf_counter() - start)
            return statistics.median(times) * 1000

        results["await async_session.run(...)"] = asyncio.run(in_loop())
        few = max(10, args.runs // 20)
        results.update(medians_ms({
            "one-shot ringfence.run (new sandbox)": lambda: ringfence.run(["/bin/true"],
                                                                         policy),
            "session start + close": start_close,
        }, few))
        session.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    plain = results["plain /bin/true (subprocess.run)"]
    if args.json:
        print(json.dumps({"runs": args.runs, "uid": os.getuid(), "median_ms": results}))
        return 0
    print(f"median of {args.runs} runs ({few} for the last two), uid {os.getuid()}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':40} {'ms':>8} {'x plain':>9}")
    for name, ms in results.items():
        print(f"{name:40} {ms:8.2f} {ms / plain:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
