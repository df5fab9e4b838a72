"""Starts the real thing for end-to-end tests: Envoy, the processor and mock providers.

A test hands over an Envoy bootstrap (usually one of the files in `envoy/`). The harness
rewrites only what must differ per run: free ports for listeners and admin, a temporary
path for the processor's socket, and, for every endpoint carrying gateway metadata on
loopback, a freshly started mock provider that speaks that endpoint's provider API.
Everything else is run exactly as written.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import yaml
from aiohttp import web

from extproc.devstack import Envoy, Processor, free_port, wait_for
from extproc.mock.dialects import discover
from extproc.mock.server import Behavior, MockState, build_app

if TYPE_CHECKING:
    import openai

ROOT = Path(__file__).resolve().parents[1]
ENVOY_DIR = ROOT / "envoy"

__all__ = ["ROOT", "MockProvider", "Stack", "error_body", "free_port", "load_bootstrap", "wait_for"]


def error_body(err: openai.APIStatusError) -> dict[str, Any]:
    """The error object of a gateway error answer, as the openai client parsed it (it types
    `body` as `object`)."""
    body = err.body
    assert isinstance(body, dict), f"not a JSON object: {body!r}"
    return body


def load_bootstrap(name: str) -> dict[str, Any]:
    path = Path(name) if os.path.isabs(name) else ENVOY_DIR / name
    return yaml.safe_load(path.read_text())


def _replace_ports(value: Any, ports: dict[int, int]) -> Any:
    if isinstance(value, str):
        for old, new in ports.items():
            value = value.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        return value
    if isinstance(value, dict):
        return {k: _replace_ports(v, ports) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_ports(v, ports) for v in value]
    return value


class GatewayProcessor(Processor):
    """The processor, plus reading its JSON log records."""

    def log_records(self) -> list[dict[str, Any]]:
        """Every whole JSON record so far. The processor may be writing the last line as
        it is read: that one is left for the next read (only a complete line counts)."""
        text = self.logs()
        lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_log(self, timeout: float = 5, **match: Any) -> dict[str, Any]:
        """The first JSON log record whose fields equal `match`, waiting for it to appear
        (a request is logged when its stream closes, just after the client got its answer)."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [r for r in self.log_records() if all(r.get(k) == v for k, v in match.items())]
            return bool(found)

        wait_for(seen, timeout, f"a processor log record {match}")
        return found[0]


