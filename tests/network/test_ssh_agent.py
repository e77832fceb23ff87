"""The user's ssh-agent: hidden from the command unless the policy opts in (``--ssh-agent``).

The agent is a fake the test starts itself: a unix socket server in the world's ``outside``
directory (outside the workspace) that answers the ssh-agent protocol's "list identities" with
an empty list and counts who connected. A command that reaches it could have asked it to sign
with the user's keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.errors import PolicyError, UnavailableError
from ringfence.network.ssh_agent import AGENT_PATH
from ringfence.plan import plan_linux
from ringfence.policy.model import Policy
from tests.conftest import World
from tests.test_plan import facts, policy

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux sandbox")

REQUEST_IDENTITIES, IDENTITIES_ANSWER = 11, 12


class FakeAgent:
    """Answers SSH_AGENTC_REQUEST_IDENTITIES with zero keys; ``asked`` counts the requests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.asked = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    while True:  # a client may send several requests, each in pieces
                        head = self._read(conn, 4)
                        body = self._read(conn, struct.unpack(">I", head)[0]) if head else b""
                        if not body:
                            break
                        if body[0] == REQUEST_IDENTITIES:
                            self.asked += 1
                            conn.sendall(struct.pack(">IBI", 5, IDENTITIES_ANSWER, 0))
                        else:
                            conn.sendall(struct.pack(">IB", 1, 5))  # SSH_AGENT_FAILURE
                except OSError:
                    pass

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def agent(world: World) -> Iterator[FakeAgent]:
    fake = FakeAgent(world.outside / "agent.sock")
    world.env["SSH_AUTH_SOCK"] = str(fake.path)
    yield fake
    fake.close()


# Inside the sandbox: ask the agent at $SSH_AUTH_SOCK, and at the host's path directly.
ASK = """
import os, socket, struct, sys
def ask(path):
    if not path:
        return "unset"
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        s.sendall(struct.pack(">IB", 1, 11))
        answer = s.recv(9)
        return "answered" if answer[4:5] == bytes([12]) else "garbled"
    except OSError as exc:
        return type(exc).__name__
print("env", os.environ.get("SSH_AUTH_SOCK", ""), ask(os.environ.get("SSH_AUTH_SOCK")))
print("host", ask(sys.argv[1]))
print("fixed", ask(sys.argv[2]))
"""

NETWORK = {
    "on": ("--network", "on"),
    "allowlist": ("--allow-domain", "git.test", "--allow-port", "22"),
}


def ask(world: World, *options: str) -> dict[str, list[str]]:
    proc = world.run("run", *options, "--", sys.executable, "-c", ASK,
                     world.env["SSH_AUTH_SOCK"], AGENT_PATH)
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}


@pytest.mark.escape
def test_control_the_fake_agent_answers_without_the_sandbox(world: World, agent: FakeAgent
                                                             ) -> None:
    """The control: with the guard removed (full-access) the host's socket is reachable."""
    seen = ask(world, "--profile", "full-access")
    assert seen["host"] == ["answered"]
    assert agent.asked == 1


@pytest.mark.escape
@pytest.mark.parametrize("mode", list(NETWORK))
def test_agent_is_unreachable_by_default(world: World, agent: FakeAgent, mode: str) -> None:
    """Attack: with the network on (or an allowlist), a command uses the user's ssh-agent to
    log in as the user -- by $SSH_AUTH_SOCK, by the socket's host path, or by the path where
    the opt-in would put it. None of them reaches the agent."""
    seen = ask(world, *NETWORK[mode])
    assert seen["env"] == ["unset"]
    assert seen["host"][0] in ("ConnectionRefusedError", "FileNotFoundError",
                               "PermissionError"), seen
    assert seen["fixed"] == ["FileNotFoundError"]
    assert agent.asked == 0


@pytest.mark.parametrize("mode", list(NETWORK))
def test_agent_is_reachable_when_opted_in(world: World, agent: FakeAgent, mode: str) -> None:
    """``--ssh-agent``: the agent answers at the fixed path SSH_AUTH_SOCK names; the socket's
    host path stays masked."""
    seen = ask(world, *NETWORK[mode], "--ssh-agent")
    assert seen["env"] == [AGENT_PATH, "answered"]
    assert seen["fixed"] == ["answered"]
    assert seen["host"][0] != "answered"
    assert agent.asked == 2


@pytest.mark.skipif(shutil.which("ssh-add") is None, reason="needs ssh-add (openssh-client)")
def test_ssh_add_lists_the_agent_when_opted_in(world: World, agent: FakeAgent) -> None:
    """A real client: ``ssh-add -l`` inside talks to the agent only with the opt-in."""
    hidden = world.sandbox("ssh-add -l", "--network", "on")
    assert "Could not open a connection to your authentication agent" in hidden.stderr
    shown = world.sandbox("ssh-add -l", "--network", "on", "--ssh-agent")
    assert "The agent has no identities" in shown.stdout + shown.stderr, shown.stderr
    assert agent.asked == 1


