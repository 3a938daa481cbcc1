"""A real OpenSSH server on 127.0.0.1 for the remote tests, started and stopped by a pytest fixture.

``sshd -D -e`` (foreground, log to stderr) with a throwaway host key, a
throwaway client key as the only authorised key, its pid file and config in a
temporary directory, on a free port. The test process's own user is the
"remote" user (root here: ``PermitRootLogin prohibit-password`` allows key
logins only). Tests import the fixture: ``from sshd_fixture import sshd``.
Skips only when the OpenSSH server or client is not installed
(``.ci/install-sshd.sh`` installs them).
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tui.remote import SshOptions

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start as root without it
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SshServer:
    port: int
    client_key: Path
    user: str
    log_path: Path

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1"

    @property
    def client_options(self) -> tuple[str, ...]:
        """Throwaway host key: do not check it, do not remember it; only our key, no agent."""
        return ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "IdentitiesOnly=yes", "LogLevel=ERROR")

    def ssh_options(self) -> SshOptions:
        return SshOptions(port=self.port, identity=str(self.client_key), config="/dev/null", options=self.client_options)

    def cli_args(self) -> list[str]:
        """The same as ``ssh_options`` for ``mfutop remote``."""
        out = ["--port", str(self.port), "--identity", str(self.client_key), "--ssh-config", "/dev/null"]
        for option in self.client_options:
            out += ["--ssh-option", option]
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def remote_mfutop_prefix() -> str:
    """How the "remote" shell finds this checkout's mfutop: the venv's interpreter, by absolute path."""
    return shlex.join([sys.executable, "-m", "tui"])


def _find_sshd() -> str | None:
    return next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("sshd")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mfutop-test", "-f", str(path)], check=True)


def _write_config(root: Path, port: int, host_key: Path, authorized: Path) -> Path:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized}",
        f"PidFile {root / 'sshd.pid'}",
        "StrictModes no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PrintMotd no",
        "MaxStartups 50",
        "LogLevel INFO",
    ]
    config = root / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    return config


def _wait_listening(proc: subprocess.Popen, port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshServer:
    sshd_path = _find_sshd()
    if sshd_path is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server/client not installed (apt-get install openssh-server openssh-client; .ci/install-sshd.sh)")
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("sshd")
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = root / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    log_path = root / "sshd.log"
    for _attempt in range(3):  # a free port can be taken between the probe and sshd's bind
        port = _free_port()
        config = _write_config(root, port, host_key, authorized)
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sshd_path, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
        if _wait_listening(proc, port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"sshd did not start: {log_path.read_text(errors='replace')}")
    server = SshServer(port=port, client_key=client_key, user=getpass.getuser(), log_path=log_path)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
