"""``ringfence windows setup|status|cleanup|run``: the Windows-only commands.

On other systems each exits 125 with one line saying so. On Windows they call the backend,
which has NOT YET RUN ON A REAL WINDOWS HOST (see the README).
"""

from __future__ import annotations

import sys

from ..errors import PolicyError, UnavailableError

USAGE = """\
usage: ringfence windows setup      once, as administrator: sandbox users, group, firewall rule
       ringfence windows status     what setup made (from the manifest)
       ringfence windows cleanup    remove everything ringfence added (users, rules, ACEs)
       ringfence windows run [OPTIONS] -- CMD   the same as ringfence run (Windows)
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    sub = argv[0]
    if sub not in ("setup", "status", "cleanup", "run"):
        raise PolicyError(f"unknown windows command {sub!r}; use setup, status, cleanup or run")
    if sys.platform != "win32":
        raise UnavailableError(f"ringfence windows {sub} works on Windows only; on this host "
                               "use ringfence explain --platform windows to see the plan")
    import json

    from . import backend

    if sub == "setup":
        manifest = backend.setup()
        print(f"ringfence: set up: users {', '.join(n for _, n, _ in manifest.users)}; "
              f"manifest {backend.manifest_path()}")
        return 0
    if sub == "status":
        print(json.dumps(backend.status(), indent=1))
        return 0
    if sub == "cleanup":
        problems = backend.cleanup()
        for p in problems:
            print(f"ringfence: could not undo: {p}", file=sys.stderr)
        return 1 if problems else 0
    from ..cli import cmd_run

    return cmd_run(argv[1:])  # the same as ringfence run on Windows