def test_policy_file_opt_in(world: World, agent: FakeAgent) -> None:
    pol = world.base / "agent.toml"
    pol.write_text('[network]\nmode = "on"\nssh_agent = true\n')
    seen = ask(world, "--policy", str(pol))
    assert seen["env"] == [AGENT_PATH, "answered"]


# -- refused at load, with one line ---------------------------------------------------------

def one_line_error(proc: object, *needles: str) -> None:
    stderr = proc.stderr  # type: ignore[attr-defined]
    assert proc.returncode == 125, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for needle in needles:
        assert needle in stderr, stderr


def test_network_off_with_the_agent_is_refused(world: World, agent: FakeAgent) -> None:
    """The agent is only for commands that may reach the network: off + ssh_agent is an error
    when the policy loads (command line or file), and nothing runs."""
    marker = world.workspace / "ran"
    proc = world.sandbox(f"touch {marker}", "--ssh-agent")
    one_line_error(proc, "ssh_agent", "network is off", "--network allowlist")
    pol = world.base / "off.toml"
    pol.write_text('[network]\nmode = "off"\nssh_agent = true\n')
    proc = world.sandbox(f"touch {marker}", "--policy", str(pol))
    one_line_error(proc, "ssh_agent", "network is off")
    assert not marker.exists()
    assert agent.asked == 0


def test_library_policy_refuses_network_off_with_the_agent() -> None:
    with pytest.raises(PolicyError, match="network is off"):
        Policy(workspace="/w", network="off", ssh_agent=True)
    with pytest.raises(PolicyError, match="network is off"):
        Policy(workspace="/w", network="on", ssh_agent=True).replace(network="off")


def test_missing_agent_is_refused(world: World) -> None:
    """Asked for the agent where there is none: exit 125 naming the problem."""
    env = {"SSH_AUTH_SOCK": ""}
    one_line_error(world.sandbox("true", "--network", "on", "--ssh-agent", env=env),
                   "SSH_AUTH_SOCK is not set")
    gone = str(world.outside / "gone.sock")
    one_line_error(world.sandbox("true", "--network", "on", "--ssh-agent",
                                 env={"SSH_AUTH_SOCK": gone}), gone, "does not exist")
    (world.outside / "file").write_text("x")
    one_line_error(world.sandbox("true", "--network", "on", "--ssh-agent",
                                 env={"SSH_AUTH_SOCK": str(world.outside / "file")}),
                   "not a socket")
    one_line_error(world.sandbox("true", "--network", "on", "--ssh-agent",
                                 env={"SSH_AUTH_SOCK": "relative.sock"}), "not an absolute path")


def _user_config(world: World, text: str) -> None:
    config = world.home / ".config" / "ringfence"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(text)


def test_project_file_cannot_turn_the_agent_on(world: World, agent: FakeAgent) -> None:
    """Attack: a repository's .ringfence.toml asks for the agent. Refused, even where the
    user's own mode is ``on`` (which lets a project do anything else with the network)."""
    _user_config(world, '[network]\nmode = "on"\n')
    (world.workspace / ".ringfence.toml").write_text("[network]\nssh_agent = true\n")
    proc = world.sandbox("true")
    assert proc.returncode == 125
    assert "network.ssh_agent = true widens the policy" in proc.stderr
    assert agent.asked == 0


def test_project_narrowing_the_network_off_drops_the_agent(world: World, agent: FakeAgent
                                                            ) -> None:
    _user_config(world, '[network]\nmode = "on"\nssh_agent = true\n')
    (world.workspace / ".ringfence.toml").write_text('[network]\nmode = "off"\n')
    seen = ask(world)
    assert seen["env"] == ["unset"]
    assert seen["fixed"] == ["FileNotFoundError"]
    assert agent.asked == 0


def test_explain_shows_the_agent(world: World, agent: FakeAgent) -> None:
    text = world.run("explain", "--network", "on", "--ssh-agent", "--", "true")
    assert text.returncode == 0, text.stderr
    assert f"ssh-agent (network.ssh_agent): {agent.path} is reachable inside as " \
           f"{AGENT_PATH}" in text.stdout
    assert "weaker: the command can use your ssh-agent" in text.stdout
    data = json.loads(world.run("explain", "--json", "--network", "on", "--ssh-agent", "--",
                                "true").stdout)
    assert data["ssh_agent"] == {"host": str(agent.path), "inside": AGENT_PATH}
    assert data["environment"]["SSH_AUTH_SOCK"] == AGENT_PATH
    assert "SSH_AUTH_SOCK" not in data["environment_removed"]
    assert data["policy"]["ssh_agent"] is True
    plain = json.loads(world.run("explain", "--json", "--network", "on", "--", "true").stdout)
    assert "ssh_agent" not in plain
    assert "SSH_AUTH_SOCK" in plain["environment_removed"]


# -- the plan, for made-up hosts ------------------------------------------------------------

SOCK = "/home/u/.agent.sock"


