"""The Windows backend: host facts, ``ringfence windows setup|status|cleanup``, and running a
plan. Windows only.

NOT YET RUN ON A REAL WINDOWS HOST (see the README's Windows section). What is proven on Linux
is the plan, the path rules, the manifest and the access model; this module only applies them.
Not written yet: the allowlist (network-proxy) mode, which the plan refuses.
"""

from __future__ import annotations

import json
import os
import sys

from ..errors import SandboxError, UnavailableError
from . import _wfp
from . import _win32 as w
from . import paths as wp
from .manifest import Action, Manifest, cleanup_actions, record, run_actions
from .plan import GROUP_NAME, USER_NAMES, WindowsFacts, WindowsPlan, firewall_rules
from .wfp import filter_specs, policy_state_problem

assert sys.platform == "win32"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..policy.model import Policy

_HIDE_KEY = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon\SpecialAccounts\UserList"


def _state() -> str:
    from .. import _dirs

    return _dirs.state_dir()


def manifest_path() -> str:
    return os.path.join(_state(), "windows-manifest.json")


def secrets_path() -> str:
    return os.path.join(_state(), "windows-secrets.bin")


def load_manifest() -> Manifest | None:
    try:
        with open(manifest_path(), encoding="utf-8") as fh:
            return Manifest.from_json(json.load(fh), manifest_path())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"{manifest_path()}: cannot read: {exc}") from None


def save_manifest(manifest: Manifest) -> None:
    os.makedirs(_state(), exist_ok=True)
    tmp = manifest_path() + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest.to_json(), fh, indent=1)
    os.replace(tmp, manifest_path())


def sandbox_dir() -> str:
    base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    return wp.canonical(os.path.join(base, "ringfence-sandbox"), "sandbox directory")


# ---------------------------------------------------------------------------------------------
# Facts (bounded: the policy's paths, the protected names, the deny-read list; no walk)

def _kind(path: str) -> str:
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return "missing"
    if getattr(st, "st_file_attributes", 0) & w.FILE_ATTRIBUTE_REPARSE_POINT:
        return "symlink" if stat.S_ISLNK(st.st_mode) else "junction"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


SCAN_LIMIT = 50_000
"""Objects read per guarded tree by the one-time scan; a larger tree is reported, not scanned
further (its deeper children are guarded by inheritance alone)."""
OPEN_DIR_SCAN = ("C:\\ProgramData", "C:\\Users\\Public")
OTHERS = ("S-1-1-0", "S-1-5-32-545", "S-1-5-11", "S-1-5-4")  # Everyone, Users, Auth. Users, INT.


def scan_exceptions(tree: str, ours: set[str]) -> list[str]:
    """Below ``tree``: objects with explicit ACEs other than ringfence's, or a protected DACL."""
    found: list[str] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = [d for d in dirnames
                       if _kind(os.path.join(dirpath, d)) == "dir"]  # never into links
        for name in (*dirnames, *filenames):
            seen += 1
            if seen > SCAN_LIMIT:
                return found
            path = os.path.join(dirpath, name)
            try:
                explicit, protected = w.dacl_info(path)
            except SandboxError:
                continue
            if protected or any(sid not in ours for _, _, _, sid in explicit):
                found.append(wp.canonical(path, "scanned path"))
    return found


def scan_open_dirs(roots: tuple[str, ...] = OPEN_DIR_SCAN, depth: int = 2) -> list[str]:
    """Directories (to ``depth`` levels below each root and the drive roots) whose explicit
    ACEs give Everyone, Users, Authenticated Users or INTERACTIVE FILE_DELETE_CHILD."""
    import string

    starts = [*roots, *(f"{d}:\\" for d in string.ascii_uppercase
                        if w.drive_type(f"{d}:") == "fixed")]
    found: list[str] = []
    for start in starts:
        stack = [(start, 0)]
        while stack:
            path, level = stack.pop()
            try:
                explicit, _ = w.dacl_info(path)
            except SandboxError:
                continue
            if any(a == "allow" and mask & 0x40 and sid in OTHERS
                   for a, _, mask, sid in explicit):
                found.append(wp.canonical(path, "open directory"))
            if level < depth:
                try:
                    names = os.listdir(path)
                except OSError:
                    continue
                stack += [(os.path.join(path, n), level + 1) for n in names
                          if _kind(os.path.join(path, n)) == "dir"]
    return found


