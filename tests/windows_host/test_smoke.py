"""Escape tests on a real Windows host, one per case in Codex's Windows smoke tests
(ANCHORS.md), plus the known Codex failure. Each docstring is the attack; each runs the real
escape against the real OS through ``ringfence windows run``; where it makes sense a control runs
the same thing unsandboxed and shows that it works without the sandbox.

NOT YET RUN: written on Linux, where this directory is skipped. Run on Windows with
``py -m pytest tests/windows_host -v`` after ``py -m ringfence windows setup``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.windows_host.conftest import Host


def _denied(result: object) -> bool:
    return getattr(result, "returncode", 0) != 0


def test_workspace_is_writable_control(host: Host) -> None:
    """Control: in workspace-write the command can write the workspace and its TEMP."""
    r = host.run("echo ok> made.txt && echo ok> %TEMP%\\t.txt")
    assert r.returncode == 0, r.stderr
    assert (host.workspace / "made.txt").read_text().strip() == "ok"


def test_read_only_mode_blocks_cwd_temp_and_extra_roots(host: Host) -> None:
    """In read-only, writing the cwd, %TEMP% or an extra root must fail (Codex found %TEMP%
    writable on some hosts)."""
    for target in ("made.txt", "%TEMP%\\ro.txt", str(host.extra / "x.txt")):
        r = host.run(f"echo x> {target}", "--profile", "read-only")
        assert _denied(r), target
    assert not (host.workspace / "made.txt").exists()


def test_write_outside_the_workspace(host: Host) -> None:
    """The command overwrites a file outside every writable root."""
    target = host.outside / "target.txt"
    assert host.unsandboxed(f"echo HACKED> {host.base / 'control.txt'}").returncode == 0
    assert _denied(host.run(f"echo HACKED> {target}"))
    assert target.read_text() == "ORIGINAL\n"


def test_network_is_off(host: Host) -> None:
    """curl and Invoke-WebRequest to a server the test runs on this machine's address."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    addr = socket.gethostbyname(socket.gethostname())
    hits: list[bytes] = []

    def serve() -> None:
        srv.settimeout(20)
        try:
            conn, _ = srv.accept()
            hits.append(conn.recv(100))
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=serve)
    t.start()
    host.run(f"curl -s -m 5 http://{addr}:{port}/")
    host.ps(f"Invoke-WebRequest -UseBasicParsing -TimeoutSec 5 http://127.0.0.1:{port}/")
    t.join()
    srv.close()
    assert hits == []


def test_junction_into_windows_directory(host: Host) -> None:
    """A junction ``ws\\sys`` → ``C:\\Windows`` (no privilege needed), then a write through it."""
    r = host.run("mklink /J sys C:\\Windows && echo x> sys\\ringfence-test.txt")
    assert _denied(r)
    assert not Path("C:\\Windows\\ringfence-test.txt").exists()


def test_junction_poisoning_of_the_workspace(host: Host) -> None:
    """The command replaces a missing protected name (``.vscode``) by a junction to the outside
    directory, so a later run's ACEs or the user's editor land there. The next run refuses."""
    host.run("rmdir .vscode & mklink /J .vscode " + str(host.outside))
    r = host.run("echo again")
    assert r.returncode in (0, 125)
    assert not (host.outside / "tasks.json").exists()


def test_physical_drive(host: Host) -> None:
    """Opening ``\\\\.\\PhysicalDrive0`` for reading raw sectors."""
    r = host.ps("[IO.File]::OpenRead('\\\\.\\PhysicalDrive0').ReadByte()")
    assert _denied(r)