def test_plan_binds_only_the_socket_before_run_goes_read_only() -> None:
    f = facts(environ={"SSH_AUTH_SOCK": SOCK}, kinds={**facts().kinds, SOCK: "other"})
    plan = plan_linux(policy(network="on", ssh_agent=True), ["true"], f)
    argv = list(plan.argv)
    bind = argv.index(AGENT_PATH)
    assert argv[bind - 2:bind + 1] == ["--ro-bind", SOCK, AGENT_PATH]
    run_read_only = next(i for i in range(len(argv) - 1)
                         if argv[i:i + 2] == ["--remount-ro", "/run"])
    assert bind < run_read_only
    assert plan.env["SSH_AUTH_SOCK"] == AGENT_PATH
    assert plan.ssh_agent == SOCK
    hidden = plan_linux(policy(network="on"), ["true"], f)
    assert AGENT_PATH not in hidden.argv
    assert "SSH_AUTH_SOCK" not in hidden.env
    assert hidden.ssh_agent is None


def test_plan_follows_a_symlinked_agent_socket() -> None:
    target = "/home/u/.agent-real.sock"
    f = facts(environ={"SSH_AUTH_SOCK": SOCK}, kinds={**facts().kinds, SOCK: "link",
                                                       target: "other"},
              realpaths={**facts().realpaths, SOCK: target})
    plan = plan_linux(policy(network="on", ssh_agent=True), ["true"], f)
    assert ["--ro-bind", target, AGENT_PATH] == list(
        plan.argv[plan.argv.index(AGENT_PATH) - 2:plan.argv.index(AGENT_PATH) + 1])


def test_landlock_fallback_refuses_the_agent() -> None:
    """The fallback has no mount namespace to hand in one socket: refuse, do not guess."""
    f = facts(environ={"SSH_AUTH_SOCK": SOCK}, kinds={**facts().kinds, SOCK: "other"},
              userns="user namespaces are disabled", landlock_abi=4)
    with pytest.raises(UnavailableError, match="Landlock fallback"):
        plan_linux(policy(network="on", ssh_agent=True, fallback="landlock"), ["true"], f)


def test_full_access_keeps_the_hosts_agent() -> None:
    f = facts(environ={"SSH_AUTH_SOCK": SOCK}, kinds={**facts().kinds, SOCK: "other"})
    plan = plan_linux(policy(network="on", ssh_agent=True, profile="full-access"), ["true"], f)
    assert plan.env["SSH_AUTH_SOCK"] == SOCK


def test_macos_refuses_the_agent() -> None:
    """Not built on macOS yet: refuse rather than silently leave it out."""
    from tests.test_plan_macos import plan as mac_plan

    with pytest.raises(UnavailableError, match="not supported on macOS"):
        mac_plan({"network": "on", "ssh_agent": True})


@pytest.fixture
def real_agent(world: World) -> Iterator[Path]:
    """A real ssh-agent on a socket outside the workspace, holding a key made for the test;
    the private key file lies in the world's ~/.ssh, where the user keeps theirs."""
    if not all(shutil.which(t) for t in ("ssh-agent", "ssh-add", "ssh-keygen")):
        pytest.skip("needs ssh-agent, ssh-add and ssh-keygen (openssh-client)")
    sock = world.outside / "real-agent.sock"
    key = world.home / ".ssh" / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f",
                    str(key)], check=True)
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], check=True, capture_output=True,
                         text=True).stdout
    pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        subprocess.run(["ssh-add", "-q", str(key)], check=True, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        shutil.copy(f"{key}.pub", world.workspace / "id_test.pub")
        world.env["SSH_AUTH_SOCK"] = str(sock)
        yield key
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.escape
def test_real_agent_signs_only_when_opted_in(world: World, real_agent: Path) -> None:
    """Attack: a command with the network on has the user's real ssh-agent sign for it -- at
    $SSH_AUTH_SOCK, or at the socket's host path if that is unset. Without --ssh-agent it
    cannot; with it, it can (that is what the opt-in means). Either way the private key file
    stays unreadable."""
    sock = world.env["SSH_AUTH_SOCK"]
    script = (f"echo data > msg; SSH_AUTH_SOCK=${{SSH_AUTH_SOCK:-{sock}}} "
              f"ssh-keygen -Y sign -n file -f id_test.pub msg >/dev/null 2>&1 && echo SIGNED; "
              f"grep -q 'PRIVATE KEY' {real_agent} 2>/dev/null && echo KEY || echo NO-KEY")
    control = world.unsandboxed(script)  # the guard removed: the agent signs, the key reads
    assert control.stdout.split() == ["SIGNED", "KEY"], control.stderr
    hidden = world.sandbox(script, "--network", "on")
    assert hidden.stdout.split() == ["NO-KEY"], hidden.stderr
    shown = world.sandbox(script, "--network", "on", "--ssh-agent")
    assert shown.stdout.split() == ["SIGNED", "NO-KEY"], shown.stderr


def test_windows_refuses_the_agent() -> None:
    from tests.windows.test_plan import make
    from tests.windows.test_plan import policy as win_policy

    with pytest.raises(UnavailableError, match="not supported on Windows"):
        make(win_policy(network="on", ssh_agent=True))
