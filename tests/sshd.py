"""A real OpenSSH server for one test: its own host key, its own authorized key, on a free port of 127.0.0.1, started
as root (what `make test` has in CI); what ssh needs to reach it without asking anything."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def why_not() -> str | None:
    """Why a real sshd cannot run here (the test is skipped with it), or None."""
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH's server or client is not installed (make test installs them where it runs as root)"
    if os.geteuid() != 0:
        return "sshd serves other users only when started as root"
    return None


class Sshd:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        os.chmod(folder / "authorized_keys", 0o600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            f"PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nPidFile {folder / 'sshd.pid'}\nPermitUserEnvironment no\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=open(folder / "sshd.log", "wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen: {(folder / 'sshd.log').read_text()}")

    def command(self, remote: str) -> str:
        """``ssh … root@127.0.0.1 <remote>``: what a user's engine.host expands to, with this server's key and port."""
        return (f"ssh -T -p {self.port} -i {self.folder / 'client_key'} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                f"-o BatchMode=yes -o LogLevel=ERROR root@127.0.0.1 {remote}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