def test_named_pipe_of_the_user(host: Host) -> None:
    """The test (the user) serves a named pipe; the sandboxed command writes to it."""
    name = f"ringfence-test-{host.base.name}"
    ps_server = (f"$p = New-Object IO.Pipes.NamedPipeServerStream('{name}'); "
                 "$p.WaitForConnection(); $r = New-Object IO.StreamReader($p); $r.ReadLine()")
    import subprocess

    server = subprocess.Popen(["powershell", "-NoProfile", "-Command", ps_server],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    host.run(f"echo SECRET> \\\\.\\pipe\\{name}")
    try:
        out, _ = server.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        out = ""
    assert "SECRET" not in out


def test_alternate_data_stream_on_protected_file(host: Host) -> None:
    """Writing ``.git\\config:evil`` or ``.git\\config::$DATA`` (Codex #32)."""
    assert _denied(host.run("echo x> .git\\config:evil"))
    assert _denied(host.run("echo x> .git\\config::$DATA"))
    assert (host.workspace / ".git" / "config").read_text() == "[core]\n"


def test_long_path_prefix(host: Host) -> None:
    """Writing outside through ``\\\\?\\C:\\...``."""
    assert _denied(host.run(f"echo x> \\\\?\\{host.outside / 'target.txt'}"))
    assert (host.outside / "target.txt").read_text() == "ORIGINAL\n"


def test_case_variant_of_git(host: Host) -> None:
    """Writing ``.GiT\\HOOKS\\pre-commit`` (Codex #33)."""
    assert _denied(host.run("echo x> .GiT\\HOOKS\\pre-commit"))
    assert not (host.workspace / ".git" / "hooks" / "pre-commit").exists()


def test_protected_names_and_rename_away(host: Host) -> None:
    """Creating ``.envrc``, renaming ``.git`` away to plant a new one, deleting hooks."""
    assert _denied(host.run("echo x> .envrc"))
    assert _denied(host.run("ren .git git-old"))
    assert _denied(host.run("rmdir /s /q .git\\hooks"))
    assert (host.workspace / ".git" / "hooks").is_dir()


def test_tampering_with_ringfence_state(host: Host) -> None:
    """Reading or editing ringfence's manifest (SIDs, passwords) and the project's policy."""
    import os

    state = Path(os.environ["LOCALAPPDATA"]) / "ringfence"
    assert _denied(host.run(f"type \"{state}\\windows-manifest.json\""))
    assert _denied(host.run(f"echo x>> \"{state}\\windows-manifest.json\""))
    assert _denied(host.run("echo profile = 'full-access'> .ringfence.toml"))


def test_path_stub_bypass(host: Host) -> None:
    """Codex's unelevated mode put stub ``ssh.bat`` first on PATH; calling the real binary by
    its full path bypassed it. Here the block is the firewall: the full path fails too."""
    r = host.run("C:\\Windows\\System32\\curl.exe -s -m 5 http://1.1.1.1/")
    assert _denied(r)


def test_symlink_race(host: Host) -> None:
    """The command swaps a file for a symbolic link to the outside target (needs Developer Mode
    or the privilege; if creation fails, the attack fails with it) and writes through it."""
    host.run(f"mklink swap.txt {host.outside / 'target.txt'} && echo HACKED> swap.txt")
    assert (host.outside / "target.txt").read_text() == "ORIGINAL\n"


def test_deep_junctions(host: Host) -> None:
    """A chain of junctions, the last leading out."""
    host.run(f"mklink /J j3 {host.outside} && mklink /J j2 j3 && mklink /J j1 j2 && "
             "echo HACKED> j1\\target.txt")
    assert (host.outside / "target.txt").read_text() == "ORIGINAL\n"


def test_unc_and_other_drive_links(host: Host) -> None:
    """Writing the outside file through the administrative share ``\\\\localhost\\C$``."""
    unc = "\\\\localhost\\" + str(host.outside / "target.txt").replace(":", "$", 1)
    host.run(f"echo HACKED> {unc}")
    assert (host.outside / "target.txt").read_text() == "ORIGINAL\n"


def test_writes_after_a_timeout(host: Host) -> None:
    """A background process started by the command writes after the run timed out: the job
    kills the whole tree."""
    late = host.workspace / "late.txt"
    r = host.run(f"start /b cmd /c \"ping -n 6 127.0.0.1 >nul & echo late> {late}\" & "
                 "ping -n 30 127.0.0.1 >nul", "--timeout", "2")
    assert r.returncode != 0
    time.sleep(8)
    assert not late.exists()


def test_start_process_url(host: Host) -> None:
    """``Start-Process 'http://…'`` hands the URL to the shell, which ran it outside Codex's
    sandbox (Codex #41). Here the run is another user on a private desktop, in the job."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(15)
    port = srv.getsockname()[1]
    host.ps(f"Start-Process 'http://127.0.0.1:{port}/'")
    try:
        conn, _ = srv.accept()
        conn.close()
        reached = True
    except OSError:
        reached = False
    srv.close()
    assert not reached


def test_secrets_are_unreadable(host: Host) -> None:
    """Reading the user's ``.ssh`` and DPAPI master keys."""
    import os

    home = Path(os.environ["USERPROFILE"])
    (home / ".ssh").mkdir(exist_ok=True)
    probe = home / ".ssh" / "ringfence-probe"
    probe.write_text("FAKE-KEY\n")
    try:
        r = host.run(f"type \"{probe}\"")
        assert "FAKE-KEY" not in r.stdout
    finally:
        probe.unlink()


# ---------------------------------------------------------------------------------------------
# WFP filters, DNS/ICMP, CPU rate cap, full-access (added with the WFP layer; NOT YET RUN)

def _status() -> dict[str, object]:
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "ringfence", "windows", "status"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_wfp_filters_present_after_setup() -> None:
    """Every filter key setup recorded exists in the BFE (FwpmFilterGetByKey0), group policy
    lets local rules apply, and the keys are exactly the plan's."""
    from ringfence.windows.backend import load_manifest
    from ringfence.windows.plan import firewall_rules
    from ringfence.windows.wfp import filter_specs

    status = _status()
    assert status["set_up"] is True and status["ok"] is True, status
    wfp = status["wfp_filters"]
    assert isinstance(wfp, dict) and wfp["missing"] == [] and wfp["present"] == wfp["recorded"]
    manifest = load_manifest()
    assert manifest is not None
    offline = dict((r, s) for r, _, s in manifest.users)["offline"]
    want = [s.key for s in filter_specs(firewall_rules("off", offline), manifest.install_id)]
    assert list(manifest.wfp_filters) == want


def test_direct_dns_is_blocked_for_the_offline_user(host: Host) -> None:
    """A DNS query sent straight to a resolver the test runs on 127.0.0.1:53 (UDP) from the
    sandbox never arrives. Control: unsandboxed, the same query arrives."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        srv.bind(("127.0.0.1", 53))
    except OSError:
        import pytest

        pytest.skip("port 53 on 127.0.0.1 is taken (a local resolver runs)")
    srv.settimeout(10)
    query = ("$c = New-Object Net.Sockets.UdpClient; "
             "$c.Send([byte[]](1,2,3,4), 4, '127.0.0.1', 53) | Out-Null")

    def received() -> bool:
        try:
            srv.recvfrom(64)
            return True
        except OSError:
            return False

    import subprocess

    subprocess.run(["powershell", "-NoProfile", "-Command", query], timeout=60)
    assert received(), "control: the unsandboxed query did not arrive"
    host.ps(query)
    assert not received()
    srv.close()


def test_ping_is_blocked_for_the_offline_user(host: Host) -> None:
    """ICMP echo (a way out that is not a TCP/UDP connect) fails in the sandbox; control: it
    works unsandboxed to the same address."""
    addr = socket.gethostbyname(socket.gethostname())
    assert host.unsandboxed(f"ping -n 1 -w 2000 {addr}").returncode == 0
    assert _denied(host.run(f"ping -n 1 -w 2000 {addr}"))


def _busy_cpu_fraction(host: Host, *options: str) -> float:
    """CPU seconds / wall seconds of a 4 s busy loop (one thread) in the sandbox."""
    code = ("$s=[Diagnostics.Stopwatch]::StartNew(); while($s.ElapsedMilliseconds -lt 4000)"
            "{}; $p=[Diagnostics.Process]::GetCurrentProcess(); "
            "[Console]::Out.Write(($p.TotalProcessorTime.TotalMilliseconds/4000))")
    r = host.ps(code, *options)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip() or "nan")


def test_cpu_rate_cap(host: Host) -> None:
    """``[limits] cpu_percent = 10``: a busy loop gets at most about 10% of the machine
    (JOBOBJECT_CPU_RATE_CONTROL hard cap). Control: without the key it gets a whole CPU."""
    import os

    policy = host.base / "cpu.toml"
    policy.write_text("[limits]\ncpu_percent = 10\n")
    free = _busy_cpu_fraction(host)
    capped = _busy_cpu_fraction(host, "--policy", str(policy))
    cpus = os.cpu_count() or 1
    assert free > 0.8  # one busy thread: about one whole CPU
    assert capped < min(0.8, 0.10 * cpus * 1.5)  # 10% of the machine, in CPUs, with slack


def test_full_access_still_has_the_job_limits(host: Host) -> None:
    """full-access runs as you, without the sandbox user, but in the job: ``--max-processes 3``
    stops a fourth process, and the tree dies at the timeout."""
    r = host.run("cmd /c cmd /c cmd /c cmd /c echo deep", "--profile", "full-access",
                 "--max-processes", "3")
    assert "deep" not in r.stdout
    late = host.workspace / "late-full.txt"
    r = host.run(f"start /b cmd /c \"ping -n 6 127.0.0.1 >nul & echo late> {late}\" & "
                 "ping -n 30 127.0.0.1 >nul", "--profile", "full-access", "--timeout", "2")
    assert r.returncode != 0
    time.sleep(8)
    assert not late.exists()
    # control: full-access does write outside the workspace (no sandbox user)
    out = host.outside / "fa.txt"
    assert host.run(f"echo ok> {out}", "--profile", "full-access").returncode == 0
    assert out.exists()


def test_library_run_on_windows(host: Host) -> None:
    """ringfence.run() uses the Windows backend and captures output."""
    import ringfence

    result = ringfence.run(["cmd", "/d", "/c", "echo hello"], workspace=str(host.workspace),
                           audit=False)
    assert result.exit_code == 0 and b"hello" in (result.stdout or b"")
    assert result.mode == "windows"
