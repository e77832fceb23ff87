"""The runner: started by ringfence as the sandbox user (CreateProcessWithLogonW), inside the
job. It makes the restricted token, a private desktop, and starts the command. Windows only.

NOT YET RUN ON A REAL WINDOWS HOST (see the README's Windows section).

    python -I -m ringfence.windows.runner SPEC.json
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"


def main(argv: list[str]) -> int:
    import json
    import secrets
    import subprocess

    from . import _win32 as w
    from .plan import LOGON_SID

    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    logon = _logon_sid()
    restricting = [logon if s == LOGON_SID else s for s in spec["restricting"]]
    dacl = str(spec["default_dacl"]).replace(LOGON_SID, logon)
    token = w.restricted_token(int(spec["flags"]), restricting, dacl)
    name = "ringfence-" + secrets.token_hex(8)
    desktop = w.create_desktop(name)
    try:
        process, thread, _ = w.create_process_as_user(
            token, subprocess.list2cmdline(spec["command"]), spec["cwd"], spec["env"],
            "WinSta0\\" + name, w.std_handles())  # the streams ringfence handed the runner
        with process, thread:
            w.resume(thread)  # already in the runner's job: children inherit it
            code = w.wait(process, None)
            return 1 if code is None else code
    finally:
        token.close()
        w.close_desktop(desktop)


def _logon_sid() -> str:
    """The logon SID (S-1-5-5-x-y) among this process's token groups."""
    import subprocess

    out = subprocess.run(["whoami", "/groups", "/fo", "csv", "/nh"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        for field in line.split('","'):
            field = field.strip('"')
            if field.startswith("S-1-5-5-"):
                return field
    from ..errors import SandboxError

    raise SandboxError("the runner's token has no logon SID")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
