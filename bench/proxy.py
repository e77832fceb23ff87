"""Allowlist proxy benchmark: what the proxy costs a connection, side by side with going direct.

From one run it prints:
- throughput of a 200 MB transfer on loopback, direct and through the proxy (HTTP CONNECT),
  alternating, median of ``--runs``, and the ratio (target: at least 0.80), with the proxy's
  CPU time per GB;
- time to first byte of a small response, direct and through the proxy, median, and the added
  time;
- 500 concurrent tunnels held open (each proven to work with a round trip) and the proxy
  process's resident memory per open connection;
- ``ringfence run`` start-up with the network off and with the allowlist (the proxy attached).

The server, the proxy and the client are three processes (the proxy runs as it does under
``ringfence run``: ringfence's own process, a thread running its own selectors loop).

    python bench/proxy.py [--runs N] [--size MB] [--conns N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import socket, sys, threading
size = int(sys.argv[1])
chunk = memoryview(bytearray(1 << 20))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1024)
print(srv.getsockname()[1], flush=True)
def one(c):
    try:
        req = c.recv(64)
        if req.startswith(b"BULK"):
            left = size
            while left:
                n = min(left, len(chunk))
                c.sendall(chunk[:n])
                left -= n
        else:  # echo: one small answer per message, until EOF
            while req:
                c.sendall(b"pong")
                req = c.recv(64)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=one, args=(c,), daemon=True).start()
"""

PROXY = r"""
import socket, sys
from ringfence.network.proxy import Proxy
from ringfence.network.rules import NetworkRules
port = int(sys.argv[1])
p = Proxy(resolver=lambda h, _: ["127.0.0.1"], own_addresses=()).start()
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4096)
records = []
p.add_listener(ls, NetworkRules(allow=["bench.test"], ports=[port], allow_local=True), records)
print(ls.getsockname()[1], flush=True)
sys.stdin.read()
"""


def spawn(code: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "src"))
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def open_tunnel(proxy_port: int | None, server_port: int) -> socket.socket:
    if proxy_port is None:
        return socket.create_connection(("127.0.0.1", server_port))
    s = socket.create_connection(("127.0.0.1", proxy_port))
    s.sendall(f"CONNECT bench.test:{server_port} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1024)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def transfer(proxy_port: int | None, server_port: int, size: int) -> float:
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    s = open_tunnel(proxy_port, server_port)
    s.sendall(b"BULK")
    got = 0
    while got < size:
        n = s.recv_into(buf)
        if not n:
            break
        got += n
    elapsed = time.perf_counter() - start
    s.close()
    assert got == size, (got, size)
    return size / elapsed


def first_byte(proxy_port: int | None, server_port: int) -> float:
    start = time.perf_counter()
    s = open_tunnel(proxy_port, server_port)
    s.sendall(b"ping")
    s.recv(4)
    elapsed = time.perf_counter() - start
    s.close()
    return elapsed


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def startup(args: list[str], runs: int) -> float:
    times = []
    with tempfile.TemporaryDirectory(dir=os.path.join(os.path.dirname(__file__), "..")) as ws:
        cmd = [sys.executable, "-m", "ringfence", "run", "--workspace", ws, *args, "--",
               "/bin/true"]
        subprocess.run(cmd, check=True)
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=200, help="MB per transfer")
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    size = opts.size << 20

    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server, server_port = spawn(SERVER, str(size))
    proxy, proxy_port = spawn(PROXY, str(server_port))
    out: dict[str, float] = {}
    try:
        direct, proxied = [], []
        cpu_before = cpu_seconds(proxy.pid)
        for _ in range(opts.runs):  # alternate, so a change in the machine's load hits both
            direct.append(transfer(None, server_port, size))
            proxied.append(transfer(proxy_port, server_port, size))
        out["proxy_cpu_s_per_GB"] = ((cpu_seconds(proxy.pid) - cpu_before)
                                     / (opts.runs * size / (1 << 30)))
        out["direct_MBps"] = statistics.median(direct) / (1 << 20)
        out["proxied_MBps"] = statistics.median(proxied) / (1 << 20)
        out["throughput_ratio"] = out["proxied_MBps"] / out["direct_MBps"]

        ttfb_direct = [first_byte(None, server_port) for _ in range(50)]
        ttfb_proxy = [first_byte(proxy_port, server_port) for _ in range(50)]
        out["ttfb_direct_ms"] = statistics.median(ttfb_direct) * 1000
        out["ttfb_proxied_ms"] = statistics.median(ttfb_proxy) * 1000
        out["ttfb_added_ms"] = out["ttfb_proxied_ms"] - out["ttfb_direct_ms"]

        time.sleep(0.5)
        before = rss_kib(proxy.pid)
        tunnels = [open_tunnel(proxy_port, server_port) for _ in range(opts.conns)]
        for t in tunnels:
            t.sendall(b"ping")
        ok = sum(1 for t in tunnels if t.recv(4) == b"pong")
        after = rss_kib(proxy.pid)
        out["connections_held"] = ok
        out["kib_per_connection"] = (after - before) / max(ok, 1)
        for t in tunnels:
            t.close()
    finally:
        for p in (proxy, server):
            p.kill()
            p.wait()
    out["startup_off_ms"] = startup([], opts.runs * 2)
    out["startup_allowlist_ms"] = startup(["--allow-domain", "bench.test"], opts.runs * 2)
    out["startup_added_ms"] = out["startup_allowlist_ms"] - out["startup_off_ms"]
    if opts.json:
        print(json.dumps({k: round(v, 3) for k, v in out.items()}))
        return
    print(f"transfer {opts.size} MB: direct {out['direct_MBps']:.0f} MB/s, through the proxy "
          f"{out['proxied_MBps']:.0f} MB/s, ratio {out['throughput_ratio']:.2f} (target 0.80); "
          f"proxy CPU {out['proxy_cpu_s_per_GB']:.2f} s per GB")
    print(f"time to first byte: direct {out['ttfb_direct_ms']:.3f} ms, through the proxy "
          f"{out['ttfb_proxied_ms']:.3f} ms, added {out['ttfb_added_ms']:.3f} ms")
    print(f"concurrent tunnels held: {ok}/{opts.conns}, proxy memory "
          f"{out['kib_per_connection']:.1f} KiB per open connection")
    print(f"ringfence run -- /bin/true: network off {out['startup_off_ms']:.1f} ms, allowlist "
          f"{out['startup_allowlist_ms']:.1f} ms, added {out['startup_added_ms']:.1f} ms")


if __name__ == "__main__":
    main()
