"""Attack and use: real clients inside the sandbox with ``--network allowlist``.

Every server is one the test starts on the host's 127.0.0.1. Inside the sandbox, names reach
them only through the proxy, whose resolver the test points at 127.0.0.1 with the
``RINGFENCE_PROXY_HOSTS`` hook (read by ringfence's own process, never by the sandboxed
command), and with ``allow_local = true`` in a policy file the test writes (loopback is refused
otherwise -- one test checks exactly that). Each attack checks the server's side too: a refused
connection never reached it. The controls run the same client with ``--network on``.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import World
from tests.network.servers import TCPServer

PY = os.path.realpath(sys.executable)
NAMES = ("web.test", "other.test", "a.wild.test", "bad.wild.test", "pkgs.test", "git.test")


@pytest.fixture
def server() -> Iterator[TCPServer]:
    s = TCPServer()
    yield s
    s.close()


class Net:
    """A world with the hosts hook and a policy that allows ``allow`` on ``ports``."""

    def __init__(self, world: World) -> None:
        self.world = world
        hosts = world.base / "hosts"
        hosts.write_text("".join(f"{n} 127.0.0.1\n" for n in NAMES))
        world.env["RINGFENCE_PROXY_HOSTS"] = str(hosts)
        self.policy = world.base / "net-policy.toml"

    def write_policy(self, allow: list[str], ports: list[int], *, deny: list[str] = (),  # type: ignore[assignment]
                     allow_local: bool = True) -> str:
        lines = ["[network]", 'mode = "allowlist"', f"allow = {json.dumps(list(allow))}",
                 f"deny = {json.dumps(list(deny))}", f"ports = {json.dumps(ports)}",
                 f"allow_local = {'true' if allow_local else 'false'}"]
        self.policy.write_text("\n".join(lines) + "\n")
        return str(self.policy)

    def run(self, argv: list[str], allow: list[str], ports: list[int], *extra: str,
            deny: list[str] = (), allow_local: bool = True,  # type: ignore[assignment]
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        pol = self.write_policy(allow, ports, deny=deny, allow_local=allow_local)
        return self.world.run("run", "--policy", pol, *extra, "--", *argv, timeout=timeout)

    def json_run(self, argv: list[str], allow: list[str], ports: list[int], **kw: object
                 ) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
        proc = self.run(argv, allow, ports, "--json", "--capture", **kw)  # type: ignore[arg-type]
        assert proc.stdout.strip(), proc.stderr
        return proc, json.loads(proc.stdout)


@pytest.fixture
def net(world: World) -> Net:
    return Net(world)


FETCH = """
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=20) as r:
        print("STATUS", r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print("STATUS", e.code); sys.stdout.write(e.read().decode())
except Exception as e:
    print("FAILED", type(e).__name__, e)
"""


# ---------------------------------------------------------------------------------------------
# Clients that use the proxy.

def test_urllib_allowed_and_recorded(net: Net, server: TCPServer) -> None:
    url = f"http://web.test:{server.port}/hello"
    _, report = net.json_run([PY, "-c", FETCH, url], ["web.test"], [server.port])
    assert "STATUS 200" in str(report["stdout"]), report
    assert server.body.decode() in str(report["stdout"])
    records = report["network"]
    assert isinstance(records, list) and len(records) == 1
    rec = records[0]
    assert rec["host"] == "web.test" and rec["port"] == server.port and rec["allowed"]
    assert rec["rule"] == "allow web.test" and rec["sent"] > 0
    assert rec["received"] > len(server.body)


def test_urllib_denied_name(net: Net, server: TCPServer) -> None:
    url = f"http://other.test:{server.port}/"
    _, report = net.json_run([PY, "-c", FETCH, url], ["web.test"], [server.port])
    out = str(report["stdout"])
    assert "STATUS 403" in out and "--allow-domain other.test" in out
    assert server.seen == []
    assert report["network"][0]["allowed"] is False  # type: ignore[index]


def test_denied_name_is_a_certain_denial_with_the_narrowest_fix(net: Net,
                                                                 server: TCPServer) -> None:
    """The proxy's refusal becomes a denial an agent can act on: certain (the proxy said so,
    not a guess from stderr), naming host and port, suggesting exactly that host for the allow
    list; escalating it names the option for a new run (a live allowlist is not widened)."""
    url = f"http://other.test:{server.port}/"
    _, report = net.json_run([PY, "-c", FETCH, url], ["web.test"], [server.port])
    denials = report["denials"]
    assert isinstance(denials, list)
    [d] = [d for d in denials if d["kind"] == "network"]
    assert d["certain"] is True and d["target"] == f"other.test:{server.port}"
    assert d["suggestion"]["change"] == "allow_domain"
    assert d["suggestion"]["value"] == "other.test"
    from ringfence.errors import UnavailableError
    from ringfence.escalation import submit
    from ringfence.policy.model import Policy

    with pytest.raises(UnavailableError, match=r"--allow-domain other\.test"):
        submit({**d["suggestion"], "justification": "docs"},
               Policy(workspace=str(net.world.workspace)))


def test_name_resolving_to_loopback_refused_without_opt_in(net: Net, server: TCPServer) -> None:
    """Attack: an allowed name that resolves to 127.0.0.1 reaches the user's local services."""
    url = f"http://web.test:{server.port}/"
    _, report = net.json_run([PY, "-c", FETCH, url], ["web.test"], [server.port],
                             allow_local=False)
    assert "STATUS 403" in str(report["stdout"]) and "allow_local" in str(report["stdout"])
    assert server.seen == []


