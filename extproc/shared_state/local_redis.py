"""A throwaway `redis-server` on loopback, for `aigw up`, `scripts/run` and the tests.

No persistence, no config file: a port, a temporary directory, and the Debian package's
binary (`redis-server` on PATH, installed by `scripts/lib.sh` when missing). Stopped by
its own PID only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class LocalRedisError(RuntimeError):
    pass


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


class LocalRedis:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="aigw-redis-")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> LocalRedis:
        binary = redis_server_binary()
        if binary is None:
            raise LocalRedisError("redis-server is not installed (Debian package redis-server)")
        self._proc = subprocess.Popen(
            [
                binary,
                "--bind", self.host,
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--protected-mode", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace")
                raise LocalRedisError(f"redis-server exited: {err.strip()[:300]}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise LocalRedisError(f"redis-server did not answer on {self.address} within {timeout} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Gone at once, as a crashed Redis is (SIGKILL)."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def pause(self) -> None:
        """Still accepting connections but answering nothing, as a stuck Redis does."""
        if self._proc and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self.resume()
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_if_absent(address: str) -> LocalRedis | None:
    """A redis-server on `address` (host:port) when it is a loopback address nobody
    listens on; None when Redis is elsewhere or already running there."""
    host, _, port_text = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        return None
    port = int(port_text)
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return None  # already running: use it
    try:
        server = LocalRedis(port).start()
    except LocalRedisError as exc:
        raise RuntimeError(f"{exc}; the config's sharedState needs Redis on {address}") from None
    print(f"started redis-server on {address} (pid {server.pid}) for sharedState", flush=True)
    return server