class MockProvider:
    """A mock provider in this process, on its own thread and event loop."""

    def __init__(self, providers: list[str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.state = MockState(dialects=discover(providers))
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._baseline: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MockProvider:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(build_app(self.state), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # What the provider received, and how it should behave next.
    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self.state.received)

    def clear(self) -> None:
        self.state.received.clear()

    def behave(self, **kw: Any) -> None:
        """Set server-wide behaviour, e.g. behave(status=429, retryAfter=1, times=2)."""
        self.state.behavior = Behavior.from_json({**self._baseline, **kw})
        self.state.failures_left = self.state.behavior.times

    def baseline(self, **kw: Any) -> None:
        """Behaviour this mock always has (e.g. auth="none" for a server without auth);
        `reset()` returns to it."""
        self._baseline = kw
        self.behave()

    def reset(self) -> None:
        self.clear()
        self.behave()


class Stack:
    """Envoy + processor + one mock per gateway endpoint, from one bootstrap."""

    def __init__(
        self,
        bootstrap: dict[str, Any],
        *,
        processor_args: list[str] | None = None,
        start_mocks: bool = True,
        workers: bool = False,
    ) -> None:
        """`workers`: keep each processor socket of the bootstrap apart, so the processor
        runs one worker per socket; otherwise every socket becomes one, served by one
        process."""
        self.tmp = Path(tempfile.mkdtemp(prefix="aigw-test-"))
        # Logs stay readable after stop(); the directory goes when the test run ends.
        atexit.register(shutil.rmtree, self.tmp, True)
        self.socket_path = self.tmp / "extproc.sock"
        self.sockets: dict[str, Path] = {}
        self._workers = workers
        self.admin_port = free_port()
        self.mocks: dict[str, MockProvider] = {}
        self.listener_ports: dict[str, int] = {}
        self.doc = self._rewrite(copy.deepcopy(bootstrap), start_mocks)
        self.bootstrap_path = self.tmp / "bootstrap.yaml"
        self.bootstrap_path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        self.metrics_port = free_port()
        if self.sockets:
            self.socket_path = next(iter(self.sockets.values()))
        self.processor = GatewayProcessor(
            self.bootstrap_path,
            list(self.sockets.values()) or self.socket_path,
            self.tmp / "processor.log",
            ["--grace", "5", "--metrics-port", str(self.metrics_port), *(processor_args or [])],
        )
        self.envoy = Envoy(self.bootstrap_path, self.tmp / "envoy.log", self.admin_port)

    @property
    def port(self) -> int:
        return next(iter(self.listener_ports.values()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _rewrite(self, doc: dict[str, Any], start_mocks: bool) -> dict[str, Any]:
        doc["admin"] = {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}
        }
        static = doc["static_resources"]
        health_ports: dict[int, int] = {}
        mock_ports: dict[int, int] = {}
        for listener in static.get("listeners") or []:
            port = free_port()
            listener["address"]["socket_address"]["port_value"] = port
            listener["address"]["socket_address"]["address"] = "127.0.0.1"
            self.listener_ports[listener["name"]] = port
        for cluster in static.get("clusters") or []:
            for locality in (cluster.get("load_assignment") or {}).get("endpoints") or []:
                for lb in locality.get("lb_endpoints") or []:
                    address = lb["endpoint"]["address"]
                    if "pipe" in address:
                        if self._workers:
                            path = self.sockets.setdefault(
                                address["pipe"]["path"], self.tmp / f"extproc-{len(self.sockets)}.sock"
                            )
                            address["pipe"]["path"] = str(path)
                        else:
                            address["pipe"]["path"] = str(self.socket_path)
                        continue
                    aigw = ((lb.get("metadata") or {}).get("filter_metadata") or {}).get("aigw")
                    hc = ((lb["endpoint"].get("health_check_config") or {}).get("address") or {}).get(
                        "socket_address"
                    )
                    if hc:  # the processor's backend-health endpoint: one free port per original
                        hc["port_value"] = health_ports.setdefault(hc["port_value"], free_port())
                    sa = address.get("socket_address") or {}
                    if aigw is None or sa.get("address") not in ("127.0.0.1", "localhost"):
                        continue
                    name = aigw.get("name") or f"{cluster['name']}/{sa['port_value']}"
                    # Tests drive mocks with x-mock-* request headers, which a backend with
                    # the gateway's credential forwards only when its allowHeaders say so.
                    allow = aigw.setdefault("allowHeaders", [])
                    if "x-mock-*" not in allow:
                        allow.append("x-mock-*")
                    mock = self.mocks.get(name)
                    if mock is None:
                        mock = MockProvider([aigw["provider"]])
                        self.mocks[name] = mock
                    mock_ports[int(sa["port_value"])] = mock.port
                    sa["port_value"] = mock.port
        # Route policies may call a mock too (e.g. its moderation endpoint): follow the move.
        for listener in static.get("listeners") or []:
            for chain in listener.get("filter_chains") or []:
                for f in chain.get("filters") or []:
                    for vhost in ((f.get("typed_config") or {}).get("route_config") or {}).get(
                        "virtual_hosts"
                    ) or []:
                        for route in vhost.get("routes") or []:
                            if "metadata" in route:
                                route["metadata"] = _replace_ports(route["metadata"], mock_ports)
        return doc

    def start(self) -> Stack:
        try:
            for mock in self.mocks.values():
                mock.start()
            self.processor.start()
            self.envoy.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.envoy.stop()
        self.processor.stop()
        for mock in self.mocks.values():
            mock.stop()

    @property
    def mock(self) -> MockProvider:
        """The only mock, for single-backend stacks."""
        assert len(self.mocks) == 1, list(self.mocks)
        return next(iter(self.mocks.values()))

    def metrics(self) -> dict[str, float]:
        """Scrape the processor's /metrics: {'name{label="v",...}': value}."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for key, value in self.metrics().items():
            base, _, rest = key.partition("{")
            if base != name:
                continue
            have = dict(item.split("=", 1) for item in rest.rstrip("}").split(",") if "=" in item)
            if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
                total += value
        return total

    def envoy_stat(self, name: str) -> int:
        """One of Envoy's counters or gauges (its admin /stats), e.g.
        `cluster.llm.upstream_rq_retry_overflow`."""
        text = httpx.get(
            f"http://127.0.0.1:{self.admin_port}/stats", params={"filter": f"^{name}$"}, timeout=5
        ).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        raise KeyError(name)

    def access_log(self, request_id: str, timeout: float = 5) -> dict[str, Any]:
        """Envoy's access log line (JSON, from stdout) for one request."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            for line in self.envoy.logs().splitlines():
                if line.startswith("{") and request_id in line:
                    found.append(json.loads(line))
                    return True
            return False

        wait_for(seen, timeout, f"the access log line of {request_id}")
        return found[0]

    def client(self, api_key: str = "client-key", **kw: Any):
        import openai

        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=kw.pop("timeout", 20), **kw
        )

    def post(
        self,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict | None = None,
        path: str = "/v1/chat/completions",
        **kw: Any,
    ) -> httpx.Response:
        h = {"content-type": "application/json", "authorization": "Bearer client-key"}
        h.update(headers or {})
        content = raw if raw is not None else (None if body is None else orjson.dumps(body))
        return httpx.post(self.url + path, content=content, headers=h, timeout=kw.pop("timeout", 20), **kw)