def gather_facts(policy: Policy, *, scan: bool = False) -> WindowsFacts:
    """The host's facts for ``policy``. ``scan``: do the one-time scans of guarded trees not yet
    scanned and record them (``run`` does; ``explain`` changes nothing)."""
    from .. import _dirs
    from ..plan import find_protected
    from ..policy.model import DEFAULT_DENY_READ_HOME
    from .plan import WINDOWS_DENY_READ_HOME

    home = wp.canonical(os.path.expanduser("~"), "home")
    manifest = load_manifest()
    sbx = sandbox_dir()
    candidates = [home, sbx, policy.workspace, *policy.writable, *policy.deny_read,
                  _dirs.config_dir(), _dirs.state_dir()]
    candidates += [wp.join(home, p) for p in (*DEFAULT_DENY_READ_HOME, *WINDOWS_DENY_READ_HOME)]
    protected: list[tuple[str, str]] = []
    roots = [*policy.writable_roots(), *([sbx] if policy.profile == "workspace-write" else [])]
    for root in roots:
        for path, why in find_protected(root, policy.protected):
            protected.append((path, why))
            candidates += [path, os.path.dirname(path)]
    kinds: dict[str, str] = {}
    finals: dict[str, str] = {}
    for raw in candidates:
        path = wp.canonical(raw, "path", named_stream="base")
        kind = _kind(path)
        kinds[path] = kind
        if kind != "missing":
            try:
                final = wp.canonical(w.final_path(path), "path")
            except (SandboxError, Exception):  # a final path that is not local: keep as is
                continue
            if wp.key(final) != wp.key(path):
                finals[path] = final
                kinds.setdefault(final, _kind(final))
    drives = {p[:2].upper(): w.drive_type(p[:2]) for p in kinds}
    exceptions: list[str] = []
    if manifest is not None:  # the one-time scan of each guarded tree, recorded
        ours = {manifest.group[1], *(s for _, _, s in manifest.users)}
        ours |= {sddl.rsplit(";", 1)[1].rstrip(")") for sddl in
                 (a.sddl for a in manifest.aces)}
        scanned = list(manifest.scanned)
        exceptions = list(manifest.exceptions)
        guarded = [p for p, k in kinds.items() if k == "dir" and (
            any(wp.key(p) == wp.key(q) for q, _ in protected)
            or any(wp.key(p) == wp.key(wp.join(home, d)) for d in
                   (*DEFAULT_DENY_READ_HOME, *WINDOWS_DENY_READ_HOME))
            or any(wp.key(p) == wp.key(d) for d in policy.deny_read))]
        for tree in guarded if scan else ():
            if wp.key(tree) not in {wp.key(x) for x in scanned}:
                exceptions += scan_exceptions(tree, ours)
                scanned.append(tree)
        if scanned != list(manifest.scanned):
            manifest = manifest.replace(scanned=tuple(scanned), exceptions=tuple(exceptions))
            save_manifest(manifest)
    present: list[tuple[str, str]] = []
    if manifest is not None:
        from .plan import Ace

        wanted = {wp.key(p) for p in kinds} | {wp.key(p) for p in finals.values()}
        for path in sorted({e.path for e in manifest.aces if wp.key(e.path) in wanted}):
            if _kind(path) not in ("dir", "file"):
                continue
            for action, flags, mask, sid in w.read_aces(path):
                sddl = Ace(action=action, sid=sid, mask=mask, flags=flags, why="").sddl()
                present.append((path, sddl))
    return WindowsFacts(
        home=home, username=os.environ.get("USERNAME", "user"), environ=dict(os.environ),
        kinds=kinds, final_paths=finals, drives=drives,
        protected_paths=tuple((wp.canonical(p, "protected path"), why) for p, why in protected),
        acl_exceptions=tuple(exceptions),
        open_dirs=manifest.open_dirs if manifest else (),
        sids=manifest.sids() if manifest else {},
        install_id=manifest.install_id if manifest else "",
        aces_present=tuple(present), config_dir=wp.canonical(_dirs.config_dir(), "config"),
        state_dir=wp.canonical(_dirs.state_dir(), "state"), sandbox_dir=sbx,
        python=sys.executable,
    )


# ---------------------------------------------------------------------------------------------
# setup / status / cleanup

