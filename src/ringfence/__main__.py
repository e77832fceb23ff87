"""``python -m ringfence`` and the ``ringfence`` console script."""

from __future__ import annotations

import os
import sys


def main() -> None:
    import gc

    # `python -m ringfence` (or -c) puts the current directory first on sys.path: in a
    # workspace, a command could have left a `tomllib.py` or `json.py` there for the modules
    # ringfence imports later. (It could also leave a `ringfence` package there, which `-m`
    # would run instead of this one: hence the `ringfence` command, or `python -P -m`.)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]

    # No cyclic garbage collection while starting the command: a collection of everything
    # imported so far runs at some allocation or other (~1 ms on every command) and frees
    # nothing. The objects of the start-up are frozen and collection goes on once the command
    # has started (backends.collect_again), since the run may be long (the allowlist
    # proxy serves it from this process). The MCP server, long-running from the start, keeps it.
    if sys.argv[1:2] != ["mcp"]:
        gc.disable()
    from .cli import main as cli_main

    code = cli_main()
    # Leave without the interpreter's teardown (freeing every module and object costs ~3 ms on
    # every command). Everything ringfence holds is released by then; only the standard streams
    # need flushing. A flush that fails (a closed pipe) does not change the command's status.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