def test_deny_over_allow_and_wildcards(net: Net, server: TCPServer) -> None:
    code = FETCH.replace("sys.argv[1]", "u") .replace("try:", "for u in sys.argv[1:]:\n  try:")
    code = "\n".join(("  " + line if line.startswith(("    ", "except")) else line)
                     for line in code.splitlines())
    urls = [f"http://{h}:{server.port}/" for h in ("a.wild.test", "bad.wild.test", "wild.test")]
    _, report = net.json_run([PY, "-c", code, *urls], ["*.wild.test"], [server.port],
                             deny=["bad.wild.test"])
    out = str(report["stdout"])
    assert out.count("STATUS 200") == 1 and out.count("STATUS 403") == 2, out
    rules = [r["rule"] for r in report["network"]]  # type: ignore[attr-defined]
    assert rules == ["allow *.wild.test", "deny bad.wild.test", "default"]


def test_curl_http_https_proxy_and_socks(net: Net, server: TCPServer) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is not installed on this machine")
    url = f"http://web.test:{server.port}/"
    script = (f'curl -sS {url}; curl -sS --proxy "$ALL_PROXY" {url}; '
              f'curl -sS -o /dev/null -w "%{{http_code}}\\n" http://other.test:{server.port}/; '
              f'curl -sS --proxy "$ALL_PROXY" http://other.test:{server.port}/ '
              '|| echo SOCKS-REFUSED')
    proc = net.run(["/bin/sh", "-c", script], ["web.test"], [server.port])
    assert proc.stdout.count(server.body.decode()) == 2, proc.stderr
    assert "403" in proc.stdout and "SOCKS-REFUSED" in proc.stdout
    assert "(2)" in proc.stderr  # SOCKS5 reply 2: connection not allowed by ruleset


