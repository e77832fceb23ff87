"""Attack: read the account's real secrets when ``HOME`` names another directory.

A harness that runs agents with a scratch ``HOME`` must not leave the account's own ``~/.ssh``
readable: deny-read covers the home ``pwd`` names for the uid as well as ``$HOME``
(``backends.linux._extra_deny``), and for root the machine's secrets (``/etc/shadow``, the ssh
host keys: ``plan.ROOT_DENY_READ``).

Never the real secrets: each test runs ringfence in a private mount namespace (see
``tests.mountns``) in which a directory the test made, with fake secrets (``FAKE-...``), is
bind-mounted over the account's home (and as root a fake shadow file and a fake ``/etc/ssh``
over the real ones). As an ordinary user the namespace maps the uid to itself, so ringfence
sees exactly the account it runs as. ``HOME`` names the world's fake home, a different
directory. The control, in the same namespace set-up, reads the markers with the guard off
(``--profile full-access``); the host's mount table is the same afterwards.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

import pytest
from tests.conftest import IS_ROOT, ROOT, TEST_ROOT, World

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces")

if sys.platform == "linux":
    from tests import mountns

ACCOUNT = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/")
SECRETS = {".ssh/id_ed25519": "FAKE-ACCOUNT-SSH-KEY", ".aws/credentials": "FAKE-ACCOUNT-AWS",
           ".netrc": "FAKE-ACCOUNT-NETRC", ".config/gh/hosts.yml": "FAKE-ACCOUNT-GH"}
SHADOW = "FAKE-SHADOW-HASH"
HOST_KEY = "FAKE-SSH-HOST-KEY"


def _fake_account(world: World) -> Path:
    account = world.base / "account"
    for rel, marker in SECRETS.items():
        path = account / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(marker + "\n")
    (account / "notes.txt").write_text("NOT-A-SECRET\n")
    return account


def _binds(world: World) -> list[tuple[str, str]]:
    keep = [str(ROOT), str(TEST_ROOT), sys.prefix, os.path.realpath(sys.executable)]
    binds = mountns.binds_over(str(_fake_account(world)), ACCOUNT, keep)
    if IS_ROOT:
        shadow = world.base / "shadow"
        shadow.write_text(f"root:{SHADOW}:19000:0:99999:7:::\n")
        etc_ssh = world.base / "etc-ssh"
        etc_ssh.mkdir(exist_ok=True)
        (etc_ssh / "ssh_host_ed25519_key").write_text(HOST_KEY + "\n")
        binds += [(str(shadow), "/etc/shadow"), (str(etc_ssh), "/etc/ssh")]
    return binds


def _in_namespace(world: World, script: str, *options: str) -> str:
    """``ringfence run OPTIONS -- sh -c SCRIPT`` in the namespace; its output."""
    argv = [sys.executable, "-m", "ringfence", "run", *options, "--", "/bin/sh", "-c", script]
    result = mountns.run(argv, _binds(world), env=dict(world.env), cwd=str(world.workspace))
    if result.returncode == mountns.UNAVAILABLE:
        pytest.skip(f"this host gives no private mount namespace: {result.stderr.strip()}")
    assert "mountns:" not in result.stderr, result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def clean_mounts() -> object:
    """The host's mount table is untouched by the namespaces' mounts."""
    before = mountns.mount_table()
    yield
    assert mountns.mount_table() == before, "a mount leaked out of the test's namespace"


@pytest.mark.escape
@pytest.mark.usefixtures("clean_mounts")
def test_account_home_secrets_with_another_home(world: World) -> None:
    """``HOME`` is a scratch directory; ``cat`` the account's own ``~/.ssh/id_ed25519``,
    ``~/.aws/credentials``, ``~/.netrc``, ``~/.config/gh/hosts.yml`` by their absolute path
    (and list and grep its ``.ssh``): nothing of them inside, while the rest of that home
    stays readable."""
    assert os.path.realpath(world.home) != os.path.realpath(ACCOUNT)
    paths = " ".join(f"'{ACCOUNT}/{rel}'" for rel in SECRETS)
    script = (f"cat {paths}; echo \"LS[$(ls -A '{ACCOUNT}/.ssh')]\"; grep -r -a FAKE "
              f"'{ACCOUNT}/.ssh' '{ACCOUNT}/.aws'; cat '{ACCOUNT}/notes.txt'")
    inside = _in_namespace(world, script)
    assert "NOT-A-SECRET" in inside, f"the fake home was not there: {inside}"
    leaked = [m for m in SECRETS.values() if m in inside]
    assert not leaked, f"the account's secrets leaked into the sandbox: {leaked}"
    assert "LS[]" in inside, "the account's .ssh is not empty inside"
    control = _in_namespace(world, script, "--profile", "full-access")
    for marker in SECRETS.values():
        assert marker in control, f"control did not read {marker}: {control}"
    assert "LS[id_ed25519]" in control


@pytest.mark.escape
@pytest.mark.usefixtures("clean_mounts")
def test_account_home_copy_into_workspace(world: World) -> None:
    """Copy the account's ``.ssh`` into the writable workspace, for a later unsandboxed step
    to send: the copy holds no key."""
    script = f"cp -r '{ACCOUNT}/.ssh' loot; cp '{ACCOUNT}/.aws/credentials' aws; true"
    _in_namespace(world, script)
    for path in world.workspace.rglob("*"):
        if path.is_file():
            assert "FAKE" not in path.read_text(errors="replace"), path
    _in_namespace(world, "rm -rf loot aws; " + script, "--profile", "full-access")
    assert "FAKE-ACCOUNT-SSH-KEY" in (world.workspace / "loot" / "id_ed25519").read_text()


@pytest.mark.escape
@pytest.mark.usefixtures("clean_mounts")
@pytest.mark.skipif(not IS_ROOT, reason="root's machine secrets: only root's runs cover them "
                    "(another uid cannot read /etc/shadow at all)")
def test_root_machine_secrets(world: World) -> None:
    """As root (uid 0 inside, so the owner bits let it read anything): ``/etc/shadow`` and
    the ssh host keys read as nothing."""
    script = "cat /etc/shadow /etc/ssh/ssh_host_ed25519_key; ls -A /etc/ssh"
    inside = _in_namespace(world, script)
    assert SHADOW not in inside and HOST_KEY not in inside, inside
    control = _in_namespace(world, script, "--profile", "full-access")
    assert SHADOW in control and HOST_KEY in control, control