def _powershell(script: str) -> str:
    import subprocess

    exe = os.path.join(os.environ.get("SYSTEMROOT", "C:\\Windows"), "System32",
                       "WindowsPowerShell", "v1.0", "powershell.exe")
    proc = subprocess.run([exe, "-NoProfile", "-NonInteractive", "-Command", script],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SandboxError(f"PowerShell failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout.strip()


def setup() -> Manifest:
    """Users, group, firewall rule, manifest. Must run elevated (``ringfence windows setup``
    asks UAC)."""
    import secrets
    import winreg

    if not w.is_elevated():
        raise UnavailableError("ringfence windows setup needs administrator rights; run it "
                               "from an elevated prompt (or accept the UAC prompt)")
    problem = policy_state_problem(local_policy_state())
    if problem:
        raise UnavailableError(problem)
    manifest = load_manifest() or Manifest(install_id=secrets.token_hex(16))
    w.add_group(GROUP_NAME, "ringfence sandbox users")
    passwords: dict[str, str] = {}
    users = []
    for role, name in USER_NAMES.items():
        password = secrets.token_urlsafe(24) + "!aA1"
        try:
            w.add_user(name, password, "ringfence sandbox user")
        except SandboxError:
            w.set_password(name, password)  # exists: rotate the password we keep
        w.add_to_group(GROUP_NAME, name)
        passwords[name] = password
        users.append((role, name, w.lookup_account(name)))
        with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, _HIDE_KEY, 0,
                                winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, name, 0, winreg.REG_DWORD, 0)
    os.makedirs(_state(), exist_ok=True)
    with open(secrets_path(), "wb") as fh:
        fh.write(w.protect(json.dumps(passwords).encode()))
    offline_sid = dict((r, s) for r, _, s in users)["offline"]
    rules = firewall_rules("off", offline_sid)
    # WFP first, in one transaction, replacing what an earlier setup recorded; the manifest is
    # saved right after so that cleanup knows every key even if a later step fails.
    keys = _wfp.apply(filter_specs(rules, manifest.install_id), replace=manifest.wfp_filters)
    manifest = manifest.replace(wfp_filters=tuple(keys), users=tuple(users),
                                group=(GROUP_NAME, w.lookup_account(GROUP_NAME)))
    save_manifest(manifest)
    names = []
    for rule in rules:
        if rule.layer != "firewall":
            continue
        _powershell(
            f"Remove-NetFirewallRule -DisplayName '{rule.name}' -ErrorAction SilentlyContinue; "
            f"New-NetFirewallRule -DisplayName '{rule.name}' -Direction Outbound -Action Block "
            f"-Protocol Any -Profile Any -LocalUser '{rule.user}' | Out-Null")
        names.append(rule.name)
    done: Manifest = manifest.replace(
        firewall=tuple(names), dirs=tuple(dict.fromkeys([*manifest.dirs, sandbox_dir()])),
        open_dirs=tuple(scan_open_dirs()))
    save_manifest(done)
    return done


def local_policy_state() -> str:
    """INetFwPolicy2.LocalPolicyModifyState (0: local firewall rules apply)."""
    try:
        return _powershell("(New-Object -ComObject HNetCfg.FwPolicy2).LocalPolicyModifyState")
    except SandboxError:
        return ""  # unreadable: policy_state_problem says so


def status() -> dict[str, object]:
    manifest = load_manifest()
    gp_problem = policy_state_problem(local_policy_state())
    if manifest is None:
        return {"set_up": False, "fix": "ringfence windows setup",
                "group_policy": gp_problem or "local firewall rules apply"}
    present = dict(_wfp.present(manifest.wfp_filters))
    missing = [k for k, ok in present.items() if not ok]
    return {"set_up": True, "users": [n for _, n, _ in manifest.users],
            "group": manifest.group[0], "firewall_rules": list(manifest.firewall),
            "aces": len(manifest.aces), "manifest": manifest_path(),
            "wfp_filters": {"recorded": len(present), "present": len(present) - len(missing),
                            "missing": missing},
            "group_policy": gp_problem or "local firewall rules apply",
            "ok": not gp_problem and not missing and bool(present)}


def cleanup() -> list[str]:
    """Remove everything the manifest records; what could not be removed is reported."""
    import shutil

    manifest = load_manifest()
    if manifest is None:
        return []
    problems: list[str] = []
    steps = cleanup_actions(manifest)
    filters = [s.detail for s in steps if s.op == "remove-filter"]
    if filters:
        try:
            _wfp.remove(filters)
        except SandboxError as exc:
            problems.append(f"remove WFP filters {', '.join(filters)}: {exc}")
    for step in steps:
        try:
            if step.op == "remove-ace":
                action = "deny" if step.detail.startswith("(D;") else "allow"
                _, flags_s, mask_s, _, _, sid = step.detail.strip("()").split(";")
                flags = sum(b for n, b in (("OI", 1), ("CI", 2), ("NP", 4), ("IO", 8))
                            if n in flags_s)
                w.write_aces(step.path, [], [(action, flags, int(mask_s, 16), sid)])
            elif step.op == "remove-rule":
                _powershell(f"Remove-NetFirewallRule -DisplayName '{step.detail}' "
                            "-ErrorAction SilentlyContinue")
            elif step.op == "delete-user":
                w.delete_user(step.detail)
            elif step.op == "delete-group":
                w.delete_group(step.detail)
            elif step.op == "remove-dir":
                shutil.rmtree(step.path, ignore_errors=True)
        except (SandboxError, OSError) as exc:
            problems.append(f"{step.op} {step.path} {step.detail}: {exc}")
    if not problems:
        for path in (manifest_path(), secrets_path()):
            try:
                os.unlink(path)
            except OSError:
                pass
    return problems


# ---------------------------------------------------------------------------------------------
# Running a plan

def _sddl_tuple(sddl: str) -> tuple[str, int, int, str]:
    kind, flags_s, mask_s, _, _, sid = sddl.strip("()").split(";")
    flags = sum(b for n, b in (("OI", 1), ("CI", 2), ("NP", 4), ("IO", 8)) if n in flags_s)
    return ("allow" if kind == "A" else "deny", flags, int(mask_s, 16), sid)


def _apply(actions: tuple[Action, ...]) -> None:
    for a in actions:
        if a.op == "create-placeholder":
            if a.detail == "dir":
                os.mkdir(a.path)
            else:
                with open(a.path, "x", encoding="utf-8") as fh:
                    fh.write(".\n" if a.path.endswith("commondir") else "")
        elif a.op == "remove-placeholder":
            try:
                (os.rmdir if a.detail == "dir" else os.unlink)(a.path)
            except OSError:
                pass  # not empty or gone: left for the next run to report
        elif a.op == "add-ace":
            w.write_aces(a.path, [_sddl_tuple(a.detail)], [])


def _job(plan: WindowsPlan) -> w.Handle:
    return w.create_job(plan.job.limit_flags, plan.job.active_processes, plan.job.process_memory,
                        plan.job.process_time_100ns, plan.job.ui_flags, plan.job.cpu_rate)


def _wait_in_job(job: w.Handle, process: w.Handle, thread: w.Handle,
                 timeout: float | None) -> tuple[int, bool]:
    """Assign the suspended process to the job, resume it, wait: (exit code, timed out)."""
    with process, thread:
        w.assign(job, process)
        w.resume(thread)
        code = w.wait(process, timeout)
        if code is None:
            w.terminate_job(job, 1)
            return 124, True
        return code, False


def run_plan(plan: WindowsPlan, facts: WindowsFacts, std: w.Std) -> tuple[int, bool]:
    """Run the plan with ``std`` (inheritable stdin, stdout, stderr handles) as the command's
    streams: (exit code, timed out). full-access: the caller's own token, still in the job
    (limits, the tree dies with ringfence). Otherwise: apply the plan's ACEs (once), start the
    runner as the sandbox user in the job, which starts the command with the restricted token."""
    import subprocess
    import tempfile

    if plan.token is None:
        job = _job(plan)
        try:
            process, thread, _ = w.create_process(subprocess.list2cmdline(plan.command),
                                                  plan.cwd, plan.env, std)
            return _wait_in_job(job, process, thread, plan.timeout)
        finally:
            job.close()  # KILL_ON_JOB_CLOSE
    manifest = load_manifest()
    if manifest is None or plan.setup_needed:
        from .plan import require_setup

        require_setup(plan.replace(setup_needed=True))
    assert manifest is not None
    before, after = run_actions(plan, facts.aces_present)
    _apply(before)
    save_manifest(record(manifest, plan, before))
    with open(secrets_path(), "rb") as fh:
        password = json.loads(w.unprotect(fh.read()))[plan.user]
    spec = {"command": list(plan.command), "cwd": plan.cwd, "env": plan.env,
            "flags": plan.token.flags_value, "default_dacl": plan.token.default_dacl,
            "restricting": [s for s, _ in plan.token.restricting_sids]}
    os.makedirs(os.path.join(facts.sandbox_dir, "tmp"), exist_ok=True)
    run_dir = os.path.join(facts.sandbox_dir, "run")
    os.makedirs(run_dir, exist_ok=True)
    fd, spec_path = tempfile.mkstemp(dir=run_dir, suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    job = _job(plan)
    try:
        cmdline = subprocess.list2cmdline([facts.python, "-I", "-m", "ringfence.windows.runner",
                                           spec_path])
        process, thread, _ = w.create_process_with_logon(plan.user, password, cmdline,
                                                         plan.cwd, plan.env, std)
        return _wait_in_job(job, process, thread, plan.timeout)
    finally:
        job.close()  # KILL_ON_JOB_CLOSE: whatever is left dies here
        os.unlink(spec_path)
        _apply(after)
