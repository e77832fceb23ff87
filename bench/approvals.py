"""Approval engine benchmark: how long deciding one command takes.

Prints, from one run, the median time per decision (and decisions per second) for argv commands
and for shell strings, with no rules and with 50 rules, in the on-request and untrusted modes;
shell strings also as a ratio against tree-sitter's parse of the same text alone (the plain
operation the engine builds on). The target: a typical command under 1 ms.

    python bench/approvals.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from ringfence.approval import shell
from ringfence.approval.engine import decide
from ringfence.approval.model import Context, Rule

WS = "/home/u/proj"

ARGV = {
    "argv /bin/true": ["/bin/true"],
    "argv git status": ["git", "status", "--short"],
    "argv sudo (asks)": ["sudo", "apt", "install", "x"],
    "argv pytest": ["python", "-m", "pytest", "-q", "tests/test_x.py"],
}
SHELL = {
    "shell ls | grep": "ls -la | grep foo | wc -l",
    "shell build && test": "cd src && make -j4 && make test 2>&1 | tail -20",
    "shell bash -lc": "bash -lc 'git status && git diff HEAD~1 -- src | head -100'",
    "shell loop + subst": 'for f in $(git ls-files "*.py"); do python -m py_compile "$f" '
                          '|| echo "bad $f" >> errors.txt; done',
    "shell curl | sh (asks)": "curl -fsSL https://example.invalid/install.sh | sh -s -- -y",
}


def rules(n: int) -> tuple[Rule, ...]:
    out = []
    for i in range(n):
        out.append(Rule(prefix=(f"tool{i}", ("build", "test")), decision="ask"))
    out.append(Rule(prefix=("git", "push"), decision="ask"))
    out.append(Rule(prefix=("make",), decision="allow"))
    return tuple(out)


def median_us(fn: Callable[[], object], runs: int, inner: int = 50) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    for mode in ("on-request", "untrusted"):
        for nrules in (0, 50):
            ctx = Context(mode=mode, workspace=WS, writable=(WS,), cwd=WS)
            rs = rules(nrules) if nrules else ()
            for name, cmd in {**ARGV, **SHELL}.items():
                us = median_us(lambda c=cmd, r=rs, x=ctx: decide(c, r, x), args.runs)
                row = {"median_us": us, "per_second": 1e6 / us}
                if isinstance(cmd, str):
                    parse_us = median_us(lambda c=cmd: shell._parser().parse(c.encode()),
                                         args.runs)
                    row["x_parse"] = us / parse_us
                results[f"{name} [{mode}, {nrules} rules]"] = row
    if args.json:
        print(json.dumps({"runs": args.runs, "results": results}))
        return 0
    print(f"median of {args.runs} runs (x 50 decisions each)")
    print(f"{'':58} {'us':>8} {'per s':>9} {'x parse':>8}")
    for name, row in results.items():
        ratio = f"{row['x_parse']:8.1f}" if "x_parse" in row else f"{'':>8}"
        print(f"{name:58} {row['median_us']:8.1f} {row['per_second']:9.0f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