RAW_PROXY_GET = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])))
s.sendall(f"GET {sys.argv[1]} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode(errors="replace"))
"""


def test_ip_literal_through_the_proxy(net: Net, server: TCPServer) -> None:
    url = f"http://127.0.0.1:{server.port}/"
    _, report = net.json_run([PY, "-c", RAW_PROXY_GET, url], ["web.test"], [server.port])
    assert "HTTP/1.1 403" in str(report["stdout"]) and server.seen == []
    assert "IP address" in str(report["stdout"])
    # control: listed, the same literal is allowed
    _, report = net.json_run([PY, "-c", RAW_PROXY_GET, url], ["127.0.0.1"], [server.port])
    assert "HTTP/1.1 200" in str(report["stdout"])


# ---------------------------------------------------------------------------------------------
# Nothing else leaves.

IGNORE_PROXY = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).sendall(b"LEAK")
    print("CONNECTED")
except OSError as e:
    print("BLOCKED", e)
"""


def test_client_ignoring_the_proxy_variables(net: Net, server: TCPServer) -> None:
    """Attack: connect straight to a host service, ignoring HTTP_PROXY."""
    proc = net.run([PY, "-c", IGNORE_PROXY, str(server.port)], ["web.test"], [server.port])
    assert "BLOCKED" in proc.stdout, proc.stdout + proc.stderr
    assert server.wait_seen(0.5) == []
    control = net.world.run("run", "--network", "on", "--", PY, "-c", IGNORE_PROXY,
                            str(server.port))
    assert "CONNECTED" in control.stdout


UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
# a DNS query for web.test, type A
q = (b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00"
     b"\\x03web\\x04test\\x00\\x00\\x01\\x00\\x01")
try:
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
    print("REPLY", s.recvfrom(512)[0][:2])
except OSError as e:
    print("NO-REPLY", e)
try:
    socket.getaddrinfo("web.test", 80)
    print("RESOLVED")
except OSError as e:
    print("NO-DNS", e)
"""


def test_dns_and_udp_from_inside(net: Net) -> None:
    """Attack: exfiltrate by DNS/UDP to a resolver on the host (here: the test's own)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    seen: list[bytes] = []

    def answer() -> None:
        udp.settimeout(0.1)
        while True:
            try:
                data, peer = udp.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            seen.append(data)
            udp.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

    threading.Thread(target=answer, daemon=True).start()
    try:
        proc = net.run([PY, "-c", UDP, str(port)], ["web.test"], [80])
        assert "NO-REPLY" in proc.stdout and "NO-DNS" in proc.stdout, proc.stdout + proc.stderr
        assert seen == []
        control = net.world.run("run", "--network", "on", "--", PY, "-c", UDP, str(port))
        assert "REPLY" in control.stdout.replace("NO-REPLY", "") and seen
    finally:
        udp.close()


RAW = """
import socket
for fam, typ, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                        (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
                        (socket.AF_PACKET, socket.SOCK_RAW, 0)):
    try:
        s = socket.socket(fam, typ, proto)
        s.sendto(b"\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00", ("127.0.0.1", 0))
        print("SENT", fam, typ)
    except OSError as e:
        print("DENIED", e.errno)
print("INTERFACES", sorted(n for _, n in socket.if_nameindex()))
"""


def test_raw_icmp_and_interfaces(net: Net) -> None:
    """Attack: ICMP or raw packets out; only the sandbox's own lo exists."""
    proc = net.run([PY, "-c", RAW], ["web.test"], [80])
    assert "SENT" not in proc.stdout, proc.stdout
    assert "INTERFACES ['lo']" in proc.stdout


# ---------------------------------------------------------------------------------------------
# Package managers and git.

class StaticServer:
    def __init__(self, root: Path) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port: int = self.httpd.server_address[1]  # type: ignore[assignment]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def build_index(root: Path) -> None:
    """A PEP 503 simple index with one tiny wheel, built here."""
    name, version = "ringfence_probe_pkg", "0.1"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{name}-{version}.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: ringfence-probe-pkg\nVersion: 0.1\n",
        f"{name}-{version}.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{p},sha256={_b64(hashlib.sha256(d).digest())},{len(d)}" for p, d in files.items()]
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = f"{name}-{version}-py3-none-any.whl"
    (root / "files").mkdir(parents=True)
    with zipfile.ZipFile(root / "files" / wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    page = root / "simple" / "ringfence-probe-pkg"
    page.mkdir(parents=True)
    (page / "index.html").write_text(f'<a href="../../files/{wheel}">{wheel}</a>\n')


def _b64(digest: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_pip_install_from_an_allowed_index(net: Net) -> None:
    root = net.world.outside / "index"
    build_index(root)
    srv = StaticServer(root)
    try:
        script = (f"{PY} -m pip install -q --isolated --no-cache-dir --disable-pip-version-check "
                  f"--target /tmp/t --index-url http://pkgs.test:{srv.port}/simple/ "
                  "--trusted-host pkgs.test "
                  f"ringfence-probe-pkg && PYTHONPATH=/tmp/t {PY} -c "
                  "'import ringfence_probe_pkg as m; print(\"VALUE\", m.VALUE)'")
        proc = net.run(["/bin/sh", "-c", script], ["pkgs.test"], [srv.port])
        assert "VALUE 42" in proc.stdout, proc.stdout + proc.stderr
        # and refused when the index host is not allowed
        denied = net.run(["/bin/sh", "-c", script], ["web.test"], [srv.port])
        assert "VALUE 42" not in denied.stdout and denied.returncode != 0
    finally:
        srv.close()


def test_git_clone_over_http(net: Net) -> None:
    if not shutil.which("git"):
        pytest.skip("git is not installed on this machine")
    root = net.world.outside / "git"
    root.mkdir()
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(net.world.home)}
    src = root / "src"
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True, env=env)
    (src / "README").write_text("cloned through the proxy\n")
    for cmd in (["add", "README"], ["-c", "user.email=t@example.invalid", "-c", "user.name=T",
                                    "commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(src), *cmd], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(root / "repo.git")],
                   check=True, env=env)
    subprocess.run(["git", "-C", str(root / "repo.git"), "update-server-info"], check=True,
                   env=env)
    srv = StaticServer(root)
    try:
        script = (f"git clone -q http://git.test:{srv.port}/repo.git /tmp/clone && "
                  "cat /tmp/clone/README")
        proc = net.run(["/bin/sh", "-c", script], ["git.test"], [srv.port])
        assert "cloned through the proxy" in proc.stdout, proc.stdout + proc.stderr
        denied = net.run(["/bin/sh", "-c", script], ["web.test"], [srv.port])
        assert "cloned through the proxy" not in denied.stdout and "403" in denied.stderr
    finally:
        srv.close()


def test_ssh_proxy_command_tunnels_through_the_proxy(net: Net) -> None:
    """git over SSH: the ProxyCommand ringfence sets is a CONNECT tunnel through the proxy.
    (An SSH banner from an echo server stands in for sshd.)"""
    echo = TCPServer("echo")
    try:
        # GIT_SSH_COMMAND is: ssh -o 'ProxyCommand=TUNNEL %h %p' (no eval: the approval
        # engine asks before running eval)
        script = ('cmd=$(printf "%s" "$GIT_SSH_COMMAND" | sed "s/^ssh -o .ProxyCommand=//; '
                  f's/.$//; s/%h/web.test/; s/%p/{echo.port}/"); '
                  'echo SSH-2.0-probe | sh -c "$cmd"')
        proc = net.run(["/bin/sh", "-c", script], ["web.test"], [echo.port])
        assert "SSH-2.0-probe" in proc.stdout, proc.stdout + proc.stderr
        denied = net.run(["/bin/sh", "-c", script], ["other.test"], [echo.port])
        assert "SSH-2.0-probe" not in denied.stdout and "403" in denied.stderr
    finally:
        echo.close()


# ---------------------------------------------------------------------------------------------
# The environment, explain, errors.

def test_proxy_environment_inside(net: Net) -> None:
    code = ("import os; print(' '.join(f'{k}={os.environ.get(k)}' for k in ('HTTP_PROXY', "
            "'https_proxy', 'ALL_PROXY', 'NO_PROXY', 'PIP_PROXY', 'npm_config_proxy', "
            "'CARGO_HTTP_PROXY')))")
    proc = net.run([PY, "-c", code], ["web.test"], [80])
    out = proc.stdout
    assert "HTTP_PROXY=http://127.0.0.1:3128" in out and "https_proxy=http://127.0.0.1:3128" in out
    assert "ALL_PROXY=socks5h://127.0.0.1:3128" in out and "NO_PROXY=localhost" in out
    for name in ("PIP_PROXY", "npm_config_proxy", "CARGO_HTTP_PROXY"):
        assert f"{name}=http://127.0.0.1:3128" in out


def test_explain_shows_the_rules(world: World) -> None:
    proc = world.run("explain", "--allow-domain", "*.example.org", "--deny-domain",
                     "x.example.org", "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert "network allowlist" in proc.stdout and "allow: *.example.org" in proc.stdout
    assert "deny: x.example.org" in proc.stdout and "--unshare-net" in proc.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["--allow-domain", "*"], ("'*'", "every host")),
    (["--allow-domain", "*.com"], ("too broad",)),
    (["--allow-domain", "https://example.org"], ("scheme",)),
    (["--allow-domain", "example.org:443"], ("port",)),
    (["--network-preset", "everything"], ("preset",)),
    (["--allow-port", "70000"], ("--allow-port",)),
    (["--network", "allowlist", "--profile", "full-access"], ("full-access",)),
])
def test_bad_options_one_line_125(world: World, args: list[str], words: tuple[str, ...]) -> None:
    proc = world.run("run", *args, "--", "true")
    assert proc.returncode == 125
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    for w in words:
        assert w in line


def test_project_file_may_only_narrow(world: World) -> None:
    """Attack: the repository's own .ringfence.toml widens the allowlist."""
    config = world.home / ".config" / "ringfence"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(
        '[network]\nmode = "allowlist"\nallow = ["*.example.org"]\n')
    project = world.workspace / ".ringfence.toml"
    for text, word in (('[network]\nallow = ["evil.example.net"]\n', "evil.example.net"),
                       ('[network]\nmode = "on"\n', "network.mode"),
                       ('[network]\nallow_local = true\n', "allow_local"),
                       ('[network]\nports = [22]\n', "port 22"),
                       ('[network]\npresets = ["npm"]\n', "preset")):
        project.write_text(text)
        proc = world.run("explain", "--", "true")
        assert proc.returncode == 125 and word in proc.stderr, (text, proc.stderr)
    # narrowing is fine: a name inside the user's wildcard, and more denials
    project.write_text('[network]\nallow = ["a.example.org"]\ndeny = ["b.example.org"]\n')
    proc = world.run("explain", "--json", "--", "true")
    assert proc.returncode == 0, proc.stderr
    rules = json.loads(proc.stdout)["network"]
    assert rules["allow"] == ["a.example.org"] and rules["deny"] == ["b.example.org"]
    # from a user's "on", a project may narrow to an allowlist
    (config / "config.toml").write_text('[network]\nmode = "on"\n')
    project.write_text('[network]\nmode = "allowlist"\nallow = ["ok.example.org"]\n')
    proc = world.run("explain", "--json", "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["network"]["allow"] == ["ok.example.org"]


GARBAGE_THEN_FETCH = """
import os, socket, sys, time, urllib.request
port = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
held = []
for payload in (b"\\x05\\x01\\x00\\x05\\x09\\x00\\x07xyz", b"\\x00\\xff garbage\\r\\n\\r\\n",
                b"GET http://web.test/ HTTP/1.1\\r\\nX: " + b"a" * 40000 + b"\\r\\n\\r\\n", b""):
    s = socket.create_connection(("127.0.0.1", port))
    if payload:
        s.sendall(payload)
    held.append(s)  # the silent one stays open while we fetch
with urllib.request.urlopen(sys.argv[1], timeout=20) as r:
    print("STATUS", r.status)
"""


def test_bad_input_from_inside_does_not_stop_the_proxy(net: Net, server: TCPServer) -> None:
    """Attack: knock the proxy over from inside (SOCKS garbage, binary junk, an oversized head,
    a silent connection); the same run's next request must still be served."""
    url = f"http://web.test:{server.port}/"
    _, report = net.json_run([PY, "-c", GARBAGE_THEN_FETCH, url], ["web.test"], [server.port])
    assert "STATUS 200" in str(report["stdout"]), report
    records = report["network"]
    assert isinstance(records, list)
    assert sum(1 for r in records if r["rule"] == "malformed") >= 3
    assert any(r["allowed"] and r["host"] == "web.test" for r in records)


def test_concurrent_library_runs_share_one_proxy(world: World,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 server: TCPServer) -> None:
    """Two runs of one process at once: one proxy serves both, each run's result holds only
    its own connections, and the proxy stops with the last run."""
    import ringfence
    from ringfence.network import proxy as proxy_mod
    from ringfence.network.rules import NetworkRules

    Net(world)  # writes the hosts hook into world.env
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(world.workspace)
    seen: list[object] = []
    real_acquire = proxy_mod.acquire

    def spy(*args: object) -> object:
        got = real_acquire()
        seen.append(got)
        return got

    monkeypatch.setattr(proxy_mod, "acquire", spy)
    policy = ringfence.Policy(
        workspace=str(world.workspace), network="allowlist",
        network_rules=NetworkRules(allow=["web.test", "other.test"], ports=[server.port],
                                   allow_local=True),
        limits=ringfence.Limits(max_processes=None))
    results: dict[str, object] = {}

    def one(name: str) -> None:
        code = FETCH.replace("sys.argv[1]", repr(f"http://{name}:{server.port}/"))
        results[name] = ringfence.run([PY, "-c", "import time; time.sleep(0.5)\n" + code],
                                      policy)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("web.test", "other.test")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(seen) == 2 and seen[0] is seen[1]  # one proxy for both
    for name in ("web.test", "other.test"):
        result = results[name]
        assert b"STATUS 200" in result.stdout, result  # type: ignore[attr-defined]
        hosts = [c.host for c in result.network]  # type: ignore[attr-defined]
        assert hosts == [name]
    assert proxy_mod._shared is None  # stopped with the last run


def test_git_over_ssh_goes_through_the_proxy(net: Net) -> None:
    """``git ls-remote ssh://...`` inside: ssh runs ringfence's ProxyCommand, which tunnels
    through the proxy to the allowed host. A fake SSH server (it sends a banner and records
    what arrives) stands in for sshd: seeing the client's SSH banner proves the path."""
    if not (shutil.which("git") and shutil.which("ssh")):
        pytest.skip("git or ssh is not installed on this machine")
    banner = socket.socket()
    banner.bind(("127.0.0.1", 0))
    banner.listen(8)
    port = banner.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = banner.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                conn.sendall(b"SSH-2.0-ringfence-test\r\n")
                try:
                    seen.append(conn.recv(256))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        script = ("GIT_SSH_COMMAND=\"$GIT_SSH_COMMAND -o BatchMode=yes "
                  "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\" "
                  f"git ls-remote ssh://git@web.test:{port}/repo.git")
        proc = net.run(["/bin/sh", "-c", script], ["web.test"], [port])
        assert proc.returncode != 0  # no real sshd here
        assert seen and seen[0].startswith(b"SSH-2.0-"), (seen, proc.stderr)
        # control: not allowed, nothing arrives
        seen.clear()
        denied = net.run(["/bin/sh", "-c", script], ["other.test"], [port])
        assert denied.returncode != 0 and seen == [] and "403" in denied.stderr
    finally:
        banner.close()


def test_session_with_an_allowlist(net: Net, server: TCPServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A session in the allowlist mode: its commands reach the allowed name through the one
    proxy, are refused the others, and each result carries the connections made while it ran
    (refusals as certain denials); a client ignoring the proxy variables still reaches
    nothing."""
    import ringfence
    from ringfence.network.rules import NetworkRules
    from ringfence.session import Session

    for name, value in net.world.env.items():  # the library reads the world's home, hosts hook
        monkeypatch.setenv(name, value)
    policy = ringfence.Policy(
        workspace=str(net.world.workspace), network="allowlist",
        network_rules=NetworkRules(allow=("web.test",), ports=(server.port,), allow_local=True))
    ok_url, bad_url = (f"http://{h}:{server.port}/" for h in ("web.test", "other.test"))
    direct = ("import socket; s = socket.socket(); s.settimeout(3)\n"
              f"try: s.connect(('127.0.0.1', {server.port})); print('CONNECTED')\n"
              "except OSError as e: print('REFUSED', e)")
    with Session(policy) as s:
        good = s.run([PY, "-c", FETCH, ok_url])
        assert b"STATUS 200" in good.stdout, good.stdout + good.stderr
        assert [(c.host, c.allowed) for c in good.network] == [("web.test", True)]
        bad = s.run([PY, "-c", FETCH, bad_url])
        assert b"STATUS 403" in bad.stdout
        assert [(c.host, c.allowed) for c in bad.network] == [("other.test", False)]
        [d] = [d for d in bad.denials if d.kind == "network"]
        assert d.certain and d.suggestion is not None and d.suggestion.value == "other.test"
        assert b"CONNECTED" not in s.run([PY, "-c", direct]).stdout
    assert b"CONNECTED" in subprocess.run([PY, "-c", direct], capture_output=True).stdout


def test_network_decisions_in_the_audit_log(net: Net, server: TCPServer) -> None:
    """Every connection the proxy decided for a run is in that run's audit record, allowed and
    refused alike, with the deciding rule: a record the command cannot reach or rewrite."""
    code = ("import sys, urllib.request\n"
            "for url in sys.argv[1:]:\n"
            "    try: urllib.request.urlopen(url, timeout=20).read()\n"
            "    except Exception as e: print('ERR', e)\n")
    urls = [f"http://{h}:{server.port}/" for h in ("web.test", "other.test")]
    proc = net.run([PY, "-c", code, *urls], ["web.test"], [server.port])
    assert proc.returncode == 0, proc.stderr
    log = net.world.home / ".local" / "state" / "ringfence" / "audit"
    records = [json.loads(line) for f in sorted(log.glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    [run] = [r for r in records if r.get("kind") == "run"]
    seen = {(d["host"], d["allowed"], d["rule"]) for d in run["network_decisions"]}
    assert seen == {("web.test", True, "allow web.test"), ("other.test", False, "default")}


def test_connection_flood_leaves_bounded_records(net: Net) -> None:
    """Attack: the command floods the proxy with refused CONNECTs naming an 8 KiB host. Each
    left a record of the raw host (and a reason repeating it) in ringfence's own process, the
    ``--json`` output and one audit line, without a cap: 5 s of flooding with 32 KiB hosts
    grew ringfence to 1.6 GB and wrote a 332 MB audit record. Records are now bounded in
    number and size: the run's ``network`` list and its audit record stay small, and still
    count every connection."""
    from ringfence.network.records import MAX_FOLDED, MAX_KEPT

    n = MAX_KEPT + 200
    code = ("import os, socket\n"
            "port = int(os.environ['http_proxy'].rsplit(':', 1)[1])\n"
            f"for i in range({n}):\n"
            "    c = socket.create_connection(('127.0.0.1', port))\n"
            "    c.sendall(b'CONNECT %05d%s:443 HTTP/1.1\\r\\n\\r\\n' % (i, b'a' * 8192))\n"
            "    c.recv(100); c.close()\n")
    proc, report = net.json_run([PY, "-c", code], ["web.test"], [443])
    assert report["exit_code"] == 0, proc.stderr
    records = report["network"]
    assert isinstance(records, list)
    assert sum(r["count"] for r in records) == n
    assert len(records) <= MAX_KEPT + MAX_FOLDED + 2
    assert len(proc.stdout) < 2500 * len(records)  # with denials; was over 32 KB a connection
    log = net.world.home / ".local" / "state" / "ringfence" / "audit"
    [line] = [line for f in sorted(log.glob("*.jsonl")) for line in f.read_text().splitlines()
              if '"kind":"run"' in line.replace(" ", "")]
    assert len(line) < 1000 * len(records)
    assert sum(d["count"] for d in json.loads(line)["network_decisions"]) == n


def test_each_session_command_has_its_own_record_bound(net: Net, server: TCPServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: in a session (an MCP server), one command floods the proxy with refused
    connections to distinct hosts, using up the record bound, which was the session's:
    every later command's connections were then folded into host ``*`` (rule ``more``),
    in its result, its denials and its audit record, so a later exfiltration attempt named no
    host. Each command now has the bound of its own (small bounds here, for speed)."""
    import ringfence
    from ringfence.network import records
    from ringfence.network.rules import NetworkRules
    from ringfence.session import Session

    monkeypatch.setattr(records, "MAX_KEPT", 5)
    monkeypatch.setattr(records, "MAX_FOLDED", 5)
    for name, value in net.world.env.items():  # the library reads the world's home, hosts hook
        monkeypatch.setenv(name, value)
    policy = ringfence.Policy(
        workspace=str(net.world.workspace), network="allowlist",
        network_rules=NetworkRules(allow=("web.test",), ports=(server.port,), allow_local=True))
    flood = ("import os, socket\n"
             "port = int(os.environ['http_proxy'].rsplit(':', 1)[1])\n"
             "for i in range(30):\n"
             "    c = socket.create_connection(('127.0.0.1', port))\n"
             "    c.sendall(b'CONNECT h%d.flood.test:443 HTTP/1.1\\r\\n\\r\\n' % i)\n"
             "    c.recv(100); c.close()\n")
    bad_url = f"http://other.test:{server.port}/"
    with Session(policy) as s:
        flooded = s.run([PY, "-c", flood])
        assert sum(c.count for c in flooded.network) == 30
        assert [c.host for c in flooded.network][-1] == "*"  # its own bound held
        probe = s.run([PY, "-c", FETCH, bad_url])
        assert b"STATUS 403" in probe.stdout
        assert [(c.host, c.allowed) for c in probe.network] == [("other.test", False)]
        assert [d.target for d in probe.denials if d.kind == "network"] == [
            f"other.test:{server.port}"]


def test_allowlist_start_up_imports_stay_lean(world: World) -> None:
    """Start-up in the allowlist mode: a run that makes no connection imports neither ``re``
    (through ``shlex`` or the ``idna`` codec) nor ``ipaddress`` (~4 + ~4 + ~3 ms here): the
    proxy's environment quotes its words itself, host names are told from addresses first, and
    the proxy reads this host's addresses and name without either. Nor ``socket`` (with
    ``selectors`` and ``enum``), ``threading`` (with ``functools``), the ``collections`` both
    import, or ``ctypes`` (~8 + ~3 + ~3.5 ms): the proxy's loop waits with epoll, uses
    ``_socket``'s sockets and ``_thread``'s thread and locks, and the helper that opens the port
    inside the sandbox passes its descriptor with ``sendmsg`` and calls ``setns`` as
    ``os.setns`` or through ``_ctypes`` alone. Started as the ``ringfence`` launcher starts it
    (``-m`` would import ``collections`` through ``runpy``)."""
    launcher = "from ringfence.__main__ import main; main()"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", launcher, "run",
                           "--network", "allowlist", "--allow-domain", "x.example.org", "--",
                           "true"], cwd=world.workspace, env=world.env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    assert {"ringfence.network.proxy", "ringfence.backends._netns"} <= modules  # it did start
    heavy = {"re", "shlex", "ipaddress", "encodings.idna", "socket", "selectors", "enum",
             "threading", "functools", "collections", "ctypes", "heapq", "logging"}
    assert not modules & heavy, sorted(modules & heavy)
